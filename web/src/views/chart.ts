// Executed prices of the caller's filled trades in one pair, as an inline SVG line chart.
// Prices are computed exactly (decimal.ts); Number() only places points on the canvas.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { TradeStatus, type TradeResult } from "../../../gen/ts/tradewire/v1/trade_pb";
import { readTrades } from "../api/history_pages";
import { formatInt, toPlotNumber } from "../decimal";
import { h, replaceChildren, s } from "../dom";
import { fmtPrice } from "../format";
import { mintBySymbol, PAIRS } from "../markets";
import { pairPrice } from "../pair_price";
import { PanelLoader } from "./panel_loader";

const PAD = { left: 72, right: 16, top: 16, bottom: 28 };

interface Point {
  t: number;
  price: string;
  requestId: string;
}

export class PriceChartView {
  readonly el: HTMLElement;
  private pair: HTMLSelectElement;
  private body: HTMLElement;
  private last: { points: Point[]; baseSym: string; quoteSym: string } | undefined;
  private width = 0;
  private loader: PanelLoader;

  constructor() {
    this.pair = h("select", { id: "chart-pair", "aria-label": "Pair" },
      PAIRS.map(([b, q]) => h("option", { value: `${b}/${q}` }, `${b}/${q}`)));
    this.pair.addEventListener("change", () => void this.refresh());
    this.body = h("div", { class: "chart", "data-testid": "price-chart" });
    this.el = h("section", { class: "card", id: "chart", "aria-labelledby": "chart-title" },
      h("div", { class: "card-head" }, h("h2", { id: "chart-title" }, "Fill prices"), this.pair));
    this.loader = new PanelLoader("Chart", this.el, this.body);
    this.el.append(this.loader.notice, this.body);
    // Draw at the element's real width so text keeps its size on narrow screens.
    new ResizeObserver(() => {
      const w = this.body.clientWidth;
      if (this.last && Math.abs(w - this.width) > 8) this.render(this.last.points, this.last.baseSym, this.last.quoteSym);
    }).observe(this.body);
  }

  async refresh(): Promise<void> {
    const [baseSym, quoteSym] = this.pair.value.split("/");
    const base = mintBySymbol(baseSym);
    const quote = mintBySymbol(quoteSym);
    await this.loader.load(
      // (followed across short pages: one call may search only part of a long history)
      () => readTrades({ mint: base.address, statuses: [TradeStatus.FILLED] }, 200),
      (res) => {
        const points = res.trades
          .map((t) => toPoint(t, base.address, quote.address))
          .filter((p): p is Point => p !== undefined)
          .sort((a, b) => a.t - b.t);
        this.render(points, baseSym, quoteSym);
      });
  }

  stop(): void {
    this.loader.stop();
  }

  private render(points: Point[], baseSym: string, quoteSym: string): void {
    this.last = { points, baseSym, quoteSym };
    this.width = this.body.clientWidth;
    const W = Math.max(280, Math.round(this.width || 640));
    const H = W < 480 ? 190 : 240;
    if (points.length === 0) {
      replaceChildren(this.body, h("p", { class: "muted empty-chart" }, `No ${baseSym}/${quoteSym} fills yet — execute a trade to plot its price.`));
      return;
    }
    const values = points.map((p) => toPlotNumber(p.price));
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (hi === lo) {
      const pad = Math.abs(hi) * 0.01 || 1;
      lo -= pad;
      hi += pad;
    }
    const t0 = points[0].t;
    const t1 = points[points.length - 1].t;
    const x = (t: number, i: number) =>
      PAD.left + (t1 === t0 ? (points.length === 1 ? 0.5 : i / (points.length - 1)) : (t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
    const y = (v: number) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${baseSym}/${quoteSym} fill prices`, class: "chart-svg" });
    // grid + y labels
    const axisLabel = axisFormatter((hi - lo) / 3);
    for (let i = 0; i <= 3; i++) {
      const v = lo + ((hi - lo) * i) / 3;
      const yy = y(v);
      svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: yy, y2: yy, class: "grid" }));
      svg.append(s("text", { x: PAD.left - 8, y: yy + 4, class: "axis", "text-anchor": "end" }, axisLabel(v)));
    }
    const coords = points.map((p, i) => [x(p.t, i), y(values[i])] as const);
    const line = coords.map(([cx, cy], i) => `${i ? "L" : "M"}${cx.toFixed(1)},${cy.toFixed(1)}`).join(" ");
    if (coords.length > 1) {
      const area = `${line} L${coords[coords.length - 1][0].toFixed(1)},${H - PAD.bottom} L${coords[0][0].toFixed(1)},${H - PAD.bottom} Z`;
      svg.append(s("path", { d: area, class: "area" }));
      svg.append(s("path", { d: line, class: "line" }));
    }
    // Times of day alone only when every fill was today: fills on other days are dated, or
    // the axis would read as one day's span (and a later day's morning before an evening).
    const dated = !isToday(t0) || !isToday(t1);
    const tl = (t: number) => new Date(t).toLocaleString(undefined, dated
      ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
      : { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    coords.forEach(([cx, cy], i) => {
      svg.append(s("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 3.5, class: "pt" },
        s("title", {}, `${fmtPrice(points[i].price)} ${quoteSym}/${baseSym} · ${new Date(points[i].t).toLocaleString()} · ${points[i].requestId}`)));
    });
    svg.append(s("text", { x: PAD.left, y: H - 8, class: "axis", "text-anchor": "start" }, tl(t0)));
    if (t1 !== t0) svg.append(s("text", { x: W - PAD.right, y: H - 8, class: "axis", "text-anchor": "end" }, tl(t1)));
    const last = points[points.length - 1];
    replaceChildren(this.body,
      h("p", { class: "chart-last" }, "Last fill ", h("strong", {}, `${fmtPrice(last.price)} ${quoteSym}`), ` per ${baseSym} · ${formatInt(points.length)} fill${points.length === 1 ? "" : "s"}`),
      svg);
  }
}

/** The trade's price in quote per base, or undefined if it is not in this pair. */
function toPoint(t: TradeResult, base: string, quote: string): Point | undefined {
  const priced = pairPrice(t);
  if (!priced || priced.base.address !== base || priced.quote.address !== quote || !t.createdAt) return undefined;
  return { t: timestampMs(t.createdAt), price: priced.price, requestId: t.requestId };
}

function isToday(t: number): boolean {
  return new Date(t).toDateString() === new Date().toDateString();
}

/** Axis ticks are positions on the canvas, not amounts: enough decimals to tell them apart. */
function axisFormatter(step: number): (v: number) => string {
  const decimals = step >= 1 ? 2 : Math.min(10, Math.max(2, Math.ceil(-Math.log10(step)) + 1));
  const format = new Intl.NumberFormat(undefined, { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  return (v) => format.format(v);
}

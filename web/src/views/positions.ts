// The caller's positions with profit and loss, valued in the valuation mint (USDC).
import type { GetPositionsResponse, Position } from "../../../gen/ts/tradewire/v1/service_pb";
import { api } from "../api/client";
import { formatInt } from "../decimal";
import { h, replaceChildren } from "../dom";
import { fmtAmount, fmtPrice, fmtValue, MODE_LABEL, valueTone } from "../format";
import { mintLabel } from "../markets";
import { PanelLoader } from "./panel_loader";

export class PositionsView {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private previous = new Map<string, string>();
  private loader: PanelLoader;

  constructor() {
    this.body = h("div", { class: "table-wrap" }, h("p", { class: "muted" }, "Loading positions…"));
    const refresh = h("button", { type: "button", class: "ghost small", "aria-label": "Refresh positions" }, "↻");
    refresh.addEventListener("click", () => void this.refresh());
    this.el = h("section", { class: "card", id: "positions", "aria-labelledby": "positions-title" },
      h("div", { class: "card-head" }, h("h2", { id: "positions-title" }, "Positions"), refresh));
    this.loader = new PanelLoader("Positions", this.el, this.body);
    this.el.append(this.loader.notice, this.body);
  }

  /** Load the positions; true when a holding's amount changed since the last load (a trade
   * filled or paid fees, here or elsewhere). */
  async refresh(): Promise<boolean> {
    let moved = false;
    await this.loader.load(() => api().getPositions({}), (res) => {
      moved = this.amountsChanged(res);
      this.render(res);
    });
    return moved;
  }

  stop(): void {
    this.loader.stop();
  }

  private amountsChanged(res: GetPositionsResponse): boolean {
    const now = new Map(res.positions.map((p) => [positionKey(p), p.amount]));
    return now.size !== this.previous.size || [...now].some(([key, amount]) => this.previous.get(key) !== amount);
  }

  private render(res: GetPositionsResponse): void {
    const val = mintLabel(res.valuationMint);
    if (res.positions.length === 0) {
      this.previous = new Map();
      replaceChildren(this.body, h("p", { class: "muted" }, "No positions yet."));
      return;
    }
    const pnlCell = (text: string, label: string) =>
      h("td", { class: `num ${valueTone(text)}`, "data-label": label }, fmtValue(text, true));
    const rows = res.positions.map((p) => {
      const changed = this.previous.has(positionKey(p)) && this.previous.get(positionKey(p)) !== p.amount;
      // An unvalued position (its price source is down) shows its balance, "—" for its value, and why.
      return h("tr", { "data-symbol": p.symbol, "data-mode": MODE_LABEL[p.mode], class: changed ? "changed" : "",
                       title: p.valuationError ? `Not valued just now: ${p.valuationError}` : null },
        h("th", { scope: "row" }, h("span", { class: "sym" }, p.symbol || mintLabel(p.mint)), h("span", { class: "tag" }, MODE_LABEL[p.mode])),
        h("td", { class: "num", "data-testid": "position-amount", "data-label": "Amount" }, fmtAmount(p.amount, p.mint)),
        h("td", { class: "num", "data-label": "Avg cost" }, fmtPrice(p.averageCost)),
        h("td", { class: "num", "data-label": "Price" }, fmtPrice(p.marketPrice)),
        h("td", { class: "num", "data-label": "Value" }, fmtValue(p.marketValue)),
        pnlCell(p.realizedPnl, "Realized PnL"),
        pnlCell(p.unrealizedPnl, "Unrealized PnL"));
    });
    this.previous = new Map(res.positions.map((p) => [positionKey(p), p.amount]));
    replaceChildren(this.body,
      h("table", { class: "data stack", "data-testid": "positions-table" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Token"),
          h("th", { scope: "col", class: "num" }, "Amount"),
          valueHeader("Avg cost", val),
          valueHeader("Price", val),
          valueHeader("Value", val),
          valueHeader("Realized", val),
          valueHeader("Unrealized", val))),
        h("tbody", {}, rows)),
      h("div", { class: "totals" },
        h("div", {}, h("span", { class: "muted" }, "Total value"), h("strong", { "data-testid": "total-value" }, `${fmtValue(res.totalMarketValue)} ${val}`)),
        h("div", {}, h("span", { class: "muted" }, "Total PnL"),
          h("strong", { class: valueTone(res.totalPnl), "data-testid": "total-pnl" },
            `${fmtValue(res.totalPnl, true)} ${val}`))),
      res.unvaluedPositions > 0 && h("p", { class: "muted", "data-testid": "unvalued-note" },
        `${formatInt(res.unvaluedPositions)} position${res.unvaluedPositions === 1 ? "" : "s"} could not be valued just now ` +
        `(${res.positions.find((p) => p.valuationError)?.valuationError}); the totals leave ${res.unvaluedPositions === 1 ? "it" : "them"} out.`));
  }
}

/** A value column's title with its currency under it: on one line, the titles made the
 * table wider than a 1280 px window's card and scrolled the PnL out of view. */
function valueHeader(title: string, currency: string): HTMLElement {
  return h("th", { scope: "col", class: "num" }, `${title} `, h("span", { class: "col-unit" }, `(${currency})`));
}

function positionKey(p: Position): string {
  return `${p.mode}:${p.mint}`;
}

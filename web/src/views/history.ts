// Trade history, newest first: filters (mode, mint, status) and paging by next_page_token.
import { SwapMode, TradeStatus, TradingMode, type TradeResult } from "../../../gen/ts/tradewire/v1/trade_pb";
import { readTrades } from "../api/history_pages";
import { emit } from "../bus";
import { formatInt } from "../decimal";
import { h, replaceChildren } from "../dom";
import { fmtAmount, fmtPrice, fmtShortTime, fmtTime, MODE_LABEL, STATUS_LABEL, statusTone } from "../format";
import { MINTS, mintLabel } from "../markets";
import { pairPrice, priceUnit } from "../pair_price";
import { PanelLoader } from "./panel_loader";

// A page shows what readTrades found (it may stop short, with a token); "Older →" searches on.
const PAGE_SIZE = 10;
const STATUS_FILTERS = [TradeStatus.FILLED, TradeStatus.REJECTED, TradeStatus.FAILED, TradeStatus.CANCELLED, TradeStatus.EXPIRED];

export class HistoryView {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private modeFilter: HTMLSelectElement;
  private mintFilter: HTMLSelectElement;
  private statusBoxes: HTMLInputElement[];
  private pageLabel: HTMLElement;
  private prev: HTMLButtonElement;
  private next: HTMLButtonElement;
  /** tokens[i] is the page_token of page i (tokens[0] = ""). */
  private tokens: string[] = [""];
  private page = 0;
  private nextToken = "";
  private loader: PanelLoader;

  constructor() {
    this.modeFilter = h("select", { id: "history-mode", "aria-label": "Filter by mode" },
      h("option", { value: TradingMode.UNSPECIFIED }, "All modes"),
      h("option", { value: TradingMode.PAPER }, "Paper"),
      h("option", { value: TradingMode.LIVE }, "Live"));
    this.mintFilter = h("select", { id: "history-mint", "aria-label": "Filter by token" },
      h("option", { value: "" }, "All tokens"),
      MINTS.map((m) => h("option", { value: m.address }, m.symbol)));
    this.statusBoxes = STATUS_FILTERS.map((s) => h("input", { type: "checkbox", value: s, "aria-label": STATUS_LABEL[s] }));
    const statusChips = h("div", { class: "status-filters", role: "group", "aria-label": "Filter by status" },
      this.statusBoxes.map((box) => h("label", { class: "chip-check" }, box, h("span", {}, STATUS_LABEL[Number(box.value) as TradeStatus]))));
    for (const control of [this.modeFilter, this.mintFilter, ...this.statusBoxes]) {
      control.addEventListener("change", () => void this.reload());
    }
    // Enabled once a page has loaded and has a neighbour (see render).
    this.prev = h("button", { type: "button", class: "ghost", id: "history-prev", disabled: true }, "← Newer");
    this.next = h("button", { type: "button", class: "ghost", id: "history-next", disabled: true }, "Older →");
    this.pageLabel = h("span", { class: "muted", "data-testid": "history-page" }, "Page 1");
    this.prev.addEventListener("click", () => void this.go(this.page - 1));
    this.next.addEventListener("click", () => void this.go(this.page + 1));
    const refresh = h("button", { type: "button", class: "ghost small", "aria-label": "Refresh history" }, "↻");
    refresh.addEventListener("click", () => void this.refreshPage());
    this.body = h("div", { class: "table-wrap" }, h("p", { class: "muted" }, "Loading history…"));
    this.el = h("section", { class: "card", id: "history", "aria-labelledby": "history-title" },
      h("div", { class: "card-head" }, h("h2", { id: "history-title" }, "Trade history"), refresh),
      h("div", { class: "filters" }, this.modeFilter, this.mintFilter, statusChips));
    this.loader = new PanelLoader("History", this.el, this.body);
    this.el.append(this.loader.notice, this.body, h("div", { class: "pager" }, this.prev, this.pageLabel, this.next));
  }

  /** Back to the first page with the current filters. */
  async reload(): Promise<void> {
    // The tokens were for the old filters: the page being read is now page 1 of the new ones,
    // also when this load fails (a later refresh then loads that page, never an old token).
    this.tokens = [""];
    this.page = 0;
    this.nextToken = "";
    await this.go(0);
  }

  /** The page being read, fetched again: newer trades land on page 1, the reader stays put. */
  async refreshPage(): Promise<void> {
    await this.go(this.page);
  }

  stop(): void {
    this.loader.stop();
  }

  private async go(page: number): Promise<void> {
    if (page < 0 || page >= this.tokens.length + (this.nextToken ? 1 : 0)) return;
    const token = page < this.tokens.length ? this.tokens[page] : this.nextToken;
    const filters = {
      mode: Number(this.modeFilter.value) as TradingMode,
      mint: this.mintFilter.value,
      statuses: this.statusBoxes.filter((b) => b.checked).map((b) => Number(b.value) as TradeStatus),
    };
    const shown = await this.loader.load(() => readTrades(filters, PAGE_SIZE, token), (res) => {
      if (page === this.tokens.length) this.tokens.push(token);
      this.tokens.length = page + 1;
      this.page = page;
      this.nextToken = res.nextPageToken;
      this.render(res.trades);
    });
    if (!shown && !this.loader.current) {
      // The page kept on screen may be out of date: no paging from it until a load succeeds.
      this.prev.disabled = true;
      this.next.disabled = true;
    }
  }

  private render(trades: TradeResult[]): void {
    // A refresh (every 30 s, after a trade) replaces the rows: the row a keyboard user is on
    // keeps the focus rather than dropping it to the page's start.
    const active = document.activeElement;
    const focusedId = active instanceof HTMLElement && this.body.contains(active) ? active.dataset.requestId : undefined;
    this.renderPage(trades);
    if (focusedId !== undefined) this.body.querySelector<HTMLElement>(`tr[data-request-id="${CSS.escape(focusedId)}"]`)?.focus();
  }

  private renderPage(trades: TradeResult[]): void {
    this.prev.disabled = this.page === 0;
    this.next.disabled = !this.nextToken;
    this.pageLabel.textContent = `Page ${formatInt(this.page + 1)}`;
    if (trades.length === 0 && this.nextToken) {  // none found yet, older trades not searched
      const onward = h("button", { type: "button", class: "ghost small", "data-testid": "history-search-older" },
        "Search older trades");
      onward.addEventListener("click", () => void this.go(this.page + 1));
      replaceChildren(this.body, h("p", { class: "muted", "data-testid": "history-empty" },
        "No match among the trades searched so far; older trades are not searched yet. ", onward));
      return;
    }
    if (trades.length === 0) {
      replaceChildren(this.body, h("p", { class: "muted", "data-testid": "history-empty" },
        this.page === 0 ? "No trades match these filters." : "No more trades."));
      return;
    }
    replaceChildren(this.body,
      h("table", { class: "data clickable stack", "data-testid": "history-table" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Time · request id"),
          h("th", { scope: "col", class: "num" }, "Sold"),
          h("th", { scope: "col", class: "num" }, "Bought"),
          h("th", { scope: "col", class: "num", title: "Quote per base, whichever side was sold" }, "Price"),
          h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col", class: "num", title: "Total fees in lamports" }, "Fees ", h("span", { class: "col-unit" }, "lamports")))),
        h("tbody", {}, trades.map((t) => {
          const row = h("tr", { "data-request-id": t.requestId, tabindex: 0, title: "Show this trade's execution" },
            // The id under the time, in the first column: a table too wide for its card scrolls
            // its last columns out of view, never the id.
            h("th", { scope: "row", class: "when" },
              h("span", { title: fmtTime(t.createdAt) }, fmtShortTime(t.createdAt)),
              h("span", { class: "request-id mono", title: t.requestId, "data-testid": "history-request-id" }, t.requestId)),
            h("td", { class: "num", "data-label": "Sold" }, legCell(t.amountIn, t.swapMode === SwapMode.EXACT_OUT ? "" : t.requestedAmount, t.inputMint)),
            h("td", { class: "num", "data-label": "Bought" }, legCell(t.amountOut, t.swapMode === SwapMode.EXACT_OUT ? t.requestedAmount : "", t.outputMint)),
            h("td", { class: "num", "data-label": "Price", "data-testid": "history-price" }, priceCell(t)),
            h("td", { "data-label": "Status", class: "nowrap" },
              h("span", { class: `pill ${statusTone(t.status)}` }, STATUS_LABEL[t.status]), " ", h("span", { class: "tag" }, MODE_LABEL[t.mode])),
            h("td", { class: "num", "data-label": "Fees (lamports)", title: "Total fees in lamports" }, t.fees ? formatInt(t.fees.totalLamports) : "—"));
          const open = () => emit("showTrade", { requestId: t.requestId });
          row.addEventListener("click", open);
          row.addEventListener("keydown", (ev) => {
            if (ev.key === "Enter" || ev.key === " ") {
              ev.preventDefault();
              open();
            }
          });
          return row;
        }))));
  }
}

/** The executed price in the pair's orientation (quote per base) with its unit, so both
 * directions of a pair read the same way; output per input for an unlisted pair. */
function priceCell(t: TradeResult): HTMLElement | string {
  if (!t.executedPrice) return "—";
  const pair = pairPrice(t);
  return h("span", { class: "price" }, fmtPrice(pair?.price ?? t.executedPrice), " ",
    h("span", { class: "price-unit" }, priceUnit(t, pair)));
}

/** One leg of a trade: the amount that moved or, when nothing did, the amount the request asked for. */
function legCell(moved: string, asked: string, mint: string): HTMLElement | string {
  if (moved) return `${fmtAmount(moved, mint)} ${mintLabel(mint)}`;
  if (!asked) return mintLabel(mint);
  return h("span", { class: "muted", "data-testid": "asked-amount", title: "asked for; nothing was swapped" },
    `${fmtAmount(asked, mint)} ${mintLabel(mint)} asked`);
}

// tradewire dashboard: sign-in, then trade form, execution, positions, chart, history, health.
import "./styles.css";
import type { TradeRequest } from "../../gen/ts/tradewire/v1/trade_pb";
import {
  configureApi, currentBaseUrl, currentTransport, defaultBaseUrl, HEALTH_CHECK_TIMEOUT_MS, onRateLimitHeaders, onUnauthenticated,
  onUnreachable, parseBaseUrl, savedTransport, TRANSPORTS, api, type TransportKind,
} from "./api/client";
import { isAuthFailure, isUnreachable, toFailure } from "./api/errors";
import { clearCredentials, rememberedGateway, restoreCredentials } from "./auth";
import { BookRefresh } from "./book_refresh";
import { clearHandlers, emit, on } from "./bus";
import { h, replaceChildren } from "./dom";
import { fmtSeconds } from "./format";
import { loadMarket } from "./markets";
import { Backoff, sleep } from "./retry";
import { ExecutionView } from "./views/execution";
import { formFeedback } from "./views/form_feedback";
import { HealthView } from "./views/health";
import { HistoryView } from "./views/history";
import { PositionsView } from "./views/positions";
import { PriceChartView } from "./views/chart";
import { signInView, type SignedIn } from "./views/signin";
import { TradeForm, tradableModes } from "./views/trade_form";

const root = document.getElementById("app")!;
/** How much of a card must show for its title and status to be seen. */
const CARD_HEAD_PX = 96;
onRateLimitHeaders((r) => emit("rateLimit", r));
onUnreachable(() => emit("gatewayDown", {}));
onUnauthenticated((f) => emit("sessionRefused", { why: `${f.reason || f.codeName}: ${f.message}` }));

let teardown: (() => void) | undefined;

function showSignIn(notice?: string): void {
  teardown?.();
  teardown = undefined;
  document.title = "Sign in · tradewire";
  replaceChildren(root, h("main", { class: "signin-page" }, signInView(showDashboard, notice)));
}

function showDashboard({ caller, health }: SignedIn): void {
  teardown?.();
  document.title = `${caller.owner || caller.principal} · tradewire`;
  const healthView = new HealthView({ health, caller });
  const modes = tradableModes(caller.scopes);
  const execution = new ExecutionView(modes.length > 0);
  const positions = new PositionsView();
  const history = new HistoryView();
  const chart = new PriceChartView();

  const refreshData = () => Promise.all([positions.refresh(), history.refreshPage(), chart.refresh()]);
  const refreshAll = () => Promise.all([refreshData(), healthView.refresh()]);
  // Positions and the history page being read; the chart only when holdings moved (a fill):
  // each call spends the caller's rate limit.
  const refreshBook = async () => {
    const [moved] = await Promise.all([positions.refresh(), history.refreshPage()]);
    if (moved) await chart.refresh();
  };
  const bookRefresh = new BookRefresh(refreshBook);
  let closed = false;

  let form: TradeForm | undefined;
  if (modes.length) {
    form = new TradeForm(modes, async (request: TradeRequest) => {
      const running = execution.run(request);
      reveal(execution.el, "head"); // on a phone the card is below the form
      const outcome = await running;
      if (closed) return; // signed out meanwhile: its end is no news for the next sign-in's views
      // A spent id, or one refused for itself, is renewed; an id refused before it became a
      // trade for another reason is kept, so resubmitting the corrected request stays idempotent.
      const feedback = formFeedback(outcome);
      if (feedback.summary) form!.showErrors(feedback.errors, "gateway", feedback.summary);
      if (feedback.renewRequestId) form!.renewRequestId();
      emit("tradeSettled", { requestId: request.requestId, isTrade: outcome.isTrade, result: outcome.ok ? outcome.result : undefined });
    }, () => execution.discardRefusal());
  }
  const tradeArea = form
    ? form.el
    : h("section", { class: "card readonly", "data-testid": "read-only" },
      h("h2", {}, "Read-only access"),
      h("p", {}, "This key has no trading scope (", h("code", {}, caller.scopes.join(", ") || "none"),
        "). Positions, history and trade status are available; trading needs ",
        h("code", {}, "trade:paper"), " or ", h("code", {}, "trade:live"), "."));

  const transport = h("select", { id: "transport", "aria-label": "Transport" },
    TRANSPORTS.map((t) => h("option", { value: t.kind, selected: t.kind === currentTransport() }, t.label)));
  transport.addEventListener("change", () => {
    configureApi(transport.value as TransportKind, currentBaseUrl());
    void refreshAll();
  });
  const signOut = h("button", { type: "button", class: "ghost", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", () => {
    clearCredentials();
    showSignIn("Signed out.");
  });

  const header = h("header", { class: "topbar" },
    h("div", { class: "brand" }, h("span", { class: "brand-mark" }, "◆"), h("span", {}, "tradewire"), healthView.pill),
    h("div", { class: "top-actions" },
      healthView.callerChip,
      h("label", { class: "transport" }, h("span", { class: "muted" }, "via"), transport),
      signOut));
  // Cards scrolled into view stop below the sticky header (scroll-margin-top in styles.css).
  const headerSize = new ResizeObserver(() => root.style.setProperty("--topbar-height", `${header.offsetHeight}px`));
  headerSize.observe(header);
  /** Scroll `card` to just below the sticky header unless its "head" (title and status), or
   * "all" of it, is already in view. */
  const reveal = (card: HTMLElement, what: "head" | "all") => {
    const box = card.getBoundingClientRect();
    const bottom = what === "all" ? box.bottom : box.top + CARD_HEAD_PX;
    // At once, not smoothly: the card's content is replaced meanwhile, and a smooth scroll
    // then sometimes stalled and landed short, the card's top under the header.
    if (box.top < header.getBoundingClientRect().bottom || bottom > window.innerHeight) card.scrollIntoView({ block: "start" });
  };

  replaceChildren(root,
    header,
    h("main", { class: "layout" },
      h("div", { class: "col col-trade" }, tradeArea, execution.el),
      h("div", { class: "col col-book" }, positions.el, chart.el, history.el, healthView.card)));

  // The key was revoked or has expired: nothing more will work, so back to the sign-in page.
  const sessionEnded = (why: string) => {
    clearCredentials();
    showSignIn(`Your session has ended (${why}); sign in again.`);
  };
  on("sessionRefused", ({ why }) => sessionEnded(why));
  on("health", ({ caller }) => { if (!caller) sessionEnded("the gateway no longer accepts these credentials"); });
  on("tradeSettled", ({ isTrade }) => {
    if (!isTrade) return; // refused before it was a trade: nothing changed
    bookRefresh.loaded();
    void refreshBook();
  });
  on("gatewayDown", () => healthView.noticeDown());
  on("gatewayBack", () => void refreshData()); // what failed while it was away
  on("showTrade", ({ requestId }) => {
    // Measured before the replay empties the card, as the page shrinks and grows back under it then.
    reveal(execution.el, "all");
    void execution.replay(requestId);
  });
  healthView.start();
  bookRefresh.start();
  void refreshData(); // the health was just checked by the sign-in
  teardown = () => {
    headerSize.disconnect();
    healthView.stop();
    bookRefresh.stop();
    for (const view of [positions, history, chart, execution]) view.stop();
    closed = true;
    clearHandlers();
  };
}

/** Shown while a remembered session waits for the gateway; "Retry now" cuts the wait short. */
function showUnreachable(detail: string, retryInMs: number, retryNow: () => void, signedOut: () => void): void {
  const retry = h("button", { type: "button", class: "primary" }, "Retry now");
  retry.addEventListener("click", retryNow);
  const signOut = h("button", { type: "button", class: "ghost" }, "Sign out");
  signOut.addEventListener("click", () => {
    clearCredentials();
    signedOut();
    showSignIn("Signed out.");
  });
  document.title = "Reconnecting · tradewire";
  replaceChildren(root, h("main", { class: "signin-page" },
    h("section", { class: "card signin", role: "alert", "data-testid": "gateway-unreachable" },
      h("h1", {}, h("span", { class: "brand-mark" }, "◆"), " tradewire"),
      h("p", { class: "notice" }, `Cannot reach the gateway; retrying in ${fmtSeconds(Math.round(retryInMs / 1000))}. `,
        "You stay signed in."),
      h("p", { class: "muted" }, detail),
      h("div", { class: "field-row" }, retry, signOut))));
}

async function boot(): Promise<void> {
  if (!restoreCredentials()) return showSignIn();
  configureApi(savedTransport(), parseBaseUrl(rememberedGateway() ?? "") ?? defaultBaseUrl());
  const backoff = new Backoff(1_000, 15_000);
  for (;;) {
    try {
      const health = await api().healthCheck({}, { timeoutMs: HEALTH_CHECK_TIMEOUT_MS });
      if (!health.caller) break; // the key was not accepted
      await loadMarket();
      return showDashboard({ caller: health.caller, health });
    } catch (e) {
      const f = toFailure(e);
      if (isAuthFailure(f)) break;
      // Down, restarting or draining: keep the credentials and try again.
      const wait = backoff.next();
      const skip = new AbortController();
      let signedOut = false;
      const detail = isUnreachable(f) ? f.message || f.codeName : `${f.codeName}: ${f.message}`;
      showUnreachable(detail, wait, () => skip.abort(), () => { signedOut = true; skip.abort(); });
      await sleep(wait, skip.signal);
      if (signedOut) return;
    }
  }
  clearCredentials();
  showSignIn("Your session has ended; sign in again.");
}

void boot();

// tradewire dashboard: sign-in, then trade form, execution, positions, chart, history, health.
import "./styles.css";
import type { TradeRequest } from "../../gen/ts/tradewire/v1/trade_pb";
import {
  configureApi, currentBaseUrl, currentTransport, defaultBaseUrl, onRateLimitHeaders, onUnauthenticated, onUnreachable, parseBaseUrl,
  savedTransport, TRANSPORTS, api, type TransportKind,
} from "./api/client";
import { describeFailure, isAuthFailure, isUnreachable, toFailure } from "./api/errors";
import { clearCredentials, rememberedGateway, restoreCredentials } from "./auth";
import { clearHandlers, emit, on } from "./bus";
import { h, replaceChildren } from "./dom";
import { loadMarket } from "./markets";
import { Backoff, sleep } from "./retry";
import { ExecutionView } from "./views/execution";
import { HealthView } from "./views/health";
import { HistoryView } from "./views/history";
import { PositionsView } from "./views/positions";
import { PriceChartView } from "./views/chart";
import { signInView, type SignedIn } from "./views/signin";
import { TradeForm, tradableModes } from "./views/trade_form";

const root = document.getElementById("app")!;
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

  const refreshData = () => Promise.all([positions.refresh(), history.reload(), chart.refresh()]);
  const refreshAll = () => Promise.all([refreshData(), healthView.refresh()]);

  let form: TradeForm | undefined;
  if (modes.length) {
    form = new TradeForm(modes, async (request: TradeRequest) => {
      const outcome = await execution.run(request);
      // An id that names a trade cannot be reused; an id refused before it became a trade is
      // kept, so that resubmitting the corrected request stays idempotent.
      if (outcome.isTrade) form!.renewRequestId();
      if (!outcome.ok) {
        const f = outcome.failure;
        // The violations are shown at their fields; the summary names the refusal, once.
        form!.showErrors(f.fieldViolations, "gateway", f.fieldViolations.length
          ? `${f.reason || f.codeName}: the gateway refused the highlighted ${f.fieldViolations.length === 1 ? "field" : "fields"}`
          : describeFailure(f));
      }
      emit("tradeSettled", { requestId: request.requestId, result: outcome.ok ? outcome.result : undefined });
    });
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
  on("tradeSettled", () => void refreshAll());
  on("gatewayDown", () => healthView.noticeDown());
  on("gatewayBack", () => void refreshData()); // what failed while it was away
  on("showTrade", ({ requestId }) => {
    // The card's top (title, status, request id) in view below the sticky header: measured
    // before the replay empties the card, as the page shrinks and grows back under it then.
    const card = execution.el.getBoundingClientRect();
    if (card.top < header.getBoundingClientRect().bottom || card.bottom > window.innerHeight) {
      execution.el.scrollIntoView({ behavior: "smooth", block: "start" });
    }
    void execution.replay(requestId);
  });
  healthView.start();
  void refreshAll();
  teardown = () => {
    headerSize.disconnect();
    healthView.stop();
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
      h("p", { class: "notice" }, `Cannot reach the gateway; retrying in ${Math.round(retryInMs / 1000)} s. `,
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
      const health = await api().healthCheck({});
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

// tradewire dashboard: sign-in, then trade form, execution, positions, chart, history, health.
import "./styles.css";
import type { TradeRequest } from "../../gen/ts/tradewire/v1/trade_pb";
import { configureApi, currentBaseUrl, currentTransport, defaultBaseUrl, onRateLimitHeaders, savedTransport, TRANSPORTS, api, type TransportKind } from "./api/client";
import { clearCredentials, restoreCredentials } from "./auth";
import { clearHandlers, emit, on } from "./bus";
import { h, replaceChildren } from "./dom";
import { loadMarket } from "./markets";
import { ExecutionView } from "./views/execution";
import { HealthView } from "./views/health";
import { HistoryView } from "./views/history";
import { PositionsView } from "./views/positions";
import { PriceChartView } from "./views/chart";
import { signInView, type SignedIn } from "./views/signin";
import { TradeForm, tradableModes } from "./views/trade_form";

const root = document.getElementById("app")!;
onRateLimitHeaders((r) => emit("rateLimit", r));

let teardown: (() => void) | undefined;

function showSignIn(notice?: string): void {
  teardown?.();
  teardown = undefined;
  document.title = "Sign in · tradewire";
  replaceChildren(root, h("main", { class: "signin-page" }, signInView(showDashboard, notice)));
}

function showDashboard({ caller, health }: SignedIn): void {
  teardown?.();
  document.title = `${caller.principal} · tradewire`;
  const healthView = new HealthView({ health, caller });
  const modes = tradableModes(caller.scopes);
  const execution = new ExecutionView(modes.length > 0);
  const positions = new PositionsView();
  const history = new HistoryView();
  const chart = new PriceChartView();

  const refreshAll = () => Promise.all([positions.refresh(), history.reload(), chart.refresh(), healthView.refresh()]);

  let form: TradeForm | undefined;
  if (modes.length) {
    form = new TradeForm(modes, async (request: TradeRequest) => {
      const outcome = await execution.run(request);
      if (outcome.ok) {
        form!.renewRequestId();
      } else {
        const f = outcome.failure;
        form!.showErrors(f.fieldViolations, "gateway", `${f.reason || f.codeName}: ${f.message}`);
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

  replaceChildren(root,
    h("header", { class: "topbar" },
      h("div", { class: "brand" }, h("span", { class: "brand-mark" }, "◆"), h("span", {}, "tradewire"), healthView.pill),
      h("div", { class: "top-actions" },
        healthView.callerChip,
        h("label", { class: "transport" }, h("span", { class: "muted" }, "via"), transport),
        signOut)),
    h("main", { class: "layout" },
      h("div", { class: "col col-trade" }, tradeArea, execution.el),
      h("div", { class: "col col-book" }, positions.el, chart.el, history.el, healthView.card)));

  on("tradeSettled", () => void refreshAll());
  on("showTrade", ({ requestId }) => {
    void execution.replay(requestId);
    execution.el.scrollIntoView({ behavior: "smooth", block: "nearest" });
  });
  healthView.start();
  void refreshAll();
  teardown = () => {
    healthView.stop();
    clearHandlers();
  };
}

async function boot(): Promise<void> {
  if (!restoreCredentials()) return showSignIn();
  configureApi(savedTransport(), defaultBaseUrl());
  try {
    const health = await api().healthCheck({});
    if (health.caller) {
      await loadMarket();
      return showDashboard({ caller: health.caller, health });
    }
  } catch {
    // fall through to sign-in
  }
  clearCredentials();
  showSignIn("Your session has ended; sign in again.");
}

void boot();

// Service health per component, and the caller: principal, scopes, rate-limit state, in-flight.
import { ServingStatus, type CallerStatus, type HealthCheckResponse } from "../../../gen/ts/tradewire/v1/service_pb";
import { api, HEALTH_CHECK_TIMEOUT_MS, rateLimitWaitMs } from "../api/client";
import { isRateLimited, toFailure } from "../api/errors";
import { credentialKind } from "../auth";
import { emit, on } from "../bus";
import { formatInt } from "../decimal";
import { h, replaceChildren } from "../dom";
import { fmtTime, SERVING_LABEL, servingTone } from "../format";

const REFRESH_MS = 10_000;
const REFRESH_WHILE_DOWN_MS = 2_000; // notice soon when a restarting gateway is back

export class HealthView {
  readonly card: HTMLElement;
  readonly pill: HTMLElement;
  readonly callerChip: HTMLElement;
  private body: HTMLElement;
  private timer: number | undefined;
  private caller: CallerStatus | undefined;
  private health: HealthCheckResponse | undefined;
  /** Unreachable or not serving at the last check. */
  private down = false;
  /** Why the last check got no answer (the card then shows no stale state); undefined once answered. */
  private unreachable: string | undefined;
  /** The last check was refused by the caller's rate limit: the gateway answered, so the
   * last health shown stands; undefined once a check is answered. */
  private rateLimited: string | undefined;

  constructor(initial: { health: HealthCheckResponse; caller: CallerStatus }) {
    this.pill = h("span", { class: "pill", "data-testid": "health-pill", role: "status" });
    this.callerChip = h("span", { class: "caller-chip", "data-testid": "caller-chip" });
    this.body = h("div", { class: "health-body" });
    const refresh = h("button", { type: "button", class: "ghost small", "aria-label": "Refresh health" }, "↻");
    refresh.addEventListener("click", () => void this.refresh());
    this.card = h("section", { class: "card", id: "health", "aria-labelledby": "health-title" },
      h("div", { class: "card-head" }, h("h2", { id: "health-title" }, "Service & caller"), refresh),
      this.body);
    on("rateLimit", (r) => {
      if (!this.caller) return;
      this.caller.rateLimitRemaining = r.remaining;
      this.caller.rateLimitLimit = r.limit;
      this.render();
    });
    this.apply(initial.health);
  }

  start(): void {
    this.stop();
    // A rate-limited caller is not polled faster, and not before the gateway's Retry-After.
    const delay = this.down ? REFRESH_WHILE_DOWN_MS : Math.max(REFRESH_MS, rateLimitWaitMs());
    this.timer = window.setTimeout(async () => {
      if (document.visibilityState === "visible" && rateLimitWaitMs() === 0) await this.refresh();
      if (this.timer !== undefined) this.start();
    }, delay);
  }

  stop(): void {
    if (this.timer !== undefined) window.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A call found the gateway unreachable: check its health often until it is back. */
  noticeDown(): void {
    if (this.down || this.timer === undefined) return;
    this.down = true;
    this.start();
  }

  async refresh(): Promise<void> {
    try {
      this.apply(await api().healthCheck({}, { timeoutMs: HEALTH_CHECK_TIMEOUT_MS }));
    } catch (e) {
      const f = toFailure(e);
      if (isRateLimited(f)) {
        this.rateLimited = f.message || f.codeName;
        this.render();
        return;
      }
      this.down = true;
      this.unreachable = f.message || f.codeName;
      this.render();
    }
  }

  private apply(health: HealthCheckResponse): void {
    this.health = health;
    this.unreachable = undefined;
    this.rateLimited = undefined;
    this.caller = health.caller;
    emit("health", { health, caller: health.caller });
    this.render();
    const wasDown = this.down;
    this.down = health.status === ServingStatus.NOT_SERVING;
    if (wasDown && !this.down) emit("gatewayBack", {});
  }

  private render(): void {
    const health = this.health;
    if (!health) return;
    const tone = servingTone(health.status);
    this.pill.className = `pill ${tone}`;
    this.pill.textContent = SERVING_LABEL[health.status];
    this.pill.title = `gateway ${health.version}${this.rateLimited !== undefined ? " · last check refused by the rate limit" : ""}`;
    const c = this.caller;
    if (c) {
      replaceChildren(this.callerChip,
        h("span", { class: "who", title: `credential ${c.principal}` }, c.owner || c.principal),
        h("span", { class: "rate", title: "rate-limit tokens left" },
          `${formatInt(c.rateLimitRemaining)}/${formatInt(c.rateLimitLimit)}`));
    } else {
      replaceChildren(this.callerChip, h("span", { class: "who" }, "anonymous"));
    }
    if (this.unreachable !== undefined) {
      this.pill.className = "pill bad";
      this.pill.textContent = "Unreachable";
      this.pill.title = this.unreachable;
      replaceChildren(this.body,
        h("div", { class: "health-grid" },
          h("div", {},
            h("div", { class: "kv" }, h("span", {}, "Gateway"),
              h("span", { "data-testid": "gateway-state" }, h("span", { class: "pill bad" }, "Unreachable"))),
            h("div", { class: "kv" }, h("span", {}, "Last answer"), h("span", {}, fmtTime(health.serverTime))),
            h("p", { class: "hint", "data-testid": "health-unreachable" },
              `Cannot reach the gateway (${this.unreachable}); component states are unknown. Checking again every few seconds.`)),
          c ? this.callerBlock(c) : h("p", { class: "muted" }, "Not signed in")));
      return;
    }
    const components = h("ul", { class: "components" },
      health.components.map((comp) =>
        h("li", { class: servingTone(comp.status) },
          h("span", { class: "dot", "aria-hidden": "true" }),
          h("span", { class: "name" }, comp.name.replace(/_/g, " ")),
          h("span", { class: "state" }, SERVING_LABEL[comp.status]),
          comp.message ? h("span", { class: "muted msg" }, comp.message) : null)));
    replaceChildren(this.body,
      h("div", { class: "health-grid" },
        h("div", {},
          h("div", { class: "kv" }, h("span", {}, "Gateway"),
            h("span", { "data-testid": "gateway-state" }, h("span", { class: `pill ${tone}` }, SERVING_LABEL[health.status]), ` v${health.version}`)),
          h("div", { class: "kv" }, h("span", {}, "Server time"), h("span", {}, fmtTime(health.serverTime))),
          components,
          this.rateLimited !== undefined
            ? h("p", { class: "hint", "data-testid": "health-rate-limited" },
              `The last check was refused by this key's rate limit (${this.rateLimited}); `,
              "the states above are from the last answer. The next check waits until the limit allows it.")
            : null),
        c ? this.callerBlock(c) : h("p", { class: "muted" }, "Not signed in")));
  }

  private callerBlock(c: CallerStatus): HTMLElement {
    const limit = Math.max(c.rateLimitLimit, 1);
    const ratio = c.rateLimitRemaining / limit;
    return h("div", { class: "caller", "data-testid": "caller" },
      h("div", { class: "kv" }, h("span", {}, "Account"), h("strong", { "data-testid": "owner" }, c.owner)),
      h("div", { class: "kv" }, h("span", {}, "Credential"),
        h("span", {}, `${credentialKind()} `, h("span", { class: "mono", "data-testid": "principal" }, c.principal))),
      h("div", { class: "kv" }, h("span", {}, "Scopes"),
        h("span", { class: "chips", "data-testid": "scopes" }, c.scopes.map((s) => h("span", { class: "chip" }, s)))),
      h("div", { class: "kv" }, h("span", {}, "Rate limit"),
        h("span", { "data-testid": "rate-limit" },
          `${formatInt(c.rateLimitRemaining)} of ${formatInt(c.rateLimitLimit)} left`)),
      h("div", {
        class: `meter ${ratio < 0.1 ? "bad" : ratio < 0.3 ? "warn" : "ok"}`, role: "meter",
        "aria-label": "Rate-limit tokens left", "aria-valuemin": 0, "aria-valuemax": c.rateLimitLimit,
        "aria-valuenow": c.rateLimitRemaining,
      }, h("div", { class: "fill", style: `width:${(ratio * 100).toFixed(1)}%` })),
      h("div", { class: "kv" }, h("span", {}, "Trades in flight"), h("span", {}, formatInt(c.inFlight))));
  }
}

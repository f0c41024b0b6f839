// Sign-in: credentials, gateway address and transport; a HealthCheck proves the credentials.
import type { CallerStatus, HealthCheckResponse } from "../../../gen/ts/tradewire/v1/service_pb";
import {
  api, configureApi, defaultBaseUrl, HEALTH_CHECK_TIMEOUT_MS, parseBaseUrl, savedTransport, TRANSPORTS, type TransportKind,
} from "../api/client";
import { Code, isAuthFailure, isUnreachable, toFailure, type ApiFailure } from "../api/errors";
import { clearCredentials, setCredentials } from "../auth";
import { h } from "../dom";
import { fmtSeconds } from "../format";
import { loadMarket } from "../markets";

export interface SignedIn {
  caller: CallerStatus;
  health: HealthCheckResponse;
}

export function signInView(onSignedIn: (s: SignedIn) => void, notice?: string): HTMLElement {
  const key = h("input", {
    id: "credential", name: "credential", type: "password", autocomplete: "off", spellcheck: "false",
    placeholder: "tw_… API key or a JWT", required: true, "aria-describedby": "credential-error",
  });
  const baseUrl = h("input", {
    id: "base-url", name: "base-url", type: "url", value: defaultBaseUrl(), spellcheck: "false",
    "aria-describedby": "base-url-error",
  });
  const baseUrlError = h("p", { id: "base-url-error", class: "field-error", role: "alert" });
  const transport = h("select", { id: "signin-transport", name: "transport" },
    TRANSPORTS.map((t) => h("option", { value: t.kind, selected: t.kind === savedTransport() }, t.label)));
  const remember = h("input", { id: "remember", type: "checkbox" });
  const error = h("p", { id: "credential-error", class: "field-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");

  const form = h("form", { class: "card signin", novalidate: true, "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, h("span", { class: "brand-mark" }, "◆"), " tradewire"),
    h("p", { class: "muted" }, "Solana trade-execution gateway — sign in with an API key or a JWT."),
    notice ? h("p", { class: "notice" }, notice) : null,
    h("div", { class: "field" }, h("label", { for: "credential" }, "API key or JWT"), key, error),
    h("div", { class: "field-row" },
      h("div", { class: "field grow" }, h("label", { for: "base-url" }, "Gateway"), baseUrl, baseUrlError),
      h("div", { class: "field" }, h("label", { for: "signin-transport" }, "Transport"), transport)),
    h("label", { class: "check" }, remember, " Remember in this tab (sessionStorage)"),
    button,
  );

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    baseUrlError.textContent = "";
    key.removeAttribute("aria-invalid");
    baseUrl.removeAttribute("aria-invalid");
    const secret = key.value.trim();
    if (!secret) {
      error.textContent = "Enter an API key or a JWT";
      key.setAttribute("aria-invalid", "true");
      key.focus();
      return;
    }
    const gateway = parseBaseUrl(baseUrl.value);
    if (!gateway) {
      baseUrlError.textContent = "Enter the gateway's full address, starting with http:// or https:// (e.g. http://127.0.0.1:8080)";
      baseUrl.setAttribute("aria-invalid", "true");
      baseUrl.focus();
      return;
    }
    let refused = false;
    button.disabled = true;
    button.textContent = "Signing in…";
    setCredentials(secret, remember.checked, gateway);
    configureApi(transport.value as TransportKind, gateway);
    try {
      const health = await api().healthCheck({}, { timeoutMs: HEALTH_CHECK_TIMEOUT_MS });
      if (!health.caller) {
        clearCredentials();
        error.textContent = refusedCredentials(health.credentialsRefused);
        key.setAttribute("aria-invalid", "true");
        refused = true;
        return;
      }
      await loadMarket();
      onSignedIn({ caller: health.caller, health });
    } catch (e) {
      clearCredentials();
      const f = toFailure(e);
      error.textContent = signInFailure(f);
      refused = isAuthFailure(f);
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
      // Disabling the button dropped a keyboard user's focus to <body>: take it to the key
      // when the key was refused, else back to the button.
      if (refused) key.focus();
      else if (form.isConnected && !form.contains(document.activeElement)) button.focus();
    }
  });
  queueMicrotask(() => key.focus());
  return form;
}

/** Why the gateway did not take the credentials, from the reason its health answer gives. */
function refusedCredentials(reason: string): string {
  const why: Record<string, string> = {
    API_KEY_EXPIRED: "This API key has expired.",
    API_KEY_REVOKED: "This API key has been revoked.",
    TOKEN_EXPIRED: "This token has expired.",
    TOKEN_NOT_YET_VALID: "This token is not valid yet.",
  };
  const words = why[reason] ?? "These credentials were not accepted by the gateway.";
  return reason ? `${words} (${reason})` : words;
}

/** Why a sign-in failed, in words: unreachable, too many failed sign-ins, or the refusal. */
function signInFailure(f: ApiFailure): string {
  if (f.code === Code.ResourceExhausted && f.reason === "RATE_LIMITED") {
    const wait = f.retryAfterSeconds !== undefined ? ` in ${fmtSeconds(Math.max(1, Math.ceil(f.retryAfterSeconds)))}` : " later";
    return `Too many failed sign-ins from this address; retry${wait}.`;
  }
  if (isUnreachable(f)) return `Could not reach the gateway: ${f.message || f.codeName}`;
  return `The gateway refused the sign-in: ${f.reason || f.codeName}: ${f.message}`;
}

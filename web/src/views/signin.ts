// Sign-in: credentials, gateway address and transport; a HealthCheck proves the credentials.
import type { CallerStatus, HealthCheckResponse } from "../../../gen/ts/tradewire/v1/service_pb";
import { api, configureApi, defaultBaseUrl, savedTransport, TRANSPORTS, type TransportKind } from "../api/client";
import { toFailure } from "../api/errors";
import { clearCredentials, setCredentials } from "../auth";
import { h } from "../dom";
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
  const baseUrl = h("input", { id: "base-url", name: "base-url", type: "url", value: defaultBaseUrl(), spellcheck: "false" });
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
      h("div", { class: "field grow" }, h("label", { for: "base-url" }, "Gateway"), baseUrl),
      h("div", { class: "field" }, h("label", { for: "signin-transport" }, "Transport"), transport)),
    h("label", { class: "check" }, remember, " Remember in this tab (sessionStorage)"),
    button,
  );

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    key.removeAttribute("aria-invalid");
    const secret = key.value.trim();
    if (!secret) {
      error.textContent = "Enter an API key or a JWT";
      key.setAttribute("aria-invalid", "true");
      key.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Signing in…";
    setCredentials(secret, remember.checked);
    configureApi(transport.value as TransportKind, baseUrl.value.replace(/\/+$/, "") || defaultBaseUrl());
    try {
      const health = await api().healthCheck({});
      if (!health.caller) {
        clearCredentials();
        error.textContent = "These credentials were not accepted by the gateway.";
        key.setAttribute("aria-invalid", "true");
        return;
      }
      await loadMarket();
      onSignedIn({ caller: health.caller, health });
    } catch (e) {
      clearCredentials();
      const f = toFailure(e);
      error.textContent = `Could not reach the gateway: ${f.message || f.codeName}`;
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });
  queueMicrotask(() => key.focus());
  return form;
}

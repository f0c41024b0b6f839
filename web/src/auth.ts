// Credentials: an API key or a JWT, kept in memory, and in sessionStorage (this tab only,
// gone when it closes) when the user asks to be remembered, together with the gateway they
// were given for. Sent as `authorization: Bearer`.
import type { Interceptor } from "@connectrpc/connect";

const STORAGE_KEY = "tradewire.credentials";
const GATEWAY_KEY = "tradewire.gateway";

let token: string | null = null;

export function normalizeToken(raw: string): string {
  return raw.trim().replace(/^bearer\s+/i, "");
}

/** `gateway`: the base URL the credentials are for, remembered with them. */
export function setCredentials(raw: string, remember: boolean, gateway: string): void {
  token = normalizeToken(raw);
  try {
    if (remember) {
      sessionStorage.setItem(STORAGE_KEY, token);
      sessionStorage.setItem(GATEWAY_KEY, gateway);
    } else {
      sessionStorage.removeItem(STORAGE_KEY);
      sessionStorage.removeItem(GATEWAY_KEY);
    }
  } catch {
    // storage disabled: memory only
  }
}

export function clearCredentials(): void {
  token = null;
  try {
    sessionStorage.removeItem(STORAGE_KEY);
    sessionStorage.removeItem(GATEWAY_KEY);
  } catch {
    // storage disabled
  }
}

/** The gateway base URL remembered with the credentials, if any. */
export function rememberedGateway(): string | null {
  try {
    return sessionStorage.getItem(GATEWAY_KEY);
  } catch {
    return null;
  }
}

/** Credentials remembered by this tab, if any (restores `token`). */
export function restoreCredentials(): string | null {
  try {
    token = sessionStorage.getItem(STORAGE_KEY);
  } catch {
    token = null;
  }
  return token;
}

export function hasCredentials(): boolean {
  return token !== null && token !== "";
}

/** "JWT" for three dot-separated base64url parts, else "API key" (for display only). */
export function credentialKind(): string {
  return token && /^[\w-]+\.[\w-]+\.[\w-]*$/.test(token) ? "JWT" : "API key";
}

export const authInterceptor: Interceptor = (next) => async (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

// The transport and the typed client of TradeExecutionService. gRPC-Web by default;
// Connect (JSON) selectable. Both go through the same interceptors (auth, rate-limit headers).
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { TradeExecutionService } from "../../../gen/ts/tradewire/v1/service_pb";
import { authInterceptor } from "../auth";
import { Code, ConnectError } from "@connectrpc/connect";
import { isRateLimited, isUnreachable, toFailure, type ApiFailure } from "./errors";

export type TransportKind = "grpc-web" | "connect";
export const TRANSPORTS: { kind: TransportKind; label: string }[] = [
  { kind: "grpc-web", label: "gRPC-Web" },
  { kind: "connect", label: "Connect" },
];

export type Api = Client<typeof TradeExecutionService>;

export interface RateLimitHeaders {
  remaining: number;
  limit: number;
}

type RateListener = (r: RateLimitHeaders) => void;
const rateListeners: RateListener[] = [];

/** Called when a unary response carries RateLimit-* (IETF draft) headers. */
export function onRateLimitHeaders(fn: RateListener): void {
  rateListeners.push(fn);
}

function readRate(headers: Headers): void {
  const remaining = headers.get("ratelimit-remaining");
  const limit = headers.get("ratelimit-limit");
  if (remaining === null || limit === null) return;
  const r = { remaining: Number(remaining), limit: Number(limit) };
  if (Number.isFinite(r.remaining) && Number.isFinite(r.limit)) rateListeners.forEach((fn) => fn(r));
}

// Only unary calls: a stream's headers describe the separate stream-open bucket, and the
// meter shows the caller's unary bucket (HealthCheck's rate_limit_*).
const rateInterceptor: Interceptor = (next) => async (req) => {
  const res = await next(req);
  if (!res.stream) readRate(res.header);
  return res;
};

const unreachableListeners: (() => void)[] = [];

/** Called when a call fails because the gateway is down, restarting or draining. */
export function onUnreachable(fn: () => void): void {
  unreachableListeners.push(fn);
}

const unauthenticatedListeners: ((f: ApiFailure) => void)[] = [];

/** Called when a call is refused UNAUTHENTICATED (revoked or expired key, invalid token...). */
export function onUnauthenticated(fn: (f: ApiFailure) => void): void {
  unauthenticatedListeners.push(fn);
}

let rateLimitedUntil = 0;

/** How long the gateway asked this caller to wait before its next call (0: no wait). Calls
 * the page makes on its own (polls, retries) wait this out rather than spend a refusal. */
export function rateLimitWaitMs(): number {
  return Math.max(0, rateLimitedUntil - Date.now());
}

const reachInterceptor: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (e) {
    const f = toFailure(e);
    if (isRateLimited(f)) {
      rateLimitedUntil = Math.max(rateLimitedUntil, Date.now() + (f.retryAfterSeconds ?? 1) * 1000);
      if (!req.stream) readRate(ConnectError.from(e).metadata); // the refusal's headers: an empty bucket
    }
    if (isUnreachable(f)) unreachableListeners.forEach((fn) => fn());
    else if (f.code === Code.Unauthenticated) unauthenticatedListeners.forEach((fn) => fn(f));
    throw e;
  }
};

/** A health check answers at once when the gateway is up: one that has not answered by then
 * means a gateway (or a network path) that hangs, shown as unreachable rather than waited on. */
export const HEALTH_CHECK_TIMEOUT_MS = 8_000;

const STORAGE_KEY = "tradewire.transport";

export function savedTransport(): TransportKind {
  try {
    const v = sessionStorage.getItem(STORAGE_KEY);
    if (v === "connect" || v === "grpc-web") return v;
  } catch {
    // storage disabled
  }
  return "grpc-web";
}

export function createTransport(kind: TransportKind, baseUrl: string): Transport {
  const interceptors = [authInterceptor, rateInterceptor, reachInterceptor];
  return kind === "connect"
    ? createConnectTransport({ baseUrl, interceptors })
    : createGrpcWebTransport({ baseUrl, interceptors });
}

let current: { api: Api; kind: TransportKind; baseUrl: string } | null = null;

export function configureApi(kind: TransportKind, baseUrl: string): void {
  current = { api: createClient(TradeExecutionService, createTransport(kind, baseUrl)), kind, baseUrl };
  try {
    sessionStorage.setItem(STORAGE_KEY, kind);
  } catch {
    // storage disabled
  }
}

export function api(): Api {
  if (!current) throw new Error("API not configured");
  return current.api;
}

export function currentTransport(): TransportKind {
  return current?.kind ?? savedTransport();
}

export function currentBaseUrl(): string {
  return current?.baseUrl ?? defaultBaseUrl();
}

/** A gateway base URL as typed: an absolute http(s) URL, without trailing slashes (the page's
 * own gateway when empty); undefined when it is not one. */
export function parseBaseUrl(text: string): string | undefined {
  const t = text.trim();
  if (t === "") return defaultBaseUrl();
  let url: URL;
  try {
    url = new URL(t);
  } catch {
    return undefined;
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.host) return undefined;
  return t.replace(/\/+$/, "");
}

/** The page's own origin and path when served by the gateway (web_root). */
export function defaultBaseUrl(): string {
  const { protocol, origin } = window.location;
  return protocol === "http:" || protocol === "https:" ? origin : "http://127.0.0.1:8080";
}

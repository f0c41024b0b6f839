// App-wide notifications between views (no framework, no globals beyond this).
import type { CallerStatus, HealthCheckResponse } from "../../gen/ts/tradewire/v1/service_pb";
import type { TradeResult } from "../../gen/ts/tradewire/v1/trade_pb";

export interface Events {
  /** A trade reached a terminal status (or was refused: `isTrade` false, nothing changed). */
  tradeSettled: { requestId: string; isTrade: boolean; result?: TradeResult };
  /** A fresh health check answered. */
  health: { health: HealthCheckResponse; caller?: CallerStatus };
  /** A call found the gateway unreachable or draining. */
  gatewayDown: Record<string, never>;
  /** The gateway serves again after it was unreachable or not serving (a restart). */
  gatewayBack: Record<string, never>;
  /** A response carried rate-limit headers. */
  rateLimit: { remaining: number; limit: number };
  /** A call was refused UNAUTHENTICATED (revoked or expired credentials): why, in words. */
  sessionRefused: { why: string };
  /** Show this trade in the execution view. */
  showTrade: { requestId: string };
}

type Handler<K extends keyof Events> = (payload: Events[K]) => void;
const handlers: { [K in keyof Events]?: Handler<K>[] } = {};

export function on<K extends keyof Events>(event: K, fn: Handler<K>): () => void {
  const list = (handlers[event] ??= []) as Handler<K>[];
  list.push(fn);
  return () => {
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  };
}

export function emit<K extends keyof Events>(event: K, payload: Events[K]): void {
  for (const fn of [...((handlers[event] ?? []) as Handler<K>[])]) fn(payload);
}

export function clearHandlers(): void {
  for (const key of Object.keys(handlers) as (keyof Events)[]) delete handlers[key];
}

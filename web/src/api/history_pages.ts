import { create } from "@bufbuild/protobuf";
import { GetTradeHistoryRequestSchema, type GetTradeHistoryRequest } from "../../../gen/ts/tradewire/v1/service_pb";
import type { TradeResult } from "../../../gen/ts/tradewire/v1/trade_pb";
import { api } from "./client";

export type HistoryFilters = Partial<Pick<GetTradeHistoryRequest, "mode" | "mint" | "statuses">>;

/** Calls one read of history may make: the gateway bounds each call's work (a filter that
 * matches few trades of a long history answers a short page, even an empty one, with a
 * token), so a read follows the token a few times before it stops. */
export const CALLS_PER_READ = 5;

/** Up to `wanted` trades (newest first) from `token` on: a short answer with a token is
 * followed by the next call (at most CALLS_PER_READ calls); the token returned goes on after
 * the last trade read ("" when there are no more). */
export async function readTrades(filters: HistoryFilters, wanted: number, token = ""):
    Promise<{ trades: TradeResult[]; nextPageToken: string }> {
  const trades: TradeResult[] = [];
  for (let calls = 0; calls < CALLS_PER_READ; calls++) {
    const res = await api().getTradeHistory(create(GetTradeHistoryRequestSchema,
      { ...filters, pageSize: wanted - trades.length, pageToken: token }));
    trades.push(...res.trades);
    token = res.nextPageToken;
    if (!token || trades.length >= wanted) break;
  }
  return { trades, nextPageToken: token };
}

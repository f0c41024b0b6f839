// The tradable universe as the gateway lists it (GetMarket): mints and the pairs that trade.
// Loaded once at sign-in, before the dashboard is built, so the views read it synchronously.
import type { GetMarketResponse } from "../../gen/ts/tradewire/v1/service_pb";
import { api } from "./api/client";

export interface MintInfo {
  symbol: string;
  address: string;
  decimals: number;
  /** Bounds of one trade's amount, in token units (decimal strings). */
  minAmount: string;
  maxAmount: string;
}

export let MINTS: readonly MintInfo[] = [];
/** Supported pairs as [base, quote] symbols; each trades in either direction. */
export let PAIRS: readonly (readonly [string, string])[] = [];
/** The mint positions and PnL are valued in. */
export let VALUATION_SYMBOL = "";

/** 1 SOL = 10^9 lamports; fees are reported in lamports (a property of the chain). */
export const SOL_DECIMALS = 9;

let byAddress = new Map<string, MintInfo>();
let bySymbol = new Map<string, MintInfo>();

/** Ask the gateway (after sign-in: the call needs the read scope). */
export async function loadMarket(): Promise<void> {
  setMarket(await api().getMarket({}));
}

export function setMarket(market: GetMarketResponse): void {
  MINTS = market.mints.map((m) => ({
    symbol: m.symbol, address: m.address, decimals: m.decimals, minAmount: m.minAmount, maxAmount: m.maxAmount,
  }));
  byAddress = new Map(MINTS.map((m) => [m.address, m]));
  bySymbol = new Map(MINTS.map((m) => [m.symbol, m]));
  const symbol = (address: string) => byAddress.get(address)?.symbol ?? address;
  PAIRS = market.pairs.map((p) => [symbol(p.baseMint), symbol(p.quoteMint)] as const);
  VALUATION_SYMBOL = symbol(market.valuationMint);
}

export function mintByAddress(address: string): MintInfo | undefined {
  return byAddress.get(address);
}

export function mintBySymbol(symbol: string): MintInfo {
  const mint = bySymbol.get(symbol);
  if (!mint) throw new Error(`unknown mint symbol ${symbol}`);
  return mint;
}

/** Mints that form a supported pair with `address` (either side). */
export function partnersOf(address: string): MintInfo[] {
  const mint = byAddress.get(address);
  if (!mint) return [];
  const out: MintInfo[] = [];
  for (const [base, quote] of PAIRS) {
    if (base === mint.symbol) out.push(mintBySymbol(quote));
    else if (quote === mint.symbol) out.push(mintBySymbol(base));
  }
  return out;
}

export function isSupportedPair(a: string, b: string): boolean {
  return partnersOf(a).some((m) => m.address === b);
}

/** The pair's [base, quote] orientation, or undefined when unsupported. */
export function pairOrientation(a: string, b: string): [MintInfo, MintInfo] | undefined {
  const ma = byAddress.get(a);
  const mb = byAddress.get(b);
  if (!ma || !mb) return undefined;
  for (const [base, quote] of PAIRS) {
    if (base === ma.symbol && quote === mb.symbol) return [ma, mb];
    if (base === mb.symbol && quote === ma.symbol) return [mb, ma];
  }
  return undefined;
}

export function shortAddress(address: string): string {
  return address.length > 12 ? `${address.slice(0, 4)}…${address.slice(-4)}` : address;
}

/** "SOL" for a known mint, "AbCd…WxYz" otherwise. */
export function mintLabel(address: string): string {
  return byAddress.get(address)?.symbol ?? shortAddress(address);
}

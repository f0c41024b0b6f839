// The tradable universe the gateway is configured with by default: mints and pairs.
// (The contract has no RPC listing them; keep this in step with core/config.py.)

export interface MintInfo {
  symbol: string;
  address: string;
  decimals: number;
}

export const MINTS: readonly MintInfo[] = [
  { symbol: "SOL", address: "So11111111111111111111111111111111111111112", decimals: 9 },
  { symbol: "USDC", address: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", decimals: 6 },
  { symbol: "USDT", address: "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", decimals: 6 },
  { symbol: "JUP", address: "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", decimals: 6 },
  { symbol: "BONK", address: "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", decimals: 5 },
];

/** Supported pairs as [base, quote]; each trades in either direction. */
export const PAIRS: readonly (readonly [string, string])[] = [
  ["SOL", "USDC"],
  ["SOL", "USDT"],
  ["USDT", "USDC"],
  ["JUP", "USDC"],
  ["BONK", "USDC"],
  ["SOL", "JUP"],
];

/** 1 SOL = 10^9 lamports; fees are reported in lamports. */
export const SOL_DECIMALS = 9;
export const VALUATION_SYMBOL = "USDC";

const byAddress = new Map(MINTS.map((m) => [m.address, m]));
const bySymbol = new Map(MINTS.map((m) => [m.symbol, m]));

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

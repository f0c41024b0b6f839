// Readable numbers and labels. Amounts are decimal strings and stay exact (see decimal.ts).
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { MevStrategy, SwapMode, TradeStatus, TradingMode } from "../../gen/ts/tradewire/v1/trade_pb";
import { ServingStatus } from "../../gen/ts/tradewire/v1/service_pb";
import { atomicToDecimal, decToString, formatDecimal, formatInt, parseDec, roundDec } from "./decimal";
import { mintByAddress, SOL_DECIMALS } from "./markets";

/** A token amount: at most the mint's decimals, thousands separators. */
export function fmtAmount(text: string, mintAddress?: string): string {
  if (text === "") return "—";
  const mint = mintAddress ? mintByAddress(mintAddress) : undefined;
  return formatDecimal(text, { maxFraction: mint?.decimals ?? 9 });
}

/** A valuation-mint (USDC) value: two decimals. */
export function fmtValue(text: string, signed = false): string {
  if (text === "") return "—";
  return formatDecimal(text, { maxFraction: 2, minFraction: 2, signed });
}

/** The colour class of a signed value as fmtValue shows it: one that rounds to zero ("0.00")
 * is neutral, whatever its sign before rounding. */
export function valueTone(text: string): "pos" | "neg" | "" {
  const d = parseDec(text);
  if (!d) return "";
  const shown = roundDec(d, 2).units;
  return shown < 0n ? "neg" : shown > 0n ? "pos" : "";
}

/** A price: at least 2 decimals; up to 6, or 4 significant digits for small prices (BONK). */
export function fmtPrice(text: string): string {
  if (text === "") return "—";
  const m = /^-?0\.(0*)[1-9]/.exec(text);
  const maxFraction = m ? Math.min(12, Math.max(6, m[1].length + 4)) : 6;
  return formatDecimal(text, { maxFraction, minFraction: 2 });
}

export function fmtLamports(lamports: bigint): string {
  return `${formatInt(lamports)} lamports`;
}

export function fmtSol(lamports: bigint): string {
  return `${formatDecimal(atomicToDecimal(lamports, SOL_DECIMALS))} SOL`;
}

export function fmtBps(bps: number): string {
  return `${formatInt(bps)} bps (${fmtBpsAsPercent(bps)} %)`;
}

/** Basis points as a percentage, in the reader's number format: 75 → "0.75" ("0,75"). */
export function fmtBpsAsPercent(bps: number | bigint): string {
  return formatDecimal(decToString({ units: BigInt(bps), scale: 2 }));
}

export function fmtTime(ts?: Timestamp): string {
  if (!ts) return "—";
  return timestampDate(ts).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** Time of day for today's timestamps, else a short date and time. */
export function fmtShortTime(ts?: Timestamp): string {
  if (!ts) return "—";
  const d = timestampDate(ts);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** Time of day to the millisecond; Intl writes the milliseconds too, in the locale's digits. */
export function fmtClock(ts?: Timestamp): string {
  if (!ts) return "—";
  return timestampDate(ts).toLocaleTimeString(undefined, {
    hourCycle: "h23", hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
  });
}

/** A measured number with exactly `digits` decimals, in the reader's digits and marks. */
function fmtFixed(value: number, digits: number): string {
  return new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);
}

/** Time since an earlier moment: "+1.3 ms", "+2.41 s" (in ar-EG "+١٫٣ ms"). */
export function fmtElapsed(ms: number): string {
  return ms < 1000 ? `+${fmtFixed(ms, 1)} ms` : `+${fmtFixed(ms / 1000, 2)} s`;
}

/** Whole seconds, for a wait or a countdown: "30 s" (in ar-EG "٣٠ s"). */
export function fmtSeconds(seconds: number): string {
  return `${formatInt(seconds)} s`;
}

/** A whole percentage: "45 %" (in ar-EG "٤٥ %"). */
export function fmtPercent(percent: number): string {
  return `${formatInt(percent)} %`;
}

export const MODE_LABEL: Record<TradingMode, string> = {
  [TradingMode.UNSPECIFIED]: "—",
  [TradingMode.PAPER]: "Paper",
  [TradingMode.LIVE]: "Live",
};

export const SWAP_MODE_LABEL: Record<SwapMode, string> = {
  [SwapMode.UNSPECIFIED]: "Exact in",
  [SwapMode.EXACT_IN]: "Exact in",
  [SwapMode.EXACT_OUT]: "Exact out",
};

export const MEV_LABEL: Record<MevStrategy, string> = {
  [MevStrategy.UNSPECIFIED]: "None",
  [MevStrategy.NONE]: "None",
  [MevStrategy.PRIORITY_FEE]: "Priority fee",
  [MevStrategy.JITO_BUNDLE]: "Jito bundle",
  [MevStrategy.JITO_DONT_FRONT]: "Jito bundle (don't front)",
};

export const STATUS_LABEL: Record<TradeStatus, string> = {
  [TradeStatus.UNSPECIFIED]: "Pending",
  [TradeStatus.RECEIVED]: "Received",
  [TradeStatus.VALIDATED]: "Validated",
  [TradeStatus.ROUTED]: "Routed",
  [TradeStatus.QUOTED]: "Quoted",
  [TradeStatus.SIGNED]: "Signed",
  [TradeStatus.SIMULATED]: "Simulated",
  [TradeStatus.SUBMITTED]: "Submitted",
  [TradeStatus.CONFIRMED]: "Confirmed",
  [TradeStatus.FILLED]: "Filled",
  [TradeStatus.REJECTED]: "Rejected",
  [TradeStatus.FAILED]: "Failed",
  [TradeStatus.CANCELLED]: "Cancelled",
  [TradeStatus.EXPIRED]: "Expired",
};

export function statusTone(status: TradeStatus): "ok" | "bad" | "warn" | "info" {
  switch (status) {
    case TradeStatus.FILLED:
      return "ok";
    case TradeStatus.REJECTED:
    case TradeStatus.FAILED:
      return "bad";
    case TradeStatus.CANCELLED:
    case TradeStatus.EXPIRED:
      return "warn";
    default:
      return "info";
  }
}

export function isTerminal(status: TradeStatus): boolean {
  return status >= TradeStatus.FILLED;
}

export const SERVING_LABEL: Record<ServingStatus, string> = {
  [ServingStatus.UNSPECIFIED]: "Unknown",
  [ServingStatus.SERVING]: "Serving",
  [ServingStatus.DEGRADED]: "Degraded",
  [ServingStatus.NOT_SERVING]: "Not serving",
};

export function servingTone(status: ServingStatus): "ok" | "warn" | "bad" {
  return status === ServingStatus.SERVING ? "ok" : status === ServingStatus.DEGRADED ? "warn" : "bad";
}

// The contract's rules, enforced in the browser before anything is sent.
//
// 1. @bufbuild/protovalidate evaluates the protovalidate annotations embedded in the generated
//    descriptors (gen/ts): request_id pattern/length, base58 mint pattern/length, amount
//    pattern, slippage <= 10000, MEV limits and the CEL rules (distinct mints, Jito tip >= 1000
//    for Jito strategies, no tip otherwise). Nothing is restated by hand.
// 2. What CEL cannot express, as the gateway does after protovalidate: a mint decodes to exactly
//    32 bytes, the amount is positive and within the mint's decimals, the pair is supported.
// Errors carry the same proto field paths the gateway puts in google.rpc.BadRequest.
import { create } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import type { Validator, Violation } from "@bufbuild/protovalidate";
import {
  MevProtectionSchema,
  MevStrategy,
  SwapMode,
  TradeRequestSchema,
  TradingMode,
  type TradeRequest,
} from "../../gen/ts/tradewire/v1/trade_pb";
import { fractionDigits, inputDecimalMark, isPositive, readDecimalInput } from "./decimal";
import { isSupportedPair, mintByAddress } from "./markets";

export interface FieldError {
  /** Proto field path, e.g. "amount", "mev_protection.jito_tip_lamports". */
  field: string;
  message: string;
}

/** What the trade form holds: text as typed, enums as chosen. */
export interface TradeDraft {
  requestId: string;
  mode: TradingMode;
  inputMint: string;
  outputMint: string;
  amount: string;
  swapMode: SwapMode;
  slippageBps: string;
  mevStrategy: MevStrategy;
  computeUnitPrice: string;
  computeUnitLimit: string;
  jitoTip: string;
}

export const F = {
  requestId: "request_id",
  mode: "mode",
  inputMint: "input_mint",
  outputMint: "output_mint",
  amount: "amount",
  swapMode: "swap_mode",
  slippage: "slippage_bps",
  strategy: "mev_protection.strategy",
  cuPrice: "mev_protection.compute_unit_price_micro_lamports",
  cuLimit: "mev_protection.compute_unit_limit",
  jitoTip: "mev_protection.jito_tip_lamports",
} as const;

// protovalidate (with its CEL engine) is the largest part of the app: load it on its own
// chunk, started as soon as a trade form exists, so the first paint does not wait for it.
let validatorPromise: Promise<Validator> | undefined;

export function loadValidator(): Promise<Validator> {
  validatorPromise ??= import("@bufbuild/protovalidate").then((m) => m.createValidator(), (e: unknown) => {
    // The chunk could not be fetched (the gateway was restarting): fetch it again next time
    // rather than refuse every trade until the page is reloaded.
    validatorPromise = undefined;
    throw e;
  });
  return validatorPromise;
}

// Message-level (CEL) rules have no field of their own: name the field a person should fix.
const MESSAGE_RULE_FIELDS: Record<string, string> = {
  "trade_request.distinct_mints": F.outputMint,
  "mev_protection.jito_tip_required": F.jitoTip,
  "mev_protection.tip_only_for_jito": F.jitoTip,
  "mev_protection.no_priority_fee_with_jito": F.cuPrice,
};

// Friendlier words for the rules a person is most likely to trip over.
const FRIENDLY: Record<string, string> = {
  [`${F.requestId}|string.pattern`]: "Use only letters, digits and . _ : -",
  [`${F.requestId}|string.min_len`]: "Enter a request id",
  [`${F.inputMint}|string.pattern`]: "Not a base58 address",
  [`${F.outputMint}|string.pattern`]: "Not a base58 address",
  [`${F.inputMint}|string.min_len`]: "A mint address has 32–44 characters",
  [`${F.outputMint}|string.min_len`]: "A mint address has 32–44 characters",
  [`${F.inputMint}|string.max_len`]: "A mint address has 32–44 characters",
  [`${F.outputMint}|string.max_len`]: "A mint address has 32–44 characters",
  [`${F.amount}|string.pattern`]: `Enter a positive decimal number, e.g. 1${inputDecimalMark()}5`,
  [`${F.amount}|string.min_len`]: "Enter an amount",
  [`${F.slippage}|uint32.lte`]: "Slippage is 0–10,000 bps (0–100 %)",
};

function violationField(v: Violation): string {
  const path = pathToString(v.field);
  const extra = MESSAGE_RULE_FIELDS[v.ruleId];
  if (!extra) return path;
  // A rule on mev_protection yields path "mev_protection": name its tip field instead.
  return extra.startsWith(path) || path === "" ? extra : `${path}.${extra}`;
}

/** protovalidate's verdict on any message of the contract, as field errors. */
export async function checkRules(request: TradeRequest): Promise<FieldError[]> {
  const validator = await loadValidator();
  const result = validator.validate(TradeRequestSchema, request);
  if (result.kind === "valid") return [];
  if (result.kind === "error") return [{ field: "", message: result.error.message }];
  return result.violations.map((v) => {
    const field = violationField(v);
    return { field, message: FRIENDLY[`${field}|${v.ruleId}`] ?? v.message };
  });
}

const UINT32_MAX = 0xffffffffn;
const UINT64_MAX = 0xffffffffffffffffn;

/** A whole number as typed; undefined for an empty field ("not set", which the contract
 * sends as its default) or a refused one. */
function parseUint(text: string, field: string, max: bigint, errors: FieldError[]): bigint | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  if (!/^\d+$/.test(t)) {
    errors.push({ field, message: "Enter a whole number" });
    return undefined;
  }
  const v = BigInt(t);
  if (v > max) {
    errors.push({ field, message: "Number is too large" });
    return undefined;
  }
  return v;
}

/** A whole number the request cannot do without: an empty field is an error (`missing`),
 * never a silent 0. */
function requireUint(text: string, field: string, max: bigint, errors: FieldError[], missing: string): bigint | undefined {
  if (text.trim() === "") {
    errors.push({ field, message: missing });
    return undefined;
  }
  return parseUint(text, field, max, errors);
}

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** Byte length of a base58 string (leading '1's are zero bytes), or -1 if not base58. */
export function base58ByteLength(text: string): number {
  let value = 0n;
  for (const ch of text) {
    const digit = B58.indexOf(ch);
    if (digit < 0) return -1;
    value = value * 58n + BigInt(digit);
  }
  let zeros = 0;
  while (zeros < text.length && text[zeros] === "1") zeros++;
  let bytes = 0;
  while (value > 0n) {
    value >>= 8n;
    bytes++;
  }
  return zeros + bytes;
}

export interface Checked {
  request: TradeRequest;
  errors: FieldError[];
}

/** Build the TradeRequest a draft describes and every reason the gateway would refuse it. */
export async function checkDraft(d: TradeDraft): Promise<Checked> {
  const errors: FieldError[] = [];
  // "0,5" typed in a comma locale is sent as "0.5"; a mark that may be a thousands separator is refused.
  const amount = readDecimalInput(d.amount);
  if (amount === undefined) {
    const mark = inputDecimalMark();
    errors.push({ field: F.amount, message: `Amount: write “${mark}” for decimals and no thousands separators, e.g. 1000 or 0${mark}5` });
  }
  const jito = d.mevStrategy === MevStrategy.JITO_BUNDLE || d.mevStrategy === MevStrategy.JITO_DONT_FRONT;
  const slippage = requireUint(d.slippageBps, F.slippage, UINT32_MAX, errors,
    "Enter a slippage tolerance in bps, e.g. 50 (= 0.5 %); 0 means no slippage allowed");
  // A priority fee needs its price; the CU limit may stay unset (0: the router sizes it).
  const cuPrice = d.mevStrategy === MevStrategy.PRIORITY_FEE
    ? requireUint(d.computeUnitPrice, F.cuPrice, UINT64_MAX, errors, "Enter a CU price: the priority fee per compute unit")
    : parseUint(d.computeUnitPrice, F.cuPrice, UINT64_MAX, errors);
  const cuLimit = parseUint(d.computeUnitLimit, F.cuLimit, UINT32_MAX, errors);
  const tip = jito
    ? requireUint(d.jitoTip, F.jitoTip, UINT64_MAX, errors, "Enter a Jito tip of at least 1,000 lamports")
    : parseUint(d.jitoTip, F.jitoTip, UINT64_MAX, errors);
  const request = create(TradeRequestSchema, {
    requestId: d.requestId.trim(),
    mode: d.mode,
    inputMint: d.inputMint.trim(),
    outputMint: d.outputMint.trim(),
    amount: amount ?? d.amount.trim(),
    swapMode: d.swapMode,
    slippageBps: Number(slippage ?? 0n),
    mevProtection: create(MevProtectionSchema, {
      strategy: d.mevStrategy,
      computeUnitPriceMicroLamports: cuPrice ?? 0n,
      computeUnitLimit: Number(cuLimit ?? 0n),
      jitoTipLamports: tip ?? 0n,
    }),
  });
  const seen = new Set(errors.map((e) => e.field));
  for (const e of await checkRules(request)) {
    if (!seen.has(e.field)) {
      errors.push(e);
      seen.add(e.field);
    }
  }
  // Solana-specific checks, each only where the contract's rules passed.
  for (const field of [F.inputMint, F.outputMint] as const) {
    const address = field === F.inputMint ? request.inputMint : request.outputMint;
    if (!seen.has(field) && base58ByteLength(address) !== 32) {
      errors.push({ field, message: "Not a 32-byte public key" });
      seen.add(field);
    }
  }
  if (!seen.has(F.amount)) {
    const amountMint = mintByAddress(request.swapMode === SwapMode.EXACT_OUT ? request.outputMint : request.inputMint);
    if (!isPositive(request.amount)) {
      errors.push({ field: F.amount, message: "Must be more than zero" });
    } else if (amountMint && fractionDigits(request.amount) > amountMint.decimals) {
      errors.push({
        field: F.amount,
        message: `${amountMint.symbol} has ${amountMint.decimals} decimals; this amount has more`,
      });
    }
  }
  const inKnown = mintByAddress(request.inputMint);
  const outKnown = mintByAddress(request.outputMint);
  if (!seen.has(F.outputMint) && inKnown && outKnown && inKnown !== outKnown && !isSupportedPair(inKnown.address, outKnown.address)) {
    errors.push({ field: F.outputMint, message: `The pair ${inKnown.symbol}/${outKnown.symbol} is not supported` });
  }
  return { request, errors };
}

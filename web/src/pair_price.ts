// A trade's price the way a trader reads a pair: quote per base (USDC per SOL), whichever
// side was sold. Exact: computed from the amounts that moved (decimal.ts), never floats.
import type { TradeResult } from "../../gen/ts/tradewire/v1/trade_pb";
import { decToString, divDec, parseDec } from "./decimal";
import { mintLabel, pairOrientation, type MintInfo } from "./markets";

export interface PairPrice {
  /** Quote units per base unit (decimal string). */
  price: string;
  base: MintInfo;
  quote: MintInfo;
}

type Amounts = Pick<TradeResult, "inputMint" | "outputMint" | "amountIn" | "amountOut">;

/** The trade's price in quote per base, or undefined when its pair is not listed or nothing moved. */
export function pairPrice(t: Amounts): PairPrice | undefined {
  const pair = pairOrientation(t.inputMint, t.outputMint);
  if (!pair) return undefined;
  const amountIn = parseDec(t.amountIn);
  const amountOut = parseDec(t.amountOut);
  if (!amountIn || !amountOut || amountIn.units === 0n || amountOut.units === 0n) return undefined;
  const [base, quote] = pair;
  // selling base: quote received / base sold; buying base: quote paid / base received
  const price = t.inputMint === base.address ? divDec(amountOut, amountIn, 9) : divDec(amountIn, amountOut, 9);
  return { price: decToString(price), base, quote };
}

/** The unit of a price: "USDC/SOL" (quote per base), or output per input for an unlisted pair. */
export function priceUnit(t: Pick<TradeResult, "inputMint" | "outputMint">, pair?: PairPrice): string {
  return pair ? `${pair.quote.symbol}/${pair.base.symbol}` : `${mintLabel(t.outputMint)}/${mintLabel(t.inputMint)}`;
}

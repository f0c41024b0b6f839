// Exact decimal-string arithmetic and formatting. Amounts cross the API as decimal strings;
// they are never turned into floats here: everything is BigInt scaled by a power of ten.

export interface Dec {
  /** The value is units / 10^scale. */
  units: bigint;
  scale: number;
}

const DEC_RE = /^([+-])?(\d+)(?:\.(\d+))?$/;

export function parseDec(text: string): Dec | undefined {
  const m = DEC_RE.exec(text.trim());
  if (!m) return undefined;
  const frac = m[3] ?? "";
  let units = BigInt(m[2] + frac);
  if (m[1] === "-") units = -units;
  return { units, scale: frac.length };
}

export function decToString({ units, scale }: Dec): string {
  const neg = units < 0n;
  let digits = (neg ? -units : units).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, "0");
    const int = digits.slice(0, -scale);
    const frac = digits.slice(-scale).replace(/0+$/, "");
    digits = frac ? `${int}.${frac}` : int;
  }
  return (neg && /[1-9]/.test(digits) ? "-" : "") + digits;
}

/** Number of significant fraction digits ("1.500" → 1), as the gateway counts them. */
export function fractionDigits(text: string): number {
  const frac = text.split(".")[1] ?? "";
  return frac.replace(/0+$/, "").length;
}

export function isPositive(text: string): boolean {
  const d = parseDec(text);
  return d !== undefined && d.units > 0n;
}

export function isNegative(text: string): boolean {
  const d = parseDec(text);
  return d !== undefined && d.units < 0n;
}

/** Round half away from zero to `places` fraction digits. */
export function roundDec(d: Dec, places: number): Dec {
  if (d.scale <= places) return { units: d.units * 10n ** BigInt(places - d.scale), scale: places };
  const div = 10n ** BigInt(d.scale - places);
  const neg = d.units < 0n;
  const abs = neg ? -d.units : d.units;
  let q = abs / div;
  if ((abs % div) * 2n >= div) q += 1n;
  return { units: neg ? -q : q, scale: places };
}

/** a / b rounded to `places` digits (b must not be zero). */
export function divDec(a: Dec, b: Dec, places: number): Dec {
  // a.units/10^a.scale ÷ b.units/10^b.scale = a.units·10^b.scale / (b.units·10^a.scale)
  const extra = places + 1; // one guard digit for rounding
  const num = a.units * 10n ** BigInt(b.scale + extra);
  const den = b.units * 10n ** BigInt(a.scale);
  return roundDec({ units: num / den, scale: extra }, places);
}

/** Atomic units (e.g. lamports) → decimal string in token units. */
export function atomicToDecimal(atomic: bigint, decimals: number): string {
  return decToString({ units: atomic, scale: decimals });
}

export interface FormatOptions {
  /** At most this many fraction digits (rounded half away from zero). */
  maxFraction?: number;
  /** At least this many fraction digits (zero-padded). */
  minFraction?: number;
  /** Prefix "+" on positive values (PnL). */
  signed?: boolean;
}

const separators = new Map<string, { group: string; decimal: string; minus: string; digits: string[] }>();

function localeParts(locale: string | undefined) {
  const key = locale ?? "";
  let parts = separators.get(key);
  if (!parts) {
    const fmt = new Intl.NumberFormat(locale).formatToParts(-1234.5);
    const digit = new Intl.NumberFormat(locale, { useGrouping: false });
    parts = {
      group: fmt.find((p) => p.type === "group")?.value ?? ",",
      decimal: fmt.find((p) => p.type === "decimal")?.value ?? ".",
      minus: fmt.find((p) => p.type === "minusSign")?.value ?? "-",
      // The locale's own digits (Arabic-Indic in ar-EG): the fraction is written in them too,
      // as Intl writes the integer part.
      digits: Array.from({ length: 10 }, (_, d) => digit.format(d)),
    };
    separators.set(key, parts);
  }
  return parts;
}

/**
 * A decimal string for people: locale thousands separators (Intl.NumberFormat on the
 * BigInt integer part), locale decimal mark, exact digits. Unparseable text is returned as is.
 */
export function formatDecimal(text: string, opts: FormatOptions = {}, locale?: string): string {
  let d = parseDec(text);
  if (!d) return text;
  if (opts.maxFraction !== undefined && d.scale > opts.maxFraction) d = roundDec(d, opts.maxFraction);
  const neg = d.units < 0n;
  const abs = neg ? -d.units : d.units;
  const digits = abs.toString().padStart(d.scale + 1, "0");
  const intPart = d.scale > 0 ? digits.slice(0, -d.scale) : digits;
  let frac = d.scale > 0 ? digits.slice(-d.scale).replace(/0+$/, "") : "";
  if (opts.minFraction !== undefined && frac.length < opts.minFraction) frac = frac.padEnd(opts.minFraction, "0");
  const parts = localeParts(locale);
  const grouped = new Intl.NumberFormat(locale, { useGrouping: true }).format(BigInt(intPart));
  const localFrac = Array.from(frac, (d) => parts.digits[Number(d)]).join("");
  const body = frac ? `${grouped}${parts.decimal}${localFrac}` : grouped;
  const isZero = abs === 0n;
  if (neg && !isZero) return `${parts.minus}${body}`;
  return opts.signed && !isZero ? `+${body}` : body;
}

/** The decimal mark a person may type in an amount: "," where the locale writes decimals
 * with a comma (de-DE, fr-FR), else the contract's ".". */
export function inputDecimalMark(locale?: string): "," | "." {
  return localeParts(locale).decimal === "," ? "," : ".";
}

/**
 * A number as typed → the contract's decimal string ("." mark, no grouping). In a comma
 * locale "0,5" is 0.5; the contract's "." is taken too. A mark that could as well be a
 * thousands separator ("1,000" in en-US; "1.000" where decimals take a comma) gives
 * undefined: it is never guessed, as a misreading is off by 1000×. Other text comes back
 * trimmed, for the contract's own checks to refuse.
 */
export function readDecimalInput(text: string, locale?: string): string | undefined {
  const t = text.trim();
  const comma = inputDecimalMark(locale) === ",";
  if (!t.includes(",")) return comma && /^[+-]?\d{1,3}(\.\d{3})+$/.test(t) ? undefined : t;
  if (!comma || t.includes(".") || t.indexOf(",") !== t.lastIndexOf(",")) return undefined;
  return t.replace(",", ".");
}

/** Integer (bigint or number) with thousands separators. */
export function formatInt(value: bigint | number, locale?: string): string {
  return new Intl.NumberFormat(locale, { useGrouping: true, maximumFractionDigits: 0 }).format(value);
}

/** Only for geometry (chart pixel positions), never for amounts. */
export function toPlotNumber(text: string): number {
  return Number(text);
}

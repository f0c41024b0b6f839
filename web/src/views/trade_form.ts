// The trade form: mode (limited by the caller's scopes), mints (limited to supported pairs),
// amount, swap mode, slippage, MEV protection. Checked in the browser before sending; the
// gateway's field violations are shown next to the fields they name.
import { MevStrategy, SwapMode, TradingMode, type TradeRequest } from "../../../gen/ts/tradewire/v1/trade_pb";
import type { FieldProblem } from "../api/errors";
import { formatInt, inputDecimalMark } from "../decimal";
import { h, replaceChildren } from "../dom";
import { fmtBpsAsPercent, MEV_LABEL } from "../format";
import { MINTS, mintByAddress, partnersOf } from "../markets";
import { checkDraft, F, loadValidator, type FieldError, type TradeDraft } from "../validation";

const CUSTOM = "custom";
/** Solana's base fee per signature, in lamports, in the reader's number format. */
const BASE_FEE = formatInt(5_000);

export function newRequestId(): string {
  const rand = crypto.getRandomValues(new Uint8Array(6));
  const hex = Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("");
  return `web-${Date.now().toString(36)}-${hex}`;
}

/** Which modes a caller's scopes allow. */
export function tradableModes(scopes: readonly string[]): TradingMode[] {
  const modes: TradingMode[] = [];
  if (scopes.includes("trade:paper") || scopes.includes("admin")) modes.push(TradingMode.PAPER);
  if (scopes.includes("trade:live") || scopes.includes("admin")) modes.push(TradingMode.LIVE);
  return modes;
}

interface FieldSlot {
  inputs: HTMLElement[];
  error: HTMLElement;
}

export class TradeForm {
  readonly el: HTMLFormElement;
  private slots = new Map<string, FieldSlot>();
  private banner: HTMLElement;
  private submit: HTMLButtonElement;
  private busy = false;

  private requestId: HTMLInputElement;
  private mode: HTMLSelectElement;
  private inputSelect: HTMLSelectElement;
  private inputCustom: HTMLInputElement;
  private outputSelect: HTMLSelectElement;
  private outputCustom: HTMLInputElement;
  private amount: HTMLInputElement;
  private amountUnit: HTMLElement;
  private amountHint: HTMLElement;
  private swapIn: HTMLInputElement;
  private swapOut: HTMLInputElement;
  private slippage: HTMLInputElement;
  private slippagePct: HTMLElement;
  private strategy: HTMLSelectElement;
  private cuPrice: HTMLInputElement;
  private cuPriceField: HTMLElement;
  private cuLimit: HTMLInputElement;
  private jitoTip: HTMLInputElement;
  private feePreview: HTMLElement;
  private priorityFields: HTMLElement;
  private tipField: HTMLElement;

  /** `onSubmit`: a checked request to send; `onNothingSent`: the form refused the request itself. */
  constructor(modes: TradingMode[], private onSubmit: (request: TradeRequest) => Promise<void>,
    private onNothingSent: () => void) {
    this.requestId = h("input", { id: "request-id", name: "request_id", value: newRequestId(), spellcheck: "false", autocomplete: "off" });
    const regen = h("button", { type: "button", class: "ghost small", title: "New request id", "aria-label": "New request id" }, "↻");
    regen.addEventListener("click", () => {
      this.requestId.value = newRequestId();
      this.clearError(F.requestId);
    });
    this.mode = h("select", { id: "mode", name: "mode" },
      modes.map((m) => h("option", { value: m }, m === TradingMode.PAPER ? "Paper" : "Live")));

    this.inputSelect = h("select", { id: "input-mint", name: "input_mint", "aria-label": "Sell" });
    this.inputCustom = h("input", { id: "input-mint-custom", class: "custom-mint", placeholder: "Mint address (base58)", spellcheck: "false", "aria-label": "Sell mint address", hidden: true });
    this.outputSelect = h("select", { id: "output-mint", name: "output_mint", "aria-label": "Buy" });
    this.outputCustom = h("input", { id: "output-mint-custom", class: "custom-mint", placeholder: "Mint address (base58)", spellcheck: "false", "aria-label": "Buy mint address", hidden: true });
    const flip = h("button", { type: "button", class: "ghost flip", title: "Swap sides", "aria-label": "Swap sides" }, "⇄");
    flip.addEventListener("click", () => this.flip());

    this.amount = h("input", { id: "amount", name: "amount", inputmode: "decimal", autocomplete: "off", placeholder: `0${inputDecimalMark()}0`, spellcheck: "false" });
    this.amountUnit = h("span", { class: "unit", id: "amount-unit" });
    this.amountHint = h("span", { class: "hint" });
    this.swapIn = h("input", { type: "radio", name: "swap_mode", value: String(SwapMode.EXACT_IN), checked: true, id: "swap-in" });
    this.swapOut = h("input", { type: "radio", name: "swap_mode", value: String(SwapMode.EXACT_OUT), id: "swap-out" });

    this.slippage = h("input", { id: "slippage", name: "slippage_bps", inputmode: "numeric", value: "50", autocomplete: "off" });
    this.slippagePct = h("span", { class: "unit" });
    const presets = h("div", { class: "presets" }, [10, 50, 100, 300].map((bps) => {
      const b = h("button", { type: "button", class: "chip-button" }, `${fmtBpsAsPercent(bps)} %`);
      b.addEventListener("click", () => {
        this.slippage.value = String(bps);
        this.clearError(F.slippage);
        this.sync();
      });
      return b;
    }));

    this.strategy = h("select", { id: "mev-strategy", name: "mev_strategy" },
      [MevStrategy.NONE, MevStrategy.PRIORITY_FEE, MevStrategy.JITO_BUNDLE, MevStrategy.JITO_DONT_FRONT].map((s) =>
        h("option", { value: s }, MEV_LABEL[s])));
    this.cuPrice = h("input", { id: "cu-price", inputmode: "numeric", value: "50000", autocomplete: "off" });
    this.cuLimit = h("input", { id: "cu-limit", inputmode: "numeric", value: "200000", autocomplete: "off", placeholder: "auto" });
    this.jitoTip = h("input", { id: "jito-tip", inputmode: "numeric", value: "10000", autocomplete: "off" });
    this.feePreview = h("p", { class: "hint", id: "fee-preview" });

    this.banner = h("div", { class: "banner", role: "alert", hidden: true, "data-testid": "form-error" });
    this.submit = h("button", { type: "submit", class: "primary wide", id: "submit-trade" }, "Execute trade");

    const field = (path: string, label: HTMLElement | string, forId: string, ...controls: HTMLElement[]) => {
      const error = h("p", { class: "field-error", "data-field": path, id: `err-${forId}` });
      this.slots.set(path, { inputs: controls.filter((c) => c.matches("input, select")), error });
      for (const c of controls) if (c.matches("input, select")) c.setAttribute("aria-describedby", error.id);
      return h("div", { class: "field", "data-field-group": path },
        typeof label === "string" ? h("label", { for: forId }, label) : label, ...controls, error);
    };

    this.cuPriceField = field(F.cuPrice, "CU price (µlamports)", "cu-price", this.cuPrice);
    this.priorityFields = h("div", { class: "field-row" },
      this.cuPriceField,
      field(F.cuLimit, h("label", { for: "cu-limit" }, "CU limit ", h("span", { class: "hint" }, "(empty: set by the router)")),
        "cu-limit", this.cuLimit));
    this.tipField = field(F.jitoTip, "Jito tip (lamports)", "jito-tip", this.jitoTip);

    this.el = h("form", { class: "card trade-form", id: "trade-form", novalidate: true, "aria-labelledby": "trade-title" },
      h("div", { class: "card-head" }, h("h2", { id: "trade-title" }, "New trade")),
      h("div", { class: "field-row" },
        field(F.mode, "Mode", "mode", this.mode),
        h("div", { class: "grow" }, field(F.requestId, "Request id", "request-id", h("div", { class: "with-button" }, this.requestId, regen)))),
      h("div", { class: "pair-row" },
        field(F.inputMint, "Sell", "input-mint", this.inputSelect, this.inputCustom),
        flip,
        field(F.outputMint, "Buy", "output-mint", this.outputSelect, this.outputCustom)),
      h("div", { class: "field-row" },
        h("div", { class: "grow" }, field(F.amount, h("label", { for: "amount" }, "Amount ", this.amountHint), "amount",
          h("div", { class: "with-unit" }, this.amount, this.amountUnit))),
        field(F.swapMode, "Amount is", "swap-in",
          h("div", { class: "segmented", role: "radiogroup", "aria-label": "Swap mode" },
            h("label", {}, this.swapIn, h("span", {}, "Exact in")),
            h("label", {}, this.swapOut, h("span", {}, "Exact out"))))),
      field(F.slippage, "Slippage tolerance (bps)", "slippage", h("div", { class: "with-unit" }, this.slippage, this.slippagePct), presets),
      h("fieldset", { class: "mev" },
        h("legend", {}, "MEV protection"),
        field(F.strategy, "Strategy", "mev-strategy", this.strategy),
        this.priorityFields,
        this.tipField,
        this.feePreview),
      this.banner,
      this.submit);

    // Slot inputs registered inside wrappers: find them again (wrappers are not inputs).
    this.slots.get(F.requestId)!.inputs = [this.requestId];
    this.slots.get(F.inputMint)!.inputs = [this.inputSelect, this.inputCustom];
    this.slots.get(F.outputMint)!.inputs = [this.outputSelect, this.outputCustom];
    this.slots.get(F.amount)!.inputs = [this.amount];
    this.slots.get(F.swapMode)!.inputs = [this.swapIn, this.swapOut];
    this.slots.get(F.slippage)!.inputs = [this.slippage];
    for (const [path, slot] of this.slots) {
      for (const input of slot.inputs) {
        input.setAttribute("aria-describedby", slot.error.id);
        input.addEventListener("input", () => {
          this.clearError(path);
          this.sync();
        });
        input.addEventListener("change", () => this.sync());
      }
    }
    this.inputSelect.addEventListener("change", () => {
      this.fillOutputOptions();
      this.clearError(F.outputMint);
    });
    this.strategy.addEventListener("change", () => {
      this.clearError(F.jitoTip);
      this.sync();
    });
    this.el.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.handleSubmit();
    });

    this.fillInputOptions();
    this.sync();
    // Loaded ahead of the first submit; a failure here is retried (and reported) by the submit.
    loadValidator().catch(() => undefined);
  }

  // -- mint pickers ------------------------------------------------------------------------

  private fillInputOptions(): void {
    replaceChildren(this.inputSelect,
      MINTS.map((m) => h("option", { value: m.address, selected: m.symbol === "SOL" }, m.symbol)),
      h("option", { value: CUSTOM }, "Other mint…"));
    this.fillOutputOptions("USDC");
  }

  private fillOutputOptions(preferSymbol?: string): void {
    const current = this.outputSelect.value;
    const input = this.inputSelect.value;
    const choices = input === CUSTOM ? [...MINTS] : partnersOf(input);
    const keep = choices.find((m) => m.address === current) ?? (preferSymbol ? choices.find((m) => m.symbol === preferSymbol) : undefined);
    replaceChildren(this.outputSelect,
      choices.map((m) => h("option", { value: m.address, selected: m === keep }, m.symbol)),
      h("option", { value: CUSTOM, selected: current === CUSTOM && input !== CUSTOM }, "Other mint…"));
    this.sync();
  }

  private flip(): void {
    const input = this.mintValue("input");
    const output = this.mintValue("output");
    const inKnown = mintByAddress(input);
    const outKnown = mintByAddress(output);
    if (outKnown) this.inputSelect.value = outKnown.address;
    else {
      this.inputSelect.value = CUSTOM;
      this.inputCustom.value = output;
    }
    this.fillOutputOptions();
    if (inKnown && [...this.outputSelect.options].some((o) => o.value === inKnown.address)) this.outputSelect.value = inKnown.address;
    else {
      this.outputSelect.value = CUSTOM;
      this.outputCustom.value = input;
    }
    this.clearError(F.inputMint);
    this.clearError(F.outputMint);
    this.sync();
  }

  private mintValue(side: "input" | "output"): string {
    const select = side === "input" ? this.inputSelect : this.outputSelect;
    const custom = side === "input" ? this.inputCustom : this.outputCustom;
    return select.value === CUSTOM ? custom.value.trim() : select.value;
  }

  // -- derived display -----------------------------------------------------------------------

  private sync(): void {
    this.inputCustom.hidden = this.inputSelect.value !== CUSTOM;
    this.outputCustom.hidden = this.outputSelect.value !== CUSTOM;
    const exactOut = this.swapOut.checked;
    const amountMint = mintByAddress(this.mintValue(exactOut ? "output" : "input"));
    this.amountUnit.textContent = amountMint?.symbol ?? "";
    this.amountHint.textContent = amountMint
      ? `(${exactOut ? "to buy" : "to sell"}, up to ${amountMint.decimals} decimals)`
      : `(${exactOut ? "to buy" : "to sell"})`;
    const bps = this.slippage.value.trim();
    this.slippagePct.textContent = /^\d+$/.test(bps) && bps.length < 7 ? `= ${fmtBpsAsPercent(BigInt(bps))} %` : "";

    const strategy = Number(this.strategy.value) as MevStrategy;
    const jito = strategy === MevStrategy.JITO_BUNDLE || strategy === MevStrategy.JITO_DONT_FRONT;
    const priority = strategy !== MevStrategy.NONE;
    this.priorityFields.hidden = !priority;
    this.cuPriceField.hidden = jito; // a bundle's tip pays for inclusion: no priority fee (the contract refuses one)
    this.tipField.hidden = !jito;
    const price = this.cuPrice.value.trim();
    const limit = this.cuLimit.value.trim();
    if (jito) {
      this.feePreview.textContent = `Jito tip + ${BASE_FEE} base fee; no priority fee.`;
    } else if (priority && /^\d+$/.test(price) && /^0*$/.test(limit)) {
      // An empty (or 0) limit is the contract's "not set": the fee follows the router's limit.
      this.feePreview.textContent = `Priority fee = CU price × the CU limit the router sets + ${BASE_FEE} base fee.`;
    } else if (priority && /^\d+$/.test(price) && /^\d+$/.test(limit)) {
      const fee = (BigInt(price) * BigInt(limit) + 999_999n) / 1_000_000n; // ceil, as the executor charges
      this.feePreview.textContent = `Priority fee ≈ ${formatInt(fee)} lamports + ${BASE_FEE} base fee`;
    } else {
      this.feePreview.textContent = strategy === MevStrategy.NONE ? `Plain send: ${BASE_FEE} lamports base fee per signature.` : "";
    }
    if (!this.busy) {
      const mode = Number(this.mode.value) as TradingMode;
      this.submit.textContent = mode === TradingMode.LIVE ? "Execute live trade" : "Execute paper trade";
    }
  }

  draft(): TradeDraft {
    const strategy = Number(this.strategy.value) as MevStrategy;
    const jito = strategy === MevStrategy.JITO_BUNDLE || strategy === MevStrategy.JITO_DONT_FRONT;
    const priority = strategy !== MevStrategy.NONE;
    return {
      requestId: this.requestId.value,
      mode: Number(this.mode.value) as TradingMode,
      inputMint: this.mintValue("input"),
      outputMint: this.mintValue("output"),
      amount: this.amount.value,
      swapMode: this.swapOut.checked ? SwapMode.EXACT_OUT : SwapMode.EXACT_IN,
      slippageBps: this.slippage.value,
      mevStrategy: strategy,
      computeUnitPrice: priority && !jito ? this.cuPrice.value : "",
      computeUnitLimit: priority ? this.cuLimit.value : "",
      jitoTip: jito ? this.jitoTip.value : "",
    };
  }

  // -- errors --------------------------------------------------------------------------------

  /** Show errors at their fields; returns those no field claims (shown in the banner). */
  showErrors(errors: (FieldError | FieldProblem)[], source: "browser" | "gateway", summary?: string): void {
    this.clearErrors();
    const unplaced: string[] = [];
    let first: HTMLElement | undefined;
    for (const e of errors) {
      const message = "message" in e ? e.message : e.description;
      const slot = this.slotFor(e.field);
      if (!slot) {
        unplaced.push(e.field ? `${e.field}: ${message}` : message);
        continue;
      }
      slot.error.textContent = slot.error.textContent ? `${slot.error.textContent}; ${message}` : message;
      slot.error.dataset.source = source;
      for (const input of slot.inputs) input.setAttribute("aria-invalid", "true");
      first ??= slot.inputs.find((i) => !i.hidden);
    }
    if (summary || unplaced.length) this.showBanner([summary, ...unplaced].filter(Boolean).join(" — "));
    first?.focus();
  }

  showBanner(text: string): void {
    this.banner.textContent = text;
    this.banner.hidden = false;
  }

  private slotFor(path: string): FieldSlot | undefined {
    if (this.slots.has(path)) return this.slots.get(path);
    if (path === "mev_protection") return this.slots.get(F.jitoTip);
    // "trades[0].amount" style paths from batch answers: match the last segment
    const last = path.replace(/^.*\]\./, "");
    return this.slots.get(last);
  }

  clearErrors(): void {
    for (const path of this.slots.keys()) this.clearError(path);
    this.banner.hidden = true;
    this.banner.textContent = "";
  }

  private clearError(path: string): void {
    const slot = this.slots.get(path);
    if (!slot) return;
    slot.error.textContent = "";
    delete slot.error.dataset.source;
    for (const input of slot.inputs) input.removeAttribute("aria-invalid");
  }

  // -- submit --------------------------------------------------------------------------------

  private async handleSubmit(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.submit.disabled = true;
    try {
      const { request, errors } = await checkDraft(this.draft());
      if (errors.length) {
        this.showErrors(errors, "browser", "Fix the highlighted fields — nothing was sent.");
        this.onNothingSent();
        return;
      }
      this.clearErrors();
      this.submit.textContent = "Executing…";
      await this.onSubmit(request);
    } catch (e) {
      this.showBanner(`Could not submit: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.busy = false;
      this.submit.disabled = false;
      this.sync();
      // Disabling the focused button dropped the focus to <body>: give it back.
      if (!document.activeElement || document.activeElement === document.body) this.submit.focus();
    }
  }

  /** After a request that became a trade (filled, rejected, or still running), or one refused
   * because of its id, the next one needs a fresh idempotency key. A refusal shown at the id
   * stays, saying it was about the previous id. */
  renewRequestId(): void {
    const previous = this.requestId.value.trim();
    this.requestId.value = newRequestId();
    const slot = this.slots.get(F.requestId)!;
    if (!slot.error.textContent) return;
    slot.error.textContent = `“${previous}”: ${slot.error.textContent} — a new request id is filled in.`;
    this.requestId.removeAttribute("aria-invalid");
  }
}

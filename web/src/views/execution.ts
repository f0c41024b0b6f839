// The live execution view: a progress bar and a timeline driven by StreamExecutionStatus,
// then the final result with itemised fees (and the signature of LIVE trades).
import {
  StatusKind,
  SwapMode,
  TradeStatus,
  TradingMode,
  type ExecutionStatus,
  type TradeRequest,
  type TradeResult,
} from "../../../gen/ts/tradewire/v1/trade_pb";
import { api } from "../api/client";
import { Code, codeName, gotNoAnswer, isRateLimited, isUnreachable, toFailure, type ApiFailure } from "../api/errors";
import { countdown } from "../countdown";
import { divDec, formatDecimal, formatInt, parseDec, decToString } from "../decimal";
import { h, replaceChildren } from "../dom";
import {
  fmtAmount, fmtClock, fmtElapsed, fmtLamports, fmtPercent, fmtPrice, fmtSeconds, fmtSol, fmtTime, isTerminal, MODE_LABEL,
  STATUS_LABEL, statusTone, SWAP_MODE_LABEL,
} from "../format";
import { mintLabel } from "../markets";
import { Backoff, sleep } from "../retry";

export type Outcome = ({ ok: true; result: TradeResult } | { ok: false; failure: ApiFailure }) & {
  /** The request id now names a trade (ended, or still running on the server), so the next
   * request needs a new one; false when it was refused before it became a trade. */
  isTrade: boolean;
};

interface FollowHooks {
  /** The stream found no such trade: whether to ask again (it may not exist yet). */
  retryNotFound?: () => Promise<boolean>;
  /** A transition was shown. */
  onEvent?: () => void;
  /** Aborted once how the trade ended is known another way: an outage of the stream is then
   * not waited out. */
  endKnown?: AbortSignal;
  /** The stream could not be reached (called once per outage). */
  onOutage?: () => void;
}

/** How long to keep trying to reach a gateway that restarts, since the last event. */
const RECONNECT_FOR_MS = 120_000;
/** How long a connected stream may lag behind an ExecuteTrade answer that says how the trade ended. */
const END_GRACE_MS = 2_000;

/** A signal that aborts `ms` after `trigger` does. */
function abortAfter(trigger: AbortSignal, ms: number): AbortSignal {
  const later = new AbortController();
  const arm = () => window.setTimeout(() => later.abort(), ms);
  if (trigger.aborted) arm();
  else trigger.addEventListener("abort", arm, { once: true });
  return later.signal;
}

export class ExecutionView {
  readonly el: HTMLElement;
  private title: HTMLElement;
  private badge: HTMLElement;
  private bar: HTMLElement;
  private barFill: HTMLElement;
  private barLabel: HTMLElement;
  private timeline: HTMLOListElement;
  private resultBox: HTMLElement;
  private cancelButton: HTMLButtonElement;
  private requestId = "";
  /** The last stage the trade shown reached (UNSPECIFIED before its first event). */
  private stage = TradeStatus.UNSPECIFIED;
  /** The card shows a request refused before it became a trade. */
  private showsRefusal = false;
  private percent = 0;
  private nextSequence = 1;
  private terminal: ExecutionStatus | undefined;
  private firstNs: bigint | undefined;
  /** Aborted when the view moves on: stops following, never an ExecuteTrade call. */
  private shown: AbortController | undefined;

  constructor(private canTrade: boolean) {
    this.title = h("span", { class: "muted", "data-testid": "exec-request-id" }, "No trade yet");
    this.badge = h("span", { class: "pill info", "data-testid": "exec-status" }, "Idle");
    this.barFill = h("div", { class: "fill" });
    this.barLabel = h("span", { class: "bar-label" }, "0 %");
    this.bar = h("div", {
      class: "progress", role: "progressbar", "aria-label": "Trade progress",
      "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0, "data-testid": "exec-progress",
    }, this.barFill, this.barLabel);
    this.timeline = h("ol", { class: "timeline", "data-testid": "exec-timeline" });
    this.resultBox = h("div", { class: "result", "data-testid": "exec-result" },
      h("p", { class: "muted" }, canTrade
        ? "Submit a trade to follow its execution here, or pick one from the history."
        : "Pick a trade from the history to replay its execution here."));
    this.cancelButton = h("button", { type: "button", class: "ghost small", hidden: true, "data-testid": "exec-cancel" }, "Cancel trade");
    this.cancelButton.addEventListener("click", () => void this.cancel());
    this.el = h("section", { class: "card", id: "execution", "aria-labelledby": "exec-title", "aria-live": "polite" },
      h("div", { class: "card-head" }, h("h2", { id: "exec-title" }, "Execution"), this.badge),
      h("div", { class: "exec-id" }, this.title, this.cancelButton),
      this.bar, this.timeline, this.resultBox);
  }

  /** The dashboard closed (signed out): the card's trade is no longer followed. */
  stop(): void {
    this.shown?.abort();
  }

  private reset(requestId: string, request?: TradeRequest): AbortSignal {
    this.shown?.abort();
    this.shown = new AbortController();
    this.requestId = requestId;
    this.stage = TradeStatus.UNSPECIFIED;
    this.showsRefusal = false;
    this.updateCancel();
    this.percent = 0;
    this.nextSequence = 1;
    this.terminal = undefined;
    this.firstNs = undefined;
    this.title.textContent = requestId;
    this.title.className = "mono";
    this.setBadge("Submitting…", "info");
    this.setProgress(0, "info");
    this.timeline.replaceChildren();
    replaceChildren(this.resultBox, request
      ? h("p", { class: "muted" },
        `${MODE_LABEL[request.mode]} · ${SWAP_MODE_LABEL[request.swapMode]} · ${fmtAmount(request.amount)} `,
        request.swapMode === SwapMode.EXACT_OUT ? `${mintLabel(request.outputMint)} to buy` : `${mintLabel(request.inputMint)} to sell`)
      : h("p", { class: "muted" }, "Loading…"));
    return this.shown.signal;
  }

  /** Execute a trade and follow it to its terminal status. */
  async run(request: TradeRequest): Promise<Outcome> {
    const shown = this.reset(request.requestId, request);
    const following = new AbortController();
    shown.addEventListener("abort", () => following.abort());
    let sawEvents = false;
    // No abort signal: switching the view must not cancel the trade on the server.
    const exec: Promise<Outcome> = api().executeTrade(request).then(
      (result) => ({ ok: true as const, result, isTrade: true }),
      (e) => {
        const failure = toFailure(e);
        // The call broke (gateway stopping or unreachable) after the trade had started: it
        // goes on (or resumes after a restart) on the server.
        const isTrade = !!failure.metadata["trade_id"] || (isUnreachable(failure) && sawEvents);
        return { ok: false as const, failure, isTrade };
      },
    );
    // Refused before it became a trade: the stream would only wait for a trade that never comes.
    // Answered with how the trade ended: a status stream that cannot be reached is not waited for.
    const answered = new AbortController();
    void exec.then((o) => {
      if (!o.isTrade) following.abort();
      else if (endsTrade(o)) answered.abort();
    });
    await this.follow(request.requestId, following.signal, {
      retryNotFound: async () => (await exec).isTrade,
      onEvent: () => { sawEvents = true; },
      endKnown: answered.signal,
    });
    let outcome = await exec;
    if (shown.aborted) return outcome; // the view moved on; the form still gets the outcome
    const end = this.terminal?.result;
    if (end && !outcome.ok && isUnreachable(outcome.failure)) outcome = outcomeOf(end); // the stream saw how it ended
    if (!outcome.isTrade) {
      // Refused before it became a trade (invalid, duplicate id, limits...): any events the
      // stream found under this request id belong to an earlier trade, not to this request.
      this.timeline.replaceChildren();
      this.percent = 0;
      this.stage = TradeStatus.UNSPECIFIED;
      this.updateCancel();
      if (!outcome.ok) this.showFailure(outcome.failure, true);
      this.showsRefusal = true;
    } else if (!this.terminal) {
      if (outcome.ok) this.finish(outcome.result);
      else this.showFailure(outcome.failure, true);
    }
    return outcome;
  }

  /** Replay a past (or running) trade's events from the first one. */
  async replay(requestId: string): Promise<void> {
    const shown = this.reset(requestId);
    this.setBadge("Loading…", "info");
    // While the status stream cannot be reached, the stored trade tells how an ended one ended.
    const ended = new AbortController();
    let stored: TradeResult | undefined;
    const lookUp = async () => {
      try {
        const result = await api().getTrade({ requestId }, { signal: shown });
        if (isTerminal(result.status)) {
          stored = result;
          ended.abort();
        }
      } catch {
        // the stream's reconnection reports the outage
      }
    };
    await this.follow(requestId, shown, { endKnown: ended.signal, onOutage: () => void lookUp() });
    if (!this.terminal && !shown.aborted) {
      try {
        const result = stored ?? await api().getTrade({ requestId }, { signal: shown });
        this.finish(result);
      } catch (e) {
        if (!shown.aborted) this.showFailure(toFailure(e));
      }
    }
  }

  /** Follow a trade's events to its terminal one. Across a gateway restart (SHUTDOWN message,
   * UNAVAILABLE, unreachable) it reconnects with backoff and resumes by sequence, giving up
   * after RECONNECT_FOR_MS without news, or at once when `hooks.endKnown` aborts. */
  private async follow(requestId: string, signal: AbortSignal, hooks: FollowHooks = {}): Promise<void> {
    const { retryNotFound, onEvent, endKnown, onOutage } = hooks;
    const backoff = new Backoff(250, 4_000);
    let giveUpAt = Date.now() + RECONNECT_FOR_MS;
    let notFound = 0;
    let outage = false;
    // Once the end is known another way, a stream that has still not shown it (stalled, or
    // held back by a proxy) gets a moment more, then is dropped.
    const stalled = endKnown ? abortAfter(endKnown, END_GRACE_MS) : undefined;
    const streamSignal = stalled ? AbortSignal.any([signal, stalled]) : signal;
    const endAnswered = "Stopped following: the gateway has answered how the trade ended.";
    while (!this.terminal && !signal.aborted) {
      let problem = "the status stream ended early";
      try {
        const stream = api().streamExecutionStatus({ requestId, fromSequence: BigInt(this.nextSequence) },
          { signal: streamSignal });
        for await (const event of stream) {
          if (event.kind === StatusKind.HEARTBEAT) continue;
          if (event.kind === StatusKind.SHUTDOWN) {
            problem = "the gateway is restarting";
            break; // resume by sequence once it is back
          }
          outage = false;
          backoff.reset();
          giveUpAt = Date.now() + RECONNECT_FOR_MS;
          this.apply(event);
          onEvent?.();
          if (event.terminal) return;
        }
      } catch (e) {
        if (signal.aborted) return;
        if (stalled?.aborted) {
          this.note(endAnswered);
          return;
        }
        const f = toFailure(e);
        if (f.code === Code.NotFound) {
          if (notFound++ < 3 && retryNotFound && (await retryNotFound())) continue;
          return;
        }
        if (!isUnreachable(f)) {
          this.note(`Status stream: ${f.message || f.codeName}`);
          return;
        }
        problem = `cannot reach the gateway (${f.message || f.codeName})`;
      }
      if (signal.aborted) return;
      if (endKnown?.aborted) { // (the stream failed or ended without the end: say why it is left)
        this.note(endAnswered);
        return;
      }
      if (Date.now() > giveUpAt) {
        this.note(`Stopped following: ${problem}. Check the trade in the history later.`);
        return;
      }
      if (!outage) {
        this.note(`Reconnecting: ${problem}…`);
        onOutage?.();
      }
      outage = true;
      await sleep(backoff.next(), endKnown ? AbortSignal.any([signal, endKnown]) : signal);
    }
  }

  private apply(event: ExecutionStatus): void {
    if (event.sequence < BigInt(this.nextSequence)) return; // already shown
    this.nextSequence = Number(event.sequence) + 1;
    const tone = statusTone(event.stage);
    // A terminal event says 100 % however the trade ended: the bar keeps the progress the
    // trade really made (a rejection after quoting stays at the quote).
    if (!event.terminal) this.percent = Math.max(this.percent, event.percentComplete);
    this.stage = event.stage;
    this.updateCancel();
    if (event.terminal) this.showEnd(event.stage);
    else this.setProgress(this.percent, "info");
    this.setBadge(STATUS_LABEL[event.stage], tone);
    this.timeline.append(
      h("li", { class: tone, "data-stage": TradeStatus[event.stage] },
        h("span", { class: "dot", "aria-hidden": "true" }),
        h("span", { class: "stage" }, STATUS_LABEL[event.stage]),
        h("span", { class: "msg" }, event.message),
        h("time", { class: "muted mono", title: `#${formatInt(event.sequence)} · ${fmtClock(event.timestamp)}` }, this.elapsed(event))));
    if (event.terminal) {
      this.terminal = event;
      if (event.result) this.finish(event.result);
    }
  }

  /** Time since the trade's first event, e.g. "+1.3 ms", "+2.41 s". */
  private elapsed(event: ExecutionStatus): string {
    if (!event.timestamp) return "";
    const ns = event.timestamp.seconds * 1_000_000_000n + BigInt(event.timestamp.nanos);
    this.firstNs ??= ns;
    return fmtElapsed(Number(ns - this.firstNs) / 1e6);
  }

  /** A line of the timeline that is not a stage (it spans the stage and message columns). */
  private note(text: string): void {
    this.timeline.append(h("li", { class: "warn note" }, h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "msg" }, text)));
  }

  /** `label`: what the bar says instead of just its percentage (how the trade ended). */
  private setProgress(percent: number, tone: string, label?: string): void {
    const text = label ?? fmtPercent(percent);
    this.bar.setAttribute("aria-valuenow", String(percent));
    this.bar.setAttribute("aria-valuetext", text);
    this.bar.className = `progress ${tone}`;
    this.barFill.style.width = `${percent}%`;
    this.barLabel.textContent = text;
  }

  /** The bar of a trade that has ended: full when filled; otherwise where it stopped, and why. */
  private showEnd(status: TradeStatus): void {
    if (status === TradeStatus.FILLED) this.setProgress(100, "ok");
    else this.setProgress(this.percent, statusTone(status), `${STATUS_LABEL[status]} at ${fmtPercent(this.percent)}`);
  }

  /** Cancel is offered until the trade reaches the point where it may be sent (SIMULATED):
   * from there the gateway lets it run to its end. */
  private updateCancel(): void {
    const cancellable = this.canTrade && this.stage !== TradeStatus.UNSPECIFIED && this.stage < TradeStatus.SIMULATED;
    this.cancelButton.hidden = !cancellable;
    if (cancellable) return;
    this.cancelButton.disabled = false;
    this.cancelButton.textContent = "Cancel trade";
  }

  private async cancel(): Promise<void> {
    const shown = this.shown?.signal;
    this.cancelButton.disabled = true;
    this.cancelButton.textContent = "Cancelling…";
    try {
      // The trade's CANCELLED event arrives on the status stream like any other.
      await api().cancelTrade({ requestId: this.requestId, reason: "cancelled from the dashboard" });
    } catch (e) {
      if (shown?.aborted) return;
      const f = toFailure(e);
      this.note(`Not cancelled: ${f.reason || f.codeName}: ${f.message}`);
      this.cancelButton.disabled = false;
      this.cancelButton.textContent = "Cancel trade";
    }
  }

  /** A request nothing was sent for (the form refused it): a refusal still shown here belongs
   * to an earlier request, so it goes. A trade shown here stays: it names its request id. */
  discardRefusal(): void {
    if (!this.showsRefusal) return;
    this.reset("");
    this.title.textContent = "No trade: nothing was sent";
    this.title.className = "muted";
    this.setBadge("Not sent", "info");
    replaceChildren(this.resultBox, h("p", { class: "muted" }, "Fix the highlighted fields of the trade form and submit again."));
  }

  private setBadge(text: string, tone: string): void {
    this.badge.textContent = text;
    this.badge.className = `pill ${tone}`;
  }

  /** `atForm`: the trade form shows the field violations next to its fields; not repeated here. */
  private showFailure(f: ApiFailure, atForm = false): void {
    const noAnswer = gotNoAnswer(f);
    const limited = isRateLimited(f);
    const tone = limited ? "warn" : "bad";
    // A trade that ended (the answer names its status) is labelled as the history labels it.
    const ended = endedStatus(f);
    if (ended !== undefined) {
      this.stage = ended;
      this.setBadge(STATUS_LABEL[ended], statusTone(ended));
      this.showEnd(ended);
    } else {
      this.setBadge(limited ? "Rate limited"
        : f.code === Code.InvalidArgument || f.code === Code.AlreadyExists ? "Refused" : noAnswer ? "Unreachable" : "Failed", tone);
      this.setProgress(this.percent, tone);
    }
    this.updateCancel();
    const violations = f.fieldViolations;
    const retry = f.retryAfterSeconds !== undefined ? h("p", { "data-testid": "exec-retry" }) : null;
    replaceChildren(this.resultBox,
      h("div", { class: `banner ${tone}`, "data-testid": "exec-error" },
        noAnswer
          ? [h("strong", {}, "Could not reach the gateway"), ` (${f.message || f.codeName}). Retry when it is back: `,
            "the same request id keeps the trade from running twice."]
          : atForm && violations.length
            ? [h("strong", {}, f.reason || f.codeName), " — refused: see the highlighted ",
              violations.length === 1 ? "field" : "fields", " of the trade form."]
            : [h("strong", {}, f.reason || f.codeName), " — ", f.message,
              violations.length ? h("ul", {}, violations.map((v) => h("li", {}, h("code", {}, v.field), ": ", v.description))) : null],
        retry));
    if (retry && this.shown) {
      countdown(retry, Date.now() + f.retryAfterSeconds! * 1000,
        (s) => (s > 0 ? `Retry in ${fmtSeconds(s)}.` : "You can retry now."), this.shown.signal);
    }
  }

  private finish(r: TradeResult): void {
    if (isTerminal(r.status)) {
      this.setBadge(STATUS_LABEL[r.status], statusTone(r.status));
      this.stage = r.status;
      this.updateCancel();
      this.showEnd(r.status);
    } else if (r.status > this.stage) {
      // A running trade whose stream could not be followed (further): the stage it was stored
      // at, rather than "Loading…" or an earlier stage. (No cancel offered on it: with no
      // stream, its end would never show here.)
      this.setBadge(STATUS_LABEL[r.status], "info");
    }
    const inSym = mintLabel(r.inputMint);
    const outSym = mintLabel(r.outputMint);
    const fees = r.fees;
    const row = (label: string, value: string | Node, testid?: string) =>
      h("div", { class: "kv" }, h("span", {}, label), h("span", { "data-testid": testid ?? null }, value));
    const feeRow = (label: string, lamports: bigint, total = false) =>
      h("tr", { class: total ? "total" : "" }, h("th", { scope: "row" }, label), h("td", {}, fmtLamports(lamports)), h("td", { class: "muted" }, fmtSol(lamports)));
    const exactOut = r.swapMode === SwapMode.EXACT_OUT;
    replaceChildren(this.resultBox,
      r.status === TradeStatus.FILLED
        ? h("p", { class: "fill-summary" },
          "Sold ", h("strong", { "data-testid": "exec-amount-in" }, `${fmtAmount(r.amountIn, r.inputMint)} ${inSym}`),
          " for ", h("strong", { "data-testid": "exec-amount-out" }, `${fmtAmount(r.amountOut, r.outputMint)} ${outSym}`))
        : null,
      r.error && r.error.reason
        ? h("div", { class: `banner ${statusTone(r.status)}`, "data-testid": "exec-error" }, h("strong", {}, r.error.reason), " — ", r.error.message)
        : null,
      h("div", { class: "kv-grid" },
        row("Mode", MODE_LABEL[r.mode]),
        row("Swap mode", SWAP_MODE_LABEL[r.swapMode]),
        row("Quoted out", r.quotedAmountOut ? `${fmtAmount(r.quotedAmountOut, r.outputMint)} ${outSym}` : "—"),
        row(exactOut ? "Maximum in" : "Minimum out", r.otherAmountThreshold
          ? `${fmtAmount(r.otherAmountThreshold, exactOut ? r.inputMint : r.outputMint)} ${exactOut ? inSym : outSym}` : "—"),
        row("Executed price", r.executedPrice ? `${fmtPrice(r.executedPrice)} ${outSym}/${inSym}` : "—", "exec-price"),
        row("Inverse price", inversePrice(r.executedPrice, inSym, outSym)),
        row("Price impact", r.priceImpactPct ? `${formatDecimal(r.priceImpactPct)} %` : "—", "exec-price-impact"),
        row("Realized slippage", `${formatInt(r.realizedSlippageBps)} bps`, "exec-slippage"),
        row("Trade id", h("span", { class: "mono" }, r.tradeId || "—")),
        row("Updated", fmtTime(r.updatedAt)),
        r.mode === TradingMode.LIVE || r.signature
          ? row("Signature", r.signature ? h("span", { class: "mono break", "data-testid": "exec-signature" }, r.signature) : "—")
          : null,
        r.slot ? row("Slot", r.slot.toString()) : null),
      fees
        ? h("table", { class: "fees", "data-testid": "exec-fees" },
          h("caption", {}, "Fees"),
          h("tbody", {},
            feeRow("Base fee", fees.baseFeeLamports),
            feeRow("Priority fee", fees.priorityFeeLamports),
            feeRow("Jito tip", fees.jitoTipLamports),
            feeRow("Account rent", fees.ataRentLamports),
            feeRow("Total", fees.totalLamports, true),
            // Not a cost (outside the total): rent a closed token account gave back.
            fees.rentRefundedLamports ? feeRow("Rent refunded", fees.rentRefundedLamports) : null))
        : null);
  }
}

/** Whether an ExecuteTrade answer says how the trade ended (a fill, or a refusal naming its
 * terminal status), as opposed to a call that broke while the trade goes on. */
function endsTrade(o: Outcome): boolean {
  return o.ok ? isTerminal(o.result.status) : o.isTrade && endedStatus(o.failure) !== undefined;
}

/** The terminal status a refusal of a trade names (ErrorInfo metadata "status"), if any. */
function endedStatus(f: ApiFailure): TradeStatus | undefined {
  const name = (f.metadata["status"] ?? "").replace(/^TRADE_STATUS_/, "");
  const status = (TradeStatus as unknown as Record<string, TradeStatus | undefined>)[name];
  return f.metadata["trade_id"] && status !== undefined && isTerminal(status) ? status : undefined;
}

/** What ExecuteTrade answers for a trade that ended with this result. */
function outcomeOf(r: TradeResult): Outcome {
  if (r.status === TradeStatus.FILLED) return { ok: true, result: r, isTrade: true };
  const code = (r.error?.code ?? Code.Internal) as Code;
  return {
    ok: false,
    isTrade: true,
    failure: {
      code,
      codeName: codeName(code),
      message: r.error?.message ?? "trade did not fill",
      reason: r.error?.reason ?? "",
      metadata: { trade_id: r.tradeId, status: `TRADE_STATUS_${TradeStatus[r.status]}` },
      fieldViolations: (r.error?.fieldViolations ?? []).map((v) => ({ field: v.field, description: v.description })),
    },
  };
}

function inversePrice(price: string, inSym: string, outSym: string): string {
  const p = parseDec(price);
  if (!p || p.units === 0n) return "—";
  const inv = divDec({ units: 1n, scale: 0 }, p, 9);
  return `${fmtPrice(decToString(inv))} ${inSym}/${outSym}`;
}

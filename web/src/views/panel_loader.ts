// One card's data from the gateway. A refresh that fails keeps what the card shows and says
// since when (a blank card tells the trader less than slightly old data); one refused by the
// caller's rate limit is tried again once the gateway's Retry-After has passed.
import { rateLimitWaitMs } from "../api/client";
import { isRateLimited, toFailure, type ApiFailure } from "../api/errors";
import { countdown } from "../countdown";
import { h } from "../dom";
import { fmtSeconds } from "../format";
import { sleep } from "../retry";

export class PanelLoader {
  /** Shown above the card's body while its data could not be refreshed. */
  readonly notice: HTMLElement;
  private ticket = 0;
  private loadedAt: Date | undefined;
  private retry: AbortController | undefined;

  /** `what`: the card's data in words ("Positions"); `body`: emptied when a first load fails. */
  constructor(private what: string, private card: HTMLElement, private body: HTMLElement) {
    this.notice = h("p", { class: "banner", role: "status", hidden: true, "data-testid": "panel-notice" });
  }

  /** Whether the card shows the gateway's latest answer (false after a failed refresh). */
  get current(): boolean {
    return this.notice.hidden;
  }

  /** Fetch, then show; a fetch overtaken by a newer one is dropped. True once shown. */
  async load<T>(fetch: () => Promise<T>, show: (data: T) => void): Promise<boolean> {
    const ticket = ++this.ticket;
    this.retry?.abort();
    this.card.setAttribute("aria-busy", "true");
    try {
      const data = await fetch();
      if (ticket !== this.ticket) return false;
      show(data);
      this.loadedAt = new Date();
      this.notice.hidden = true;
      return true;
    } catch (e) {
      if (ticket === this.ticket) this.showProblem(toFailure(e), () => void this.load(fetch, show));
      return false;
    } finally {
      if (ticket === this.ticket) this.card.removeAttribute("aria-busy");
    }
  }

  /** No more loads or retries (the dashboard is closing). */
  stop(): void {
    this.ticket++;
    this.retry?.abort();
  }

  private showProblem(f: ApiFailure, again: () => void): void {
    if (!this.loadedAt) this.body.replaceChildren(); // nothing worth keeping yet
    const kept = this.loadedAt ? ` Showing what was loaded at ${this.loadedAt.toLocaleTimeString()}.` : "";
    this.notice.hidden = false;
    if (!isRateLimited(f)) {
      this.notice.className = "banner";
      this.notice.textContent = `${this.what} unavailable: ${f.message || f.codeName}.${kept}`;
      return;
    }
    this.notice.className = "banner warn";
    const waitMs = Math.max(rateLimitWaitMs(), (f.retryAfterSeconds ?? 1) * 1000);
    const retry = (this.retry = new AbortController());
    countdown(this.notice, Date.now() + waitMs,
      (s) => `${this.what} not refreshed: this key's rate limit is used up.${kept} ${s > 0 ? `Retrying in ${fmtSeconds(s)}.` : "Retrying…"}`,
      retry.signal);
    void sleep(waitMs, retry.signal).then(() => { if (!retry.signal.aborted) again(); });
  }
}

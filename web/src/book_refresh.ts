// Keeps positions and history current when trades happen elsewhere (another tab, a bot on the
// same key): a modest interval while the page is visible, and on coming back to the page.
// Each refresh spends the caller's rate limit, so it never runs while the gateway asked to wait.
import { rateLimitWaitMs } from "./api/client";

const EVERY_MS = 30_000;
/** Coming back to the page refreshes only data older than this. */
const ON_RETURN_AFTER_MS = 5_000;

export class BookRefresh {
  private timer: number | undefined;
  private last = Date.now();
  private readonly onReturn = () => {
    if (document.visibilityState === "visible" && Date.now() - this.last >= ON_RETURN_AFTER_MS) void this.run();
  };

  constructor(private refresh: () => Promise<unknown>) {}

  start(): void {
    document.addEventListener("visibilitychange", this.onReturn);
    window.addEventListener("focus", this.onReturn);
    this.schedule();
  }

  stop(): void {
    document.removeEventListener("visibilitychange", this.onReturn);
    window.removeEventListener("focus", this.onReturn);
    window.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The data was just loaded for another reason (a trade settled): the next tick can wait. */
  loaded(): void {
    this.last = Date.now();
    this.schedule();
  }

  private schedule(): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => {
      if (document.visibilityState === "visible") void this.run();
      else this.schedule();
    }, EVERY_MS);
  }

  private async run(): Promise<void> {
    if (rateLimitWaitMs() > 0) {
      this.schedule(); // the panels retry by themselves once the wait is over
      return;
    }
    this.last = Date.now();
    this.schedule();
    await this.refresh();
  }
}

// Waiting between attempts to reach a gateway that restarts or drains: exponential, capped.

/** Wait `ms`, or less if `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/** Delays of initialMs, 2×, 4×… up to maxMs; reset() after a success. */
export class Backoff {
  private delay: number;

  constructor(private initialMs: number, private maxMs: number) {
    this.delay = initialMs;
  }

  next(): number {
    const d = this.delay;
    this.delay = Math.min(this.delay * 2, this.maxMs);
    return d;
  }

  reset(): void {
    this.delay = this.initialMs;
  }
}

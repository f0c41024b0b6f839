// A "retry in N s" text that counts down instead of going stale.

/** Show `text(seconds left)` in `el` now and every second until `untilMs` (then `text(0)`);
 * stops when `signal` aborts. */
export function countdown(el: HTMLElement, untilMs: number, text: (secondsLeft: number) => string,
  signal: AbortSignal): void {
  const tick = () => {
    if (signal.aborted) return;
    const left = Math.max(0, Math.ceil((untilMs - Date.now()) / 1000));
    el.textContent = text(left);
    if (left > 0) timer = window.setTimeout(tick, Math.min(1000, untilMs - Date.now() - (left - 1) * 1000));
  };
  let timer = 0;
  signal.addEventListener("abort", () => window.clearTimeout(timer));
  tick();
}

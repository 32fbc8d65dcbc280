/** A call's hold of a rate slot, as the rate-limiter tests record it: when it started and when it ended. */
export interface Held {
  start: number;
  end: number;
}

/**
 * The server's worst case: a call arrives somewhere between its start and its
 * end. For every call, the calls that could share a window with it (started no
 * later, and ended less than a window before it started).
 */
export function worstCaseWindow(held: readonly Held[], windowMs: number): number {
  let worst = 0;
  for (const j of held) worst = Math.max(worst, held.filter((i) => i.start <= j.start && i.end + windowMs > j.start).length);
  return worst;
}

/** Most starts in any half-open window of `windowMs`, as the sandbox counts arrivals. */
export function maxStartsInWindow(held: readonly Held[], windowMs: number): number {
  const t = held.map((h) => h.start).sort((a, b) => a - b);
  let best = 0;
  for (let hi = 0, lo = 0; hi < t.length; hi++) {
    while (t[hi]! - t[lo]! >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

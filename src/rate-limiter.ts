/**
 * A sliding-window limiter shared by every list in the process: never more
 * than `limit` calls start in any window of `windowMs`. Criteo counts calls per
 * application, so one process must hold one limiter. After a 429 the limit is
 * lowered for the rest of the run: the credentials are shared with others.
 */
export class RateLimiter {
  private readonly starts: number[] = [];
  private head = 0;
  private queue: Promise<void> = Promise.resolve();
  private currentLimit: number;

  constructor(
    readonly limit: number,
    readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {
    this.currentLimit = limit;
  }

  get effectiveLimit(): number {
    return this.currentLimit;
  }

  /** Resolves when a call may start, and counts it as started. Waiters are served in order. */
  acquire(): Promise<number> {
    const turn = this.queue.then(() => this.waitForSlot());
    this.queue = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  /** Lowers the limit by a fifth (at least one call a window remains). */
  slowDown(): void {
    this.currentLimit = Math.max(1, Math.floor(this.currentLimit * 0.8));
  }

  /** Calls started in the window ending now. */
  inWindow(): number {
    this.forgetExpired(this.now());
    return this.starts.length - this.head;
  }

  private forgetExpired(now: number): void {
    while (this.head < this.starts.length && this.starts[this.head]! <= now - this.windowMs) this.head++;
    // Compact now and then so the array does not grow for ever.
    if (this.head > 1024 && this.head * 2 > this.starts.length) {
      this.starts.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Returns how long it waited, in milliseconds. */
  private async waitForSlot(): Promise<number> {
    let waited = 0;
    for (;;) {
      const now = this.now();
      this.forgetExpired(now);
      const inWindow = this.starts.length - this.head;
      if (inWindow < this.currentLimit) {
        this.starts.push(now);
        return waited;
      }
      // The slot frees when the call that started `limit` calls ago leaves the window.
      const oldestThatMustLeave = this.starts[this.starts.length - this.currentLimit]!;
      const delay = Math.max(1, oldestThatMustLeave + this.windowMs - now + 1);
      await sleep(delay);
      waited += delay;
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

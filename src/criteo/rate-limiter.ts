/**
 * A sliding-window limiter shared by every list in the process: never more
 * than `limit` calls in any window of `windowMs`, as counted by the server.
 * Criteo counts calls per application, so one process holds one limiter, and
 * processes sharing credentials draw on the budget SharedRateLimiter holds
 * in Postgres (shared-rate-limiter.ts), which counts each process's own calls
 * on one of these.
 *
 * The server counts a call when it arrives, which is some time after we start
 * it and before its answer reaches us. So a call holds its slot from the moment
 * it is granted until `windowMs` after it ended (answer, error or timeout):
 * however late or early the server saw it, no window of the server's can hold
 * more than `limit` of our calls. The price is each call's own duration per
 * window, a few per cent for Criteo's minute.
 *
 * After a 429 the limit is lowered for the rest of the run (the credentials
 * may be shared with others), at most once per window, so that one burst of
 * 429s answered to concurrent calls counts as one signal, not as many.
 */

/** A granted slot. Call `release()` once the call has ended, however it ended. */
export interface RatePermit {
  /** How long the caller queued for the slot, in milliseconds. */
  readonly waitedMs: number;
  release(): void;
}

/**
 * What the transport and the client ask of a limiter: this process's
 * RateLimiter, or the SharedRateLimiter that holds the app's budget in Postgres.
 */
export interface CallRateLimiter {
  readonly effectiveLimit: number;
  acquire(): Promise<RatePermit>;
  slowDown(): boolean;
  restore(): void;
  /** Lets go of what the limiter holds outside the process (a database pool). */
  close?(): Promise<void>;
}

export class RateLimiter implements CallRateLimiter {
  /** End of each finished call's hold (its end + windowMs), in the order they ended: nondecreasing. */
  private readonly expiries: number[] = [];
  private head = 0;
  /** Calls granted and not yet released: they hold their slot until released, then for a window. */
  private running = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private currentLimit: number;
  private lastSlowDown = Number.NEGATIVE_INFINITY;
  /** A ceiling below the limit while the process keeps to a share of a budget others draw on too. */
  private ceiling = Number.POSITIVE_INFINITY;
  /** Wakes the one waiter (acquire is served in order) when a running call is released. */
  private wake: (() => void) | undefined;

  constructor(
    readonly limit: number,
    readonly windowMs = 60_000,
    private readonly now: () => number = () => Date.now(),
  ) {
    if (!(limit >= 1) || !Number.isInteger(limit)) throw new RangeError('RateLimiter: limit must be a positive integer');
    if (!(windowMs > 0)) throw new RangeError('RateLimiter: windowMs must be > 0');
    this.currentLimit = limit;
  }

  get effectiveLimit(): number {
    return Math.min(this.currentLimit, this.ceiling);
  }

  /**
   * Keeps to at most `ceiling` calls a window, counting the calls already
   * held, until `capAt(undefined)` lifts it. A slow-down and `restore` act
   * under the ceiling as before.
   */
  capAt(ceiling: number | undefined): void {
    this.ceiling = ceiling === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(ceiling));
    this.wake?.();
  }

  /** Calls granted and not yet released. */
  get inFlight(): number {
    return this.running;
  }

  /** Resolves when a call may start, holding its slot until released. Waiters are served in order. */
  acquire(): Promise<RatePermit> {
    const turn = this.queue.then(() => this.waitForSlot());
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /**
   * Lowers the limit by a fifth (at least one call a window remains), unless it
   * was lowered less than a window ago. Returns whether it lowered it.
   */
  slowDown(): boolean {
    const now = this.now();
    if (now - this.lastSlowDown < this.windowMs) return false;
    this.lastSlowDown = now;
    this.currentLimit = Math.max(1, Math.floor(this.currentLimit * 0.8));
    return true;
  }

  /**
   * Back to the configured limit, for a new run in a long-lived process (the
   * scheduler): a slow-down lasts for the rest of the run it happened in.
   * Slots already held stay held.
   */
  restore(): void {
    this.currentLimit = this.limit;
    this.lastSlowDown = Number.NEGATIVE_INFINITY;
  }

  /** Slots held now: calls running, and calls that ended less than a window ago. */
  inWindow(): number {
    this.forgetExpired(this.now());
    return this.running + this.expiries.length - this.head;
  }

  private forgetExpired(now: number): void {
    while (this.head < this.expiries.length && this.expiries[this.head]! <= now) this.head++;
    // Compact now and then so the array does not grow for ever.
    if (this.head > 1024 && this.head * 2 > this.expiries.length) {
      this.expiries.splice(0, this.head);
      this.head = 0;
    }
  }

  private grant(waitedMs: number): RatePermit {
    this.running++;
    let released = false;
    return {
      waitedMs,
      release: () => {
        if (released) return;
        released = true;
        this.running--;
        // Ends arrive in time order, so expiries stay sorted (a clock stepping back is clamped).
        const last = this.expiries.length > this.head ? this.expiries[this.expiries.length - 1]! : Number.NEGATIVE_INFINITY;
        this.expiries.push(Math.max(last, this.now() + this.windowMs));
        this.wake?.();
      },
    };
  }

  private async waitForSlot(): Promise<RatePermit> {
    const started = this.now();
    for (;;) {
      const now = this.now();
      this.forgetExpired(now);
      const finished = this.expiries.length - this.head;
      const held = this.running + finished;
      const limit = this.effectiveLimit;
      if (held < limit) return this.grant(Math.max(0, now - started));
      // A slot frees when the (held - limit + 1)-th oldest finished hold expires,
      // or, if too few calls have finished, when a running one is released.
      const index = held - limit;
      const freesAt = index < finished ? this.expiries[this.head + index]! : undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          if (timer) clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
        const timer = freesAt === undefined ? undefined : setTimeout(done, Math.max(1, freesAt - now));
        this.wake = done;
      });
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

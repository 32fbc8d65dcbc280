/** Criteo's rate limit: a sliding 60-second window of calls per client. */

interface RateVerdict {
  allowed: boolean;
  headers: Record<string, string>;
}

/** Per-client sliding window of accepted call times; rejected calls are not recorded. */
export class SlidingWindowLimiter {
  private readonly windows = new Map<string, number[]>();

  constructor(
    readonly limit: number,
    private readonly windowMs = 60_000,
  ) {}

  check(clientId: string, now: number): RateVerdict {
    let times = this.windows.get(clientId);
    if (!times) {
      times = [];
      this.windows.set(clientId, times);
    }
    while (times.length > 0 && (times[0] as number) <= now - this.windowMs) times.shift();
    const allowed = times.length < this.limit;
    if (allowed) times.push(now);
    const oldest = times[0] ?? now;
    const resetSeconds = Math.ceil((oldest + this.windowMs) / 1000);
    return {
      allowed,
      headers: {
        'x-ratelimit-limit': String(this.limit),
        'x-ratelimit-remaining': String(Math.max(0, this.limit - times.length)),
        'x-ratelimit-reset': String(resetSeconds),
      },
    };
  }
}

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { rateLimitDelay } from '../src/criteo/client.js';
import { RateLimiter, sleep } from '../src/criteo/rate-limiter.js';
import { maxStartsInWindow, worstCaseWindow, type Held } from './rate-windows.js';

/**
 * The limiter on a fake clock: Date.now and setTimeout are vitest's, so
 * minutes of traffic run in milliseconds and every instant is exact.
 */

/** `n` callers, each acquiring a slot, holding it `duration(i)` ms, then releasing it. */
async function simulate(limiter: RateLimiter, n: number, duration: (i: number) => number, concurrency = n): Promise<Held[]> {
  const held: Held[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const permit = await limiter.acquire();
      const start = Date.now();
      const ms = duration(i);
      if (ms > 0) await sleep(ms);
      held[i] = { start, end: Date.now() };
      permit.release();
    }
  };
  const done = Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) await vi.advanceTimersByTimeAsync(50);
  await done;
  return held;
}

describe('RateLimiter', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    vi.setSystemTime(new Date('2026-07-01T00:00:00Z'));
  });
  afterEach(() => vi.useRealTimers());

  it('lets 200 calls through at once, then the 201st exactly a minute after the first ended', async () => {
    const limiter = new RateLimiter(200);
    const t0 = Date.now();
    const held = await simulate(limiter, 450, () => 0);
    const starts = held.map((h) => h.start - t0);
    expect(starts.slice(0, 200).every((s) => s === 0)).toBe(true);
    expect(starts[200]).toBe(60_000);
    expect(starts[399]).toBe(60_000);
    expect(starts[400]).toBe(120_000);
    expect(maxStartsInWindow(held, 60_000)).toBe(200);
    expect(worstCaseWindow(held, 60_000)).toBeLessThanOrEqual(200);
  });

  it('holds a slot for the whole call plus a window, so no server window can see more than the limit', async () => {
    const limiter = new RateLimiter(20, 60_000);
    // Calls of 0.2 to 7 s: a call's arrival at the server may be anywhere in between.
    const held = await simulate(limiter, 300, (i) => 200 + ((i * 7919) % 6800), 4);
    expect(worstCaseWindow(held, 60_000)).toBeLessThanOrEqual(20);
    expect(maxStartsInWindow(held, 60_000)).toBeLessThanOrEqual(20);
    // And it is not needlessly slow: 300 calls at 20 a minute take about 15 minutes plus the calls' own time.
    const span = held[299]!.start - held[0]!.start;
    expect(span).toBeGreaterThanOrEqual(14 * 60_000);
    expect(span).toBeLessThan(17 * 60_000);
  });

  it('wakes a waiter as soon as a running call ends when every slot is held by running calls', async () => {
    const limiter = new RateLimiter(2, 1_000);
    const a = await limiter.acquire();
    await limiter.acquire();
    let granted = false;
    const third = limiter.acquire().then((p) => {
      granted = true;
      return p;
    });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(granted).toBe(false); // both slots held by calls still running
    a.release();
    await vi.advanceTimersByTimeAsync(999);
    expect(granted).toBe(false); // a's slot is held for a window after it ended
    await vi.advanceTimersByTimeAsync(1);
    expect(granted).toBe(true);
    expect((await third).waitedMs).toBe(6_000);
    expect(limiter.inWindow()).toBe(2);
  });

  it('serves waiters in order', async () => {
    const limiter = new RateLimiter(1, 100);
    const order: number[] = [];
    const all = Array.from({ length: 5 }, (_, i) =>
      limiter.acquire().then((p) => {
        order.push(i);
        p.release();
      }),
    );
    await vi.advanceTimersByTimeAsync(1_000);
    await Promise.all(all);
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  it('a release counted twice frees nothing extra', async () => {
    const limiter = new RateLimiter(1, 1_000);
    const p = await limiter.acquire();
    p.release();
    p.release();
    expect(limiter.inWindow()).toBe(1);
    expect(limiter.inFlight).toBe(0);
  });

  it('slows down by a fifth after a 429, once per window however many 429s arrive together, never below one call', () => {
    const limiter = new RateLimiter(100, 60_000);
    expect(limiter.slowDown()).toBe(true);
    expect(limiter.effectiveLimit).toBe(80);
    // A burst: the other concurrent calls' 429s are the same signal.
    for (let i = 0; i < 10; i++) expect(limiter.slowDown()).toBe(false);
    expect(limiter.effectiveLimit).toBe(80);
    vi.advanceTimersByTime(60_000);
    expect(limiter.slowDown()).toBe(true);
    expect(limiter.effectiveLimit).toBe(64);
    for (let i = 0; i < 40; i++) {
      vi.advanceTimersByTime(60_000);
      limiter.slowDown();
    }
    expect(limiter.effectiveLimit).toBe(1);
  });

  it('restores the configured limit for a new run', () => {
    const limiter = new RateLimiter(100, 60_000);
    limiter.slowDown();
    expect(limiter.effectiveLimit).toBe(80);
    limiter.restore();
    expect(limiter.effectiveLimit).toBe(100);
    expect(limiter.slowDown()).toBe(true); // a 429 in the new run counts at once
    expect(limiter.effectiveLimit).toBe(80);
  });

  it('honours a lowered limit for calls already counted', async () => {
    const limiter = new RateLimiter(10, 10_000);
    const t0 = Date.now();
    const first = await simulate(limiter, 10, () => 0);
    expect(first.every((h) => h.start === t0)).toBe(true);
    limiter.slowDown(); // 8 a window now
    const second = await simulate(limiter, 9, () => 0);
    // The 10 earlier calls hold their slots until t0 + 10 s; then 8 go, the 9th a window later.
    expect(second.slice(0, 8).every((h) => h.start === t0 + 10_000)).toBe(true);
    expect(second[8]!.start).toBe(t0 + 20_000);
  });

  it('keeps under a ceiling, counting the calls already held, until it is lifted', async () => {
    const limiter = new RateLimiter(10, 10_000);
    const t0 = Date.now();
    await simulate(limiter, 4, () => 0);
    limiter.capAt(5); // a share of a budget others draw on: the 4 earlier calls count
    expect(limiter.effectiveLimit).toBe(5);
    const t1 = Date.now();
    const capped = await simulate(limiter, 2, () => 0);
    expect(capped[0]!.start).toBe(t1);
    expect(capped[1]!.start).toBe(t0 + 10_000);
    limiter.slowDown(); // 8 under a ceiling of 5: still 5
    expect(limiter.effectiveLimit).toBe(5);
    limiter.capAt(undefined);
    expect(limiter.effectiveLimit).toBe(8);
  });

  it('rejects a nonsensical limit or window', () => {
    expect(() => new RateLimiter(0)).toThrow(RangeError);
    expect(() => new RateLimiter(1.5)).toThrow(RangeError);
    expect(() => new RateLimiter(5, 0)).toThrow(RangeError);
  });
});

describe('rateLimitDelay', () => {
  const now = Date.parse('2026-07-01T00:00:00Z');

  it('prefers Retry-After in seconds', () => {
    expect(rateLimitDelay({ 'retry-after': '7', 'x-ratelimit-reset': String(now / 1000 + 30) }, 1, 1000, now)).toBe(7_000);
    expect(rateLimitDelay({ 'retry-after': ' 1.5 ' }, 1, 1000, now)).toBe(1_500);
    expect(rateLimitDelay({ 'retry-after': ['3', '9'] }, 1, 1000, now)).toBe(3_000);
  });

  it('takes Retry-After as an HTTP date', () => {
    expect(rateLimitDelay({ 'retry-after': new Date(now + 12_000).toUTCString() }, 1, 1000, now)).toBe(12_000);
  });

  it('else waits until x-ratelimit-reset (Unix seconds)', () => {
    expect(rateLimitDelay({ 'x-ratelimit-reset': String(now / 1000 + 42), 'x-ratelimit-remaining': '0' }, 1, 1000, now)).toBe(42_000);
  });

  it('never waits less than 100 ms, even for a reset or a date already past', () => {
    expect(rateLimitDelay({ 'x-ratelimit-reset': String(now / 1000 - 5) }, 1, 1000, now)).toBe(100);
    expect(rateLimitDelay({ 'retry-after': new Date(now - 5_000).toUTCString() }, 1, 1000, now)).toBe(100);
    expect(rateLimitDelay({ 'retry-after': '0' }, 1, 1000, now)).toBe(100);
  });

  it('else backs off exponentially with jitter, capped at 30 s; garbage headers count as absent', () => {
    const low = () => 0;
    const high = () => 0.999_999;
    expect(rateLimitDelay({}, 1, 1000, now, low)).toBe(500);
    expect(rateLimitDelay({}, 1, 1000, now, high)).toBe(999);
    expect(rateLimitDelay({}, 3, 1000, now, low)).toBe(2_000);
    expect(rateLimitDelay({}, 3, 1000, now, high)).toBe(3_999);
    expect(rateLimitDelay({}, 30, 1000, now, high)).toBeLessThanOrEqual(30_000);
    expect(rateLimitDelay({}, 30, 1000, now, low)).toBe(15_000);
    expect(rateLimitDelay({ 'retry-after': 'soon', 'x-ratelimit-reset': 'later' }, 2, 1000, now, low)).toBe(1_000);
    expect(rateLimitDelay({ 'x-ratelimit-reset': '-3' }, 2, 1000, now, low)).toBe(1_000);
  });
});

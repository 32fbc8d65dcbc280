import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/core/logger.js';
import { sleep } from '../src/criteo/rate-limiter.js';
import { SharedRateLimiter } from '../src/criteo/shared-rate-limiter.js';
import { connect } from '../src/db/connection.js';
import { RATE_BUDGET_LOCK_CLASS } from '../src/db/locks.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { openRateBudget, rateBudgetKey, type RateBudgetStore, type SlotAnswer } from '../src/db/rate-budget.js';
import { createTestDatabase } from './helpers.js';
import { captureLog } from './observe.js';
import { maxStartsInWindow, worstCaseWindow, type Held } from './rate-windows.js';

/**
 * The shared budget against a real Postgres, on short windows: each limiter
 * has a pool of its own, as two processes would. Every assertion counts
 * calls per window or bounds a wait from below (the database enforces it),
 * so none depends on how fast the machine is.
 */

let url: string;
let drop: () => Promise<void>;
const opened: SharedRateLimiter[] = [];

beforeAll(async () => {
  ({ url, drop } = await createTestDatabase('shared_rate'));
  const handle = connect(url);
  await migrateToLatest(handle.db);
  await handle.close();
});

afterAll(async () => {
  await Promise.all(opened.map((l) => l.close().catch(() => undefined)));
  await drop();
});

let keys = 0;
/** A client id of its own per test, so tests never share a budget. */
const freshClientId = () => `client-${process.pid}-${++keys}`;

function limiterFor(clientId: string, limit: number, windowMs: number, extra: { holdMs?: number; databaseUrl?: string; log?: typeof silentLogger } = {}) {
  const budget = openRateBudget(extra.databaseUrl ?? url, clientId, { windowMs, holdMs: extra.holdMs ?? 10_000 });
  const limiter = new SharedRateLimiter(budget, limit, extra.log ?? silentLogger, { windowMs, fallbackProcesses: 2, probeEveryMs: 100 });
  opened.push(limiter);
  return limiter;
}

/** `n` calls through `limiter`, `concurrency` at a time, each lasting 0–`maxMs` ms; their starts and ends. */
async function drive(limiter: SharedRateLimiter, n: number, concurrency: number, maxMs: number): Promise<Held[]> {
  const held: Held[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const permit = await limiter.acquire();
      const start = Date.now();
      await sleep(Math.floor(Math.random() * maxMs));
      held.push({ start, end: Date.now() });
      permit.release();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return held;
}

async function slotRows(clientId: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM audience_sync.rate_slots WHERE client_key = $1', [rateBudgetKey(clientId)]);
  await c.end();
  return rows[0]!.n;
}

describe('SharedRateLimiter', () => {
  it('keeps two processes with the same client id within the limit together, in every window', async () => {
    const clientId = freshClientId();
    const [limit, windowMs] = [5, 300];
    const a = limiterFor(clientId, limit, windowMs);
    const b = limiterFor(clientId, limit, windowMs);
    const [heldA, heldB] = await Promise.all([drive(a, 25, 3, 20), drive(b, 25, 3, 20)]);
    const all = [...heldA, ...heldB];
    expect(all).toHaveLength(50);
    expect(worstCaseWindow(all, windowMs)).toBeLessThanOrEqual(limit);
    expect(maxStartsInWindow(all, windowMs)).toBeLessThanOrEqual(limit);
    // Both drew on the budget: neither starved the other.
    expect(heldA.length).toBe(25);
    expect(heldB.length).toBe(25);
    // 50 calls at 5 a window cannot take less than 9 windows after the first 5.
    const span = Math.max(...all.map((h) => h.start)) - Math.min(...all.map((h) => h.start));
    expect(span).toBeGreaterThanOrEqual(9 * windowMs);
  });

  it('stores the client id only as its SHA-256', async () => {
    const clientId = freshClientId();
    const a = limiterFor(clientId, 3, 200);
    (await a.acquire()).release();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const { rows } = await c.query<{ client_key: string }>('SELECT DISTINCT client_key FROM audience_sync.rate_slots');
    await c.end();
    expect(rows.map((r) => r.client_key)).toContain(rateBudgetKey(clientId));
    expect(rows.every((r) => /^[0-9a-f]{64}$/.test(r.client_key))).toBe(true);
  });

  it('frees the slots of a process killed mid-call at their hold bound', async () => {
    const clientId = freshClientId();
    const holdMs = 1_500;
    const killed = limiterFor(clientId, 3, 200, { holdMs });
    const before = Date.now();
    // Three calls granted, never ended: the process dies with them (its pool closes, nothing is released).
    await Promise.all([killed.acquire(), killed.acquire(), killed.acquire()]);
    await killed.close();
    const survivor = limiterFor(clientId, 3, 200, { holdMs });
    const permits = await Promise.all([survivor.acquire(), survivor.acquire(), survivor.acquire()]);
    const grantedAt = Date.now();
    for (const p of permits) p.release();
    expect(grantedAt - before).toBeGreaterThanOrEqual(holdMs - 5);
    // The survivor holds all three: the grants deleted the dead holds as they expired.
    await sleep(50);
    expect(await slotRows(clientId)).toBe(3);
  });

  it('counts a call that outlived its hold bound again from its end', async () => {
    const clientId = freshClientId();
    const slow = limiterFor(clientId, 2, 300, { holdMs: 200 });
    const other = limiterFor(clientId, 2, 300, { holdMs: 200 });
    const long = await slow.acquire();
    await sleep(250); // past the bound: the slot is taken for a dead process's
    (await other.acquire()).release();
    long.release(); // still alive after all: its call counts for a window from now, beside the other's
    await sleep(50);
    const from = Date.now();
    (await other.acquire()).release();
    expect(Date.now() - from).toBeGreaterThanOrEqual(200);
  });

  it('records an end told late, with the next grant, as of when its call ended', async () => {
    const budget = openRateBudget(url, freshClientId(), { windowMs: 1_000, holdMs: 10_000 });
    try {
      const [slot] = (await budget.take(1, 1, [])).slots;
      await sleep(300); // past the grants' spacing (a quarter of the window's even share)
      // The call ended 950 ms ago and is told only now: its slot frees 50 ms from now, within the grant-ahead reach
      // (a tenth of the window). Counted from the telling, it would free a whole window from now.
      const next = await budget.take(1, 1, [{ slotId: slot!.slotId, endedAt: Date.now() - 950 }]);
      expect(next.slots).toHaveLength(1);
      expect(next.slots[0]!.startInMs).toBeLessThanOrEqual(100);
    } finally {
      await budget.close();
    }
  });

  it('keeps to a local share when the database cannot be reached, and says so once', async () => {
    const capture = captureLog();
    const [limit, windowMs] = [4, 300];
    const limiter = limiterFor(freshClientId(), limit, windowMs, { databaseUrl: 'postgres://postgres@127.0.0.1:1/nowhere', log: capture.log });
    expect(limiter.localShare).toBe(2);
    const held = await drive(limiter, 6, 2, 5);
    expect(limiter.usingSharedBudget).toBe(false);
    expect(worstCaseWindow(held, windowMs)).toBeLessThanOrEqual(2);
    expect(maxStartsInWindow(held, windowMs)).toBeLessThanOrEqual(2);
    const warnings = capture.lines.filter((l) => String(l['msg']).startsWith('rate budget'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, localShare: 2 });
  });

  it('goes back to the shared budget when the database answers again, with the calls made meanwhile recorded', async () => {
    const capture = captureLog();
    const clientId = freshClientId();
    const [limit, windowMs] = [4, 2_000];
    const real = openRateBudget(url, clientId, { windowMs, holdMs: 10_000 });
    let down = true;
    const flaky: RateBudgetStore = {
      take: (count: number, n: number, ended): Promise<SlotAnswer> => (down ? Promise.reject(new Error('connection lost')) : real.take(count, n, ended)),
      end: (ended) => (down ? Promise.reject(new Error('connection lost')) : real.end(ended)),
      carryOver: (ms, running) => (down ? Promise.reject(new Error('connection lost')) : real.carryOver(ms, running)),
      close: () => real.close(),
    };
    const limiter = new SharedRateLimiter(flaky, limit, capture.log, { windowMs, fallbackProcesses: 2, probeEveryMs: 100 });
    opened.push(limiter);
    (await limiter.acquire()).release();
    (await limiter.acquire()).release();
    expect(limiter.usingSharedBudget).toBe(false);
    down = false;
    await sleep(150);
    (await limiter.acquire()).release();
    expect(limiter.usingSharedBudget).toBe(true);
    // The two local calls and the shared one: another process now finds one slot of four free.
    await sleep(50);
    expect(await slotRows(clientId)).toBe(3);
    const other = limiterFor(clientId, limit, windowMs);
    (await other.acquire()).release();
    const from = Date.now();
    (await other.acquire()).release();
    expect(Date.now() - from).toBeGreaterThanOrEqual(windowMs / 2);
    expect(capture.lines.map((l) => l['msg'])).toEqual([
      'rate budget: the shared budget in the database cannot be used; keeping to 2 calls a window until it can',
      'rate budget: the database answers again; back to the shared budget',
    ]);
  });

  it('falls back when its connection is terminated mid-grant, and returns once Postgres answers', async () => {
    const capture = captureLog();
    const clientId = freshClientId();
    const limiter = limiterFor(clientId, 10, 300, { log: capture.log });
    (await limiter.acquire()).release();
    // Hold the key's grant lock so the next grant waits in Postgres, then end that backend.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query('SELECT pg_advisory_lock($1, hashtext($2))', [RATE_BUDGET_LOCK_CLASS, rateBudgetKey(clientId)]);
    const pending = limiter.acquire();
    await sleep(200);
    await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'audience-sync rate budget' AND datname = current_database() AND wait_event_type = 'Lock'`,
    );
    await admin.query('SELECT pg_advisory_unlock_all()');
    await admin.end();
    (await pending).release();
    expect(limiter.usingSharedBudget).toBe(false);
    await sleep(150);
    (await limiter.acquire()).release();
    expect(limiter.usingSharedBudget).toBe(true);
    expect(capture.lines.filter((l) => String(l['msg']).startsWith('rate budget')).map((l) => l['level'])).toEqual([40, 30]);
  });
});

import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/criteo/rate-limiter.js';
import type { RunSummary } from '../src/sync/run.js';
import type { FaultPlan, SandboxCall } from '../src/sandbox/server.js';
import { CLIENT_ID, CLIENT_SECRET, convergence, createWorld, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';
import { captureLog, startTcpProxy, watchTokens } from './observe.js';

/**
 * Whole runs (real Postgres, real HTTP to the sandbox) under each class of
 * Criteo fault. Every test asserts the end state: each list that could be
 * synced has sandbox == desired == ledger; each list that could not has the
 * right status, reason, error code and traceId in list_syncs and batches;
 * and a rerun once the faults stop converges every list.
 */

const SEGMENTS = [
  '601',
  '602',
  '611',
  '612',
  '621',
  '622',
  '631',
  '632',
  '633',
  '641',
  '642',
  '651',
  '652',
  '661',
  '662',
  '691',
  '692',
  '693',
  '694',
  '695',
  '696',
  '697',
  '698',
];

let world: World;

beforeAll(async () => {
  world = await createWorld('criteo_faults', { segments: SEGMENTS.map((id) => ({ id, advertiserId: '1' })) });
});
afterAll(async () => world?.close());

beforeEach(async () => {
  world.sandbox.setFaults(undefined);
  await sql`TRUNCATE audience_sync.customers, audience_sync.campaigns, audience_sync.campaign_target_groups`.execute(world.database.db);
});

/** One campaign per list; list i gets customers [from, from + size). */
async function seedLists(lists: { segmentId: string; size: number }[], into: World = world): Promise<void> {
  const db = into.database.db;
  await seedCampaigns(
    db,
    lists.map((l) => ({ id: `camp-${l.segmentId}`, segmentId: l.segmentId })),
  );
  let from = 0;
  for (const l of lists) {
    await seedCustomers(db, from, from + l.size);
    await seedTargetGroup(db, `camp-${l.segmentId}`, from, from + l.size);
    from += l.size;
  }
}

interface ListSyncRow {
  segment: string;
  status: string;
  reason: string | null;
  error_code: string | null;
  trace_id: string | null;
}

async function listSyncs(runId: number): Promise<Record<string, ListSyncRow>> {
  const { rows } = await sql<ListSyncRow>`
    SELECT audience_segment_id::text AS segment, status, reason, error_code, trace_id
    FROM audience_sync.list_syncs WHERE run_id = ${runId}`.execute(world.database.db);
  return Object.fromEntries(rows.map((r) => [r.segment, r]));
}

interface BatchRow {
  seq: number;
  operation: string;
  status: string;
  http_status: number | null;
  error_code: string | null;
  error_title: string | null;
  trace_id: string | null;
  attempts: number;
  waited_ms: number;
}

async function batches(runId: number, segmentId: string): Promise<BatchRow[]> {
  const { rows } = await sql<BatchRow>`
    SELECT b.seq, b.operation, b.status, b.http_status, b.error_code, b.error_title, b.trace_id, b.attempts, b.waited_ms
    FROM audience_sync.batches b JOIN audience_sync.list_syncs s USING (list_sync_id)
    WHERE s.run_id = ${runId} AND b.audience_segment_id = ${segmentId}::bigint ORDER BY b.seq`.execute(world.database.db);
  return rows;
}

async function runStatus(runId: number): Promise<{ status: string; error: string | null }> {
  const { rows } = await sql<{ status: string; error: string | null }>`SELECT status, error FROM audience_sync.runs WHERE run_id = ${runId}`.execute(
    world.database.db,
  );
  return rows[0]!;
}

const exact = async (segmentId: string) => (await convergence(world, segmentId)).exact;

/** One run under `faults` (then lifted): its summary and the sandbox calls it made. */
async function runWithFaults(faults: FaultPlan | undefined, env: Record<string, string>, limiter?: RateLimiter) {
  world.sandbox.setFaults(faults);
  const from = world.sandbox.calls.length;
  const faulty = await world.run({}, env, limiter ? { limiter } : {});
  const calls = world.sandbox.calls.slice(from);
  world.sandbox.setFaults(undefined);
  return { faulty, calls };
}

async function rerunConverges(segments: string[], env: Record<string, string> = {}): Promise<RunSummary> {
  const rerun = await world.run({}, { CRITEO_BATCH_SIZE: '500', ...env });
  expect(rerun.status).toBe('succeeded');
  for (const id of segments) expect(await convergence(world, id)).toMatchObject({ exact: true });
  return rerun;
}

const patches = (calls: SandboxCall[], segmentId?: string) =>
  calls.filter((c) => c.operation === 'patch' && (segmentId === undefined || c.segmentId === segmentId));

/** Sequential lists and batches, so that "the nth PATCH" names one batch of one list. */
const SEQUENTIAL = { CRITEO_BATCH_SIZE: '500', LIST_CONCURRENCY: '1', CRITEO_CONCURRENCY: '1' };

describe('transient faults: 5xx, timeouts, connection resets', () => {
  it('5xx on every attempt: the batch is recorded unknown, its list incomplete, the other list goes on; the rerun converges', async () => {
    await seedLists([
      { segmentId: '601', size: 1500 },
      { segmentId: '602', size: 1000 },
    ]);
    const { faulty, calls } = await runWithFaults(
      { script: [{ operation: 'patch', nth: 2, times: 3, status: 503 }] },
      { ...SEQUENTIAL, CRITEO_MAX_ATTEMPTS: '3' },
    );
    expect(faulty.status).toBe('failed');
    const lastTry = patches(calls)[3]!;
    expect(lastTry).toMatchObject({ segmentId: '601', status: 503 });
    const lists = await listSyncs(faulty.runId);
    expect(lists['601']).toMatchObject({ status: 'incomplete', error_code: 'service-unavailable', trace_id: lastTry.traceId });
    expect(lists['601']!.reason).toMatch(/failed with HTTP 503 after 3 attempts/);
    expect(lists['602']).toMatchObject({ status: 'succeeded', error_code: null });
    expect(await batches(faulty.runId, '601')).toMatchObject([
      { seq: 1, status: 'confirmed' },
      {
        seq: 2,
        status: 'unknown',
        http_status: 503,
        error_code: 'service-unavailable',
        error_title: 'Service unavailable',
        trace_id: lastTry.traceId,
        attempts: 3,
      },
    ]);
    expect(patches(calls, '601')).toHaveLength(4); // 1 + 3 attempts, then the list stopped
    expect(await convergence(world, '601')).toMatchObject({ ledger: 500, criteo: 500, exact: false });
    expect(await exact('602')).toBe(true);

    const rerun = await rerunConverges(['601', '602']);
    expect(rerun.lists.find((l) => l.segmentId === '601')).toMatchObject({ toAdd: 1000, added: 1000 });
    const { rows } = await sql<{
      status: string;
    }>`SELECT status FROM audience_sync.batches WHERE list_sync_id = (SELECT list_sync_id FROM audience_sync.list_syncs WHERE run_id = ${faulty.runId} AND audience_segment_id = 601) AND seq = 2`.execute(
      world.database.db,
    );
    expect(rows[0]!.status).toBe('superseded');
  });

  it('timeouts: an answer that never comes is retried, then the batch is unknown (it may have applied) and the rerun converges', async () => {
    await seedLists([
      { segmentId: '611', size: 1500 },
      { segmentId: '612', size: 500 },
    ]);
    // Criteo applies the 2nd batch both times, and both answers are lost.
    const { faulty } = await runWithFaults(
      { script: [{ operation: 'patch', nth: 2, times: 2, applyThenHang: true }] },
      { ...SEQUENTIAL, CRITEO_MAX_ATTEMPTS: '2', CRITEO_TIMEOUT_SECONDS: '1' },
    );
    const lists = await listSyncs(faulty.runId);
    expect(lists['611']).toMatchObject({ status: 'incomplete', error_code: null, trace_id: null });
    expect(lists['611']!.reason).toMatch(/no answer after 2 attempts/);
    expect(lists['612']!.status).toBe('succeeded');
    expect(await batches(faulty.runId, '611')).toMatchObject([
      { seq: 1, status: 'confirmed' },
      { seq: 2, status: 'unknown', http_status: null, attempts: 2 },
    ]);
    // Criteo holds the lost batch; the ledger claims only what was confirmed.
    expect(await convergence(world, '611')).toMatchObject({ ledger: 500, criteo: 1000 });
    await rerunConverges(['611', '612']);
  });

  it('connection resets, before and after Criteo applied the request: retried, then unknown; the rerun converges', async () => {
    await seedLists([
      { segmentId: '621', size: 1000 },
      { segmentId: '622', size: 1000 },
    ]);
    const proxy = await startTcpProxy(world.sandbox.port);
    try {
      // 621's 1st batch: reset before Criteo sees it, then reset after it applied it: out of attempts.
      // 622's 1st batch: reset after it applied, then answered.
      proxy.resetNext('PATCH', 1, 'before');
      proxy.resetNext('PATCH', 2, 'after');
      const { faulty } = await runWithFaults(undefined, { ...SEQUENTIAL, CRITEO_API_URL: proxy.url, CRITEO_MAX_ATTEMPTS: '2' });
      expect(proxy.resets).toBe(3);
      const lists = await listSyncs(faulty.runId);
      expect(lists['621']).toMatchObject({ status: 'incomplete' });
      expect(lists['621']!.reason).toMatch(/no answer after 2 attempts: (ECONNRESET|UND_ERR_SOCKET)/);
      expect(await batches(faulty.runId, '621')).toMatchObject([{ seq: 1, status: 'unknown', attempts: 2 }]);
      expect(await convergence(world, '621')).toMatchObject({ ledger: 0, criteo: 500 });
      expect(lists['622']!.status).toBe('succeeded');
      expect(await batches(faulty.runId, '622')).toMatchObject([
        { seq: 1, status: 'confirmed', attempts: 2 },
        { seq: 2, status: 'confirmed', attempts: 1 },
      ]);
      expect(await exact('622')).toBe(true);
    } finally {
      await proxy.close();
    }
    await rerunConverges(['621', '622']);
  });
});

describe('429', () => {
  it('a burst of 429s is waited out without using the attempt budget, slows the limiter once, and the run converges', async () => {
    await seedLists([
      { segmentId: '651', size: 1500 },
      { segmentId: '652', size: 1000 },
    ]);
    const limiter = new RateLimiter(1000, 60_000);
    const { faulty, calls } = await runWithFaults(
      { rateLimitResetSeconds: 1, script: [{ operation: 'patch', nth: 2, times: 2, status: 429 }] },
      { ...SEQUENTIAL, CRITEO_MAX_ATTEMPTS: '1', CRITEO_MAX_CALLS_PER_MINUTE: '1000' },
      limiter,
    );
    expect(faulty.status).toBe('succeeded');
    expect(patches(calls).filter((c) => c.status === 429)).toHaveLength(2);
    const [, second] = await batches(faulty.runId, '651');
    expect(second).toMatchObject({ status: 'confirmed', attempts: 3 });
    expect(second!.waited_ms).toBeGreaterThanOrEqual(1900); // each wait lasts until the announced reset, a second or more ahead
    expect(limiter.effectiveLimit).toBe(800);
    for (const id of ['651', '652']) expect(await exact(id)).toBe(true);
  });

  it('a 429 wait beyond CRITEO_MAX_WAIT_SECONDS leaves the list incomplete with the reason; the other list goes on; the rerun converges', async () => {
    await seedLists([
      { segmentId: '661', size: 1500 },
      { segmentId: '662', size: 1000 },
    ]);
    const { faulty, calls } = await runWithFaults(
      { rateLimitResetSeconds: 30, script: [{ operation: 'patch', nth: 2, status: 429 }] },
      { ...SEQUENTIAL, CRITEO_MAX_WAIT_SECONDS: '5' },
    );
    expect(faulty.status).toBe('failed');
    const refused = patches(calls)[1]!;
    const lists = await listSyncs(faulty.runId);
    expect(lists['661']).toMatchObject({ status: 'incomplete', error_code: 'rate-limit-exceeded', trace_id: refused.traceId });
    expect(lists['661']!.reason).toMatch(/would exceed CRITEO_MAX_WAIT_SECONDS \(5s\)/);
    // A 429 is a refusal: nothing applied, so the batch is failed, not unknown.
    expect(await batches(faulty.runId, '661')).toMatchObject([
      { seq: 1, status: 'confirmed' },
      { seq: 2, status: 'failed', http_status: 429, error_code: 'rate-limit-exceeded', trace_id: refused.traceId },
    ]);
    expect(lists['662']!.status).toBe('succeeded');
    expect(await exact('662')).toBe(true);
    await rerunConverges(['661', '662']);
  });
});

describe('401', () => {
  it('an expired token is renewed once and the call retried: the run converges', async () => {
    await seedLists([
      { segmentId: '691', size: 1500 },
      { segmentId: '692', size: 500 },
    ]);
    const { faulty, calls } = await runWithFaults({ script: [{ operation: 'patch', nth: 2, status: 401 }] }, SEQUENTIAL);
    expect(faulty.status).toBe('succeeded');
    expect(calls.filter((c) => c.operation === 'token')).toHaveLength(2);
    expect((await batches(faulty.runId, '691'))[1]).toMatchObject({ status: 'confirmed', attempts: 2 });
    for (const id of ['691', '692']) expect(await exact(id)).toBe(true);
  });

  it('a second 401 aborts the run with one authentication error, and no retry storm; the rerun converges', async () => {
    await seedLists([
      { segmentId: '693', size: 1500 },
      { segmentId: '694', size: 500 },
    ]);
    const { faulty, calls } = await runWithFaults(
      { script: [{ operation: 'patch', nth: 2, times: 1000, status: 401 }] },
      { ...SEQUENTIAL, LIST_CONCURRENCY: '2' },
    );
    expect(faulty.status).toBe('aborted');
    expect(faulty.error).toMatch(/^Criteo rejected a freshly renewed token \(authorization-token-expired\)/);
    expect(await runStatus(faulty.runId)).toEqual({ status: 'aborted', error: faulty.error });
    // Two lists in parallel, one request in flight at a time: at most a renewal and a retry each.
    expect(calls.filter((c) => c.status === 401).length).toBeLessThanOrEqual(4);
    expect(calls.filter((c) => c.operation === 'token').length).toBeLessThanOrEqual(3);
    // The list that met the refusal carries the code and traceId in the run's report.
    const failed = faulty.lists.filter((l) => l.status === 'failed');
    expect(failed.length).toBeGreaterThanOrEqual(1);
    for (const l of failed) {
      expect(l).toMatchObject({ errorCode: 'authorization-token-expired', traceId: expect.any(String) });
      expect(calls.some((c) => c.traceId === l.traceId && c.status === 401)).toBe(true);
    }
    await rerunConverges(['693', '694']);
  });

  it('a token endpoint refusing the credentials aborts the run after one token request; the rerun converges', async () => {
    await seedLists([
      { segmentId: '695', size: 500 },
      { segmentId: '696', size: 500 },
    ]);
    const { faulty, calls } = await runWithFaults({ refuseCredentials: true }, { ...SEQUENTIAL, LIST_CONCURRENCY: '2' });
    expect(faulty.status).toBe('aborted');
    expect(faulty.error).toBe('Criteo refused the client credentials (invalid_client): check CRITEO_CLIENT_ID and CRITEO_CLIENT_SECRET');
    expect(calls).toEqual([expect.objectContaining({ operation: 'token', status: 401 })]);
    await rerunConverges(['695', '696']);
  });
});

describe('the record of an authentication failure', () => {
  // The list that met the refusal is finished as failed before the run stops, never left 'sending'.
  it('the list that met the second 401 is failed in list_syncs, with error_code and trace_id', async () => {
    await seedLists([
      { segmentId: '697', size: 1000 },
      { segmentId: '698', size: 500 },
    ]);
    const { faulty, calls } = await runWithFaults({ script: [{ operation: 'patch', nth: 2, times: 1000, status: 401 }] }, SEQUENTIAL);
    expect(faulty.status).toBe('aborted');
    const second401 = calls.filter((c) => c.status === 401).at(-1)!;
    const lists = await listSyncs(faulty.runId);
    expect(lists['697']).toMatchObject({ status: 'failed', error_code: 'authorization-token-expired', trace_id: second401.traceId });
    expect(lists['697']!.reason).toMatch(/rejected a freshly renewed token/);
  });
});

describe('definite refusals', () => {
  it('403 and 404: writing stops for that list, the reason and traceId are recorded, the other lists go on; the rerun converges', async () => {
    await seedLists([
      { segmentId: '631', size: 1500 },
      { segmentId: '632', size: 1500 },
      { segmentId: '633', size: 1500 },
    ]);
    const { faulty, calls } = await runWithFaults(
      { forbiddenSegments: ['632'], unknownSegments: ['633'] },
      { CRITEO_BATCH_SIZE: '500', LIST_CONCURRENCY: '3', CRITEO_CONCURRENCY: '2' },
    );
    expect(faulty.status).toBe('failed');
    const lists = await listSyncs(faulty.runId);
    expect(lists['631']!.status).toBe('succeeded');
    expect(await exact('631')).toBe(true);
    for (const [id, status, code, reason] of [
      ['632', 403, 'advertiser-access-denied', /no access to list 632/],
      ['633', 404, 'audience-segment-not-found', /Criteo does not know list 633/],
    ] as const) {
      const sent = patches(calls, id);
      expect(sent.length).toBeGreaterThanOrEqual(1);
      expect(sent.length).toBeLessThanOrEqual(2); // the batches already in flight, then nothing
      expect(sent.every((c) => c.status === status)).toBe(true);
      expect(lists[id]).toMatchObject({ status: 'failed', error_code: code });
      expect(lists[id]!.reason).toMatch(reason);
      expect(sent.map((c) => c.traceId)).toContain(lists[id]!.trace_id);
      const rows = await batches(faulty.runId, id);
      expect(rows.length).toBe(sent.length);
      for (const b of rows) expect(b).toMatchObject({ status: 'failed', http_status: status, error_code: code, trace_id: expect.any(String), attempts: 1 });
      expect(world.sandbox.members(id).size).toBe(0);
    }
    await rerunConverges(['631', '632', '633']);
  });

  it('400: no retry; the batch and the list fail with the code, title and traceId; the other list goes on; the rerun converges', async () => {
    await seedLists([
      { segmentId: '641', size: 1500 },
      { segmentId: '642', size: 500 },
    ]);
    const { faulty, calls } = await runWithFaults({ script: [{ operation: 'patch', nth: 2, status: 400 }] }, SEQUENTIAL);
    const refused = patches(calls)[1]!;
    expect(refused).toMatchObject({ segmentId: '641', status: 400 });
    expect(patches(calls, '641')).toHaveLength(2); // no retry, and no batch after it
    const lists = await listSyncs(faulty.runId);
    expect(lists['641']).toMatchObject({ status: 'failed', error_code: 'invalid-request', trace_id: refused.traceId });
    expect(lists['641']!.reason).toMatch(/rejected the patch request \(HTTP 400\): invalid-request Invalid request/);
    expect(await batches(faulty.runId, '641')).toMatchObject([
      { seq: 1, status: 'confirmed' },
      { seq: 2, status: 'failed', http_status: 400, error_code: 'invalid-request', error_title: 'Invalid request', trace_id: refused.traceId, attempts: 1 },
    ]);
    expect(lists['642']!.status).toBe('succeeded');
    expect(await exact('642')).toBe(true);
    await rerunConverges(['641', '642']);
  });
});

describe('everything at once', () => {
  // A world of its own, so that the sandbox's call record holds this run's calls only.
  let big: World;
  beforeAll(async () => {
    big = await createWorld('criteo_faults_300k', { segments: ['701', '702', '703', '704'].map((id) => ({ id, advertiserId: '1' })) });
  });
  afterAll(async () => big?.close());

  it('300,000 members over four lists, 20% transient errors, 429 bursts, 30-second tokens: converges exactly, and no window carries more calls than the limit', async () => {
    const lists = [
      { segmentId: '701', size: 90_000 },
      { segmentId: '702', size: 80_000 },
      { segmentId: '703', size: 70_000 },
      { segmentId: '704', size: 60_000 },
    ];
    await seedLists(lists, big);
    // Criteo's minute scaled down so the limiter binds within a test: 16 calls in any 2 s.
    const WINDOW_MS = 2_000;
    const LIMIT = 16;
    const limiter = new RateLimiter(LIMIT, WINDOW_MS);
    const capture = captureLog();
    const watch = watchTokens();
    big.sandbox.setFaults({
      seed: 20260701,
      tokenTtlSeconds: 30,
      rateLimitResetSeconds: 1,
      random: { errorRate: 0.2 },
      script: [
        { operation: 'patch', nth: 10, status: 401 },
        { operation: 'patch', nth: 25, times: 4, status: 429 },
        { operation: 'patch', nth: 40, applyThenFail: 502 },
        { operation: 'patch', nth: 100, times: 4, status: 429 },
        { operation: 'patch', nth: 110, applyThenFail: 504 },
      ],
    });
    const from = big.sandbox.calls.length;
    const started = Date.now();
    let summary: RunSummary;
    try {
      summary = await big.run(
        {},
        { CRITEO_BATCH_SIZE: '2500', LIST_CONCURRENCY: '2', CRITEO_CONCURRENCY: '4', CRITEO_MAX_ATTEMPTS: '10', CRITEO_MAX_CALLS_PER_MINUTE: String(LIMIT) },
        { limiter, log: capture.log },
      );
    } finally {
      watch.stop();
    }
    const durationMs = Date.now() - started;
    const calls = big.sandbox.calls.slice(from);
    big.sandbox.setFaults(undefined);

    const api = calls.filter((c) => c.operation !== 'token');
    const injected5xx = calls.filter((c) => c.status >= 500).length;
    const injected429 = calls.filter((c) => c.status === 429).length;
    const tokenCalls = calls.filter((c) => c.operation === 'token').length;
    const worstWindow = big.sandbox.maxCallsInAnyWindow(CLIENT_ID, WINDOW_MS);
    const worstMinute = big.sandbox.maxCallsInAnyWindow(CLIENT_ID, 60_000);
    const apiSpanMs = api.at(-1)!.at - api[0]!.at;
    console.info(
      `300k under faults: run ${durationMs} ms (first API call at ${api[0]!.at - started} ms, API calls over ${apiSpanMs} ms), ${api.length} API calls (${injected5xx} 5xx, ${injected429} 429), ${tokenCalls} token calls; ` +
        `max ${worstWindow} calls in any ${WINDOW_MS} ms (limit ${LIMIT}), ${worstMinute} in any 60 s; limiter ended at ${limiter.effectiveLimit}`,
    );

    // Every list converges in the faulty run itself (the tests above show the rerun after each fault class).
    expect(summary.status).toBe('succeeded');
    for (const l of lists) {
      expect(summary.lists.find((o) => o.segmentId === l.segmentId)).toMatchObject({ status: 'succeeded', added: l.size });
      expect(await convergence(big, l.segmentId)).toEqual({ desired: l.size, ledger: l.size, criteo: l.size, exact: true });
    }

    // The faults did happen.
    expect(injected5xx / api.length).toBeGreaterThan(0.12);
    expect(injected429).toBe(8);
    // 30-second tokens: renewed ahead of expiry; the only 401 is the injected one.
    expect(calls.filter((c) => c.status === 401)).toEqual([expect.objectContaining({ fault: 'fail' })]);
    expect(tokenCalls).toBeGreaterThanOrEqual(Math.max(2, 1 + Math.floor(apiSpanMs / 30_000)));

    // The sandbox's own count: no window of WINDOW_MS ever saw more than LIMIT calls (429s included).
    expect(worstWindow).toBeLessThanOrEqual(LIMIT);
    expect(worstWindow).toBeGreaterThanOrEqual(LIMIT - 4); // and the limiter did bind
    expect(limiter.effectiveLimit).toBeLessThan(LIMIT); // the 429 bursts slowed it for the rest of the run

    // Never more than CRITEO_CONCURRENCY requests in flight at the sandbox (token requests included).
    const edges = calls.flatMap((c) => [
      { t: c.at, d: 1 },
      { t: c.at + (c.durationMs ?? 0), d: -1 },
    ]);
    edges.sort((a, b) => a.t - b.t || a.d - b.d);
    let inFlight = 0;
    let mostInFlight = 0;
    for (const e of edges) mostInFlight = Math.max(mostInFlight, (inFlight += e.d));
    expect(mostInFlight).toBeLessThanOrEqual(4);

    // Every request logged once at its end; no token, secret or identifier in any line of the run.
    const lines = capture.lines.filter((l) => l['msg'] === 'criteo call');
    expect(lines).toHaveLength(calls.length);
    const text = capture.raw.join('\n');
    expect(text).not.toContain(CLIENT_SECRET);
    for (const token of watch.tokens) expect(text).not.toContain(token);
    expect(text).not.toMatch(/[0-9a-f]{64}/);
  }, 240_000); // about 50 s on a quiet 2-core machine; the planning phase is database-bound and stretches under load
});

import pg from 'pg';
import { ADVERTISER, BIG_LIST, SMALL_LIST } from './generate.js';
import { runJob, type JobCommand } from './job-process.js';
import type { RunPhases } from './phases.js';
import { BENCH_CLIENT, startSandboxProcess, type SandboxCallRecord } from './sandbox-process.js';

/**
 * `--rate-check`: the sandbox at Criteo's limit (250 calls a minute), the job
 * at its default CRITEO_MAX_CALLS_PER_MINUTE (200), and enough small batches
 * queued for about three minutes of calls. Measures, from the sandbox's
 * arrival times, the calls in every 60 s window lying wholly inside the time
 * work was queued (first call to last PATCH), sampled every 100 ms, but for
 * those starting when less than a limit's worth of calls remained (the run's
 * last minute, reported apart: no limiter can fill them).
 *
 * `--rate-processes 2`: the same calls from two job processes at once, with
 * the same credentials and database, each syncing a list of its own (half
 * the members each), as a nightly run and a CSM's resync would: they share
 * one budget (audience_sync.rate_slots), so the windows must hold the same
 * 90–100 % of the limit and no 429.
 */

export const JOB_LIMIT = 200;
const SANDBOX_LIMIT = 250;
const WINDOW_MS = 60_000;

export interface RateResult {
  mode: 'rate';
  meta: { customers: number; batchSize: number; jobLimit: number; sandboxLimit: number; processes: number; startedAt: string };
  run: RunPhases;
  /** With two processes, the second's run (`run` is the first's). */
  otherRun?: RunPhases;
  /** Non-token calls the sandbox answered for each process's list, in process order. */
  callsPerProcess: number[];
  calls: number;
  rejected429: number;
  busyMs: number;
  /** `minAtMs`: where the fullest-short window starts, from the first call. */
  perWindow: { min: number; max: number; mean: number; windows: number; minAtMs: number; lastMinute: { min: number; windows: number } };
  /** Every non-token call's arrival at the sandbox, ms from the first, with the list it named (none: a search). */
  arrivals: { atMs: number; list: string | null; status: number }[];
  perMinuteBuckets: number[];
  targets: { name: string; value: string; limit: string; pass: boolean | null }[];
}

/**
 * Calls in each 60 s window from `from`, every `stepMs`, up to the one ending
 * at `to`; a window from whose start fewer than `minRemaining` calls were
 * left to make is skipped (it could not be full whatever the limiter did:
 * the run's last minute, when less than a limit's worth of work remains).
 */
export function windowCounts(times: readonly number[], from: number, to: number, stepMs = 100, minRemaining = 0): number[] {
  const out: number[] = [];
  let lo = 0;
  let hi = 0;
  for (let s = from; s + WINDOW_MS <= to; s += stepMs) {
    while (lo < times.length && times[lo]! < s) lo++;
    while (hi < times.length && times[hi]! < s + WINDOW_MS) hi++;
    if (times.length - lo < minRemaining) break;
    out.push(hi - lo);
  }
  return out;
}

export async function runRateCheck(opts: {
  root: string;
  job: JobCommand;
  databaseUrl: string;
  work: string;
  customers: number;
  batchSize: number;
  processes: number;
  log: (s: string) => void;
}): Promise<RateResult> {
  const lists = opts.processes === 2 ? [BIG_LIST, SMALL_LIST] : [BIG_LIST];
  const client = new pg.Client({ connectionString: opts.databaseUrl });
  await client.connect();
  await client.query(`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'R' || lpad(i::text, 8, '0'), 'rate.' || i || '@example.com' FROM generate_series(1, ${opts.customers}) i`);
  // One campaign per list; with two lists, each gets every other customer.
  for (const [i, list] of lists.entries()) {
    await client.query(`
      INSERT INTO audience_sync.campaigns (campaign_id, name, advertiser_id, audience_segment_id, starts_at, measurement_ends_at)
      VALUES ('rate-${i}', 'Rate ${i}', ${ADVERTISER}, ${list}, now() - interval '1 day', now() + interval '30 days')`);
    await client.query(`
      INSERT INTO audience_sync.campaign_target_groups
      SELECT 'rate-${i}', customer_id FROM audience_sync.customers WHERE substr(customer_id, 2)::int % ${lists.length} = ${i}`);
  }
  await client.end();

  const sandbox = await startSandboxProcess({
    root: opts.root,
    dir: opts.work,
    segments: lists,
    advertiserId: ADVERTISER,
    rateLimitPerMinute: SANDBOX_LIMIT,
    heapMb: 1024,
  });
  const startedAt = new Date().toISOString();
  try {
    const expected = Math.ceil(opts.customers / opts.batchSize);
    opts.log(
      `rate check: ${expected} PATCHes of ${opts.batchSize} from ${lists.length} process(es), job at ${JOB_LIMIT}/min, sandbox at ${SANDBOX_LIMIT}/min (about ${Math.ceil(expected / JOB_LIMIT)} min)`,
    );
    const env = {
      DATABASE_URL: opts.databaseUrl,
      CRITEO_API_URL: sandbox.url,
      CRITEO_CLIENT_ID: BENCH_CLIENT.clientId,
      CRITEO_CLIENT_SECRET: BENCH_CLIENT.clientSecret,
      CRITEO_BATCH_SIZE: String(opts.batchSize),
      LOG_LEVEL: 'info',
      // CRITEO_MAX_CALLS_PER_MINUTE left at its default (200).
    };
    const [run, otherRun] = await Promise.all(
      lists.map((list, i) => runJob(opts.root, opts.job, opts.work, `rate-${i}`, lists.length > 1 ? { ...env, BENCH_LISTS: list } : env)),
    );
    const calls: SandboxCallRecord[] = (await sandbox.calls()).filter((c) => c.operation !== 'token');
    const times = calls.map((c) => c.at).sort((a, b) => a - b);
    const patches = calls.filter((c) => c.operation === 'patch');
    const from = times[0] ?? 0;
    const to = Math.max(...patches.map((c) => c.at));
    const counts = windowCounts(times, from, to, 100, JOB_LIMIT);
    const lastMinute = windowCounts(times, from, to).slice(counts.length);
    const buckets: number[] = [];
    for (const t of times) {
      const b = Math.floor((t - from) / WINDOW_MS);
      buckets[b] = (buckets[b] ?? 0) + 1;
    }
    const min = counts.length ? Math.min(...counts) : NaN;
    const max = counts.length ? Math.max(...counts) : NaN;
    const rejected = calls.filter((c) => c.status === 429).length;
    return {
      mode: 'rate',
      meta: { customers: opts.customers, batchSize: opts.batchSize, jobLimit: JOB_LIMIT, sandboxLimit: SANDBOX_LIMIT, processes: lists.length, startedAt },
      run: run!,
      ...(otherRun ? { otherRun } : {}),
      callsPerProcess: lists.map((list) => calls.filter((c) => c.segmentId === list).length),
      calls: calls.length,
      rejected429: rejected,
      busyMs: to - from,
      perWindow: {
        min,
        max,
        mean: counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length),
        windows: counts.length,
        minAtMs: counts.indexOf(min) * 100,
        lastMinute: { min: lastMinute.length ? Math.min(...lastMinute) : NaN, windows: lastMinute.length },
      },
      arrivals: calls.map((c) => ({ atMs: c.at - from, list: c.segmentId ?? null, status: c.status })).sort((a, b) => a.atMs - b.atMs),
      perMinuteBuckets: Array.from(buckets, (b) => b ?? 0),
      targets: [
        {
          name: 'calls per 60 s window while work is queued, within 90–100 % of CRITEO_MAX_CALLS_PER_MINUTE',
          value: `${min}–${max} (${((min / JOB_LIMIT) * 100).toFixed(1)}–${((max / JOB_LIMIT) * 100).toFixed(1)} %)`,
          limit: `${0.9 * JOB_LIMIT}–${JOB_LIMIT}`,
          pass: counts.length > 0 ? min >= 0.9 * JOB_LIMIT && max <= JOB_LIMIT : null,
        },
        { name: 'no 429 from the sandbox at 250/min', value: String(rejected), limit: '0', pass: rejected === 0 },
      ],
    };
  } finally {
    await sandbox.stop();
  }
}

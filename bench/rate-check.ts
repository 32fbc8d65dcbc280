import pg from 'pg';
import { ADVERTISER, BIG_LIST } from './generate.js';
import { runJob, type JobCommand } from './job-process.js';
import type { RunPhases } from './phases.js';
import { BENCH_CLIENT, startSandboxProcess, type SandboxCallRecord } from './sandbox-process.js';

/**
 * `--rate-check`: the sandbox at Criteo's limit (250 calls a minute), the job
 * at its default CRITEO_MAX_CALLS_PER_MINUTE (200), and enough small batches
 * queued for about three minutes of calls. Measures, from the sandbox's
 * arrival times, the calls in every 60 s window lying wholly inside the time
 * work was queued (first call to last PATCH), sampled every 100 ms.
 */

export const JOB_LIMIT = 200;
const SANDBOX_LIMIT = 250;
const WINDOW_MS = 60_000;

export interface RateResult {
  mode: 'rate';
  meta: { customers: number; batchSize: number; jobLimit: number; sandboxLimit: number; startedAt: string };
  run: RunPhases;
  calls: number;
  rejected429: number;
  busyMs: number;
  perWindow: { min: number; max: number; mean: number; windows: number };
  perMinuteBuckets: number[];
  targets: { name: string; value: string; limit: string; pass: boolean | null }[];
}

export function windowCounts(times: readonly number[], from: number, to: number, stepMs = 100): number[] {
  const out: number[] = [];
  let lo = 0;
  let hi = 0;
  for (let s = from; s + WINDOW_MS <= to; s += stepMs) {
    while (lo < times.length && times[lo]! < s) lo++;
    while (hi < times.length && times[hi]! < s + WINDOW_MS) hi++;
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
  log: (s: string) => void;
}): Promise<RateResult> {
  const client = new pg.Client({ connectionString: opts.databaseUrl });
  await client.connect();
  await client.query(`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'R' || lpad(i::text, 8, '0'), 'rate.' || i || '@example.com' FROM generate_series(1, ${opts.customers}) i`);
  await client.query(`
    INSERT INTO audience_sync.campaigns VALUES ('rate-a', 'Rate A', ${ADVERTISER}, ${BIG_LIST}, now() - interval '1 day', now() + interval '30 days')`);
  await client.query(`
    INSERT INTO audience_sync.campaign_target_groups SELECT 'rate-a', customer_id FROM audience_sync.customers`);
  await client.end();

  const sandbox = await startSandboxProcess({
    root: opts.root,
    dir: opts.work,
    segments: [BIG_LIST],
    advertiserId: ADVERTISER,
    rateLimitPerMinute: SANDBOX_LIMIT,
    heapMb: 1024,
  });
  const startedAt = new Date().toISOString();
  try {
    const expected = Math.ceil(opts.customers / opts.batchSize);
    opts.log(
      `rate check: ${expected} PATCHes of ${opts.batchSize}, job at ${JOB_LIMIT}/min, sandbox at ${SANDBOX_LIMIT}/min (about ${Math.ceil(expected / JOB_LIMIT)} min)`,
    );
    const run = await runJob(opts.root, opts.job, opts.work, 'rate', {
      DATABASE_URL: opts.databaseUrl,
      CRITEO_API_URL: sandbox.url,
      CRITEO_CLIENT_ID: BENCH_CLIENT.clientId,
      CRITEO_CLIENT_SECRET: BENCH_CLIENT.clientSecret,
      CRITEO_BATCH_SIZE: String(opts.batchSize),
      LOG_LEVEL: 'info',
      // CRITEO_MAX_CALLS_PER_MINUTE left at its default (200).
    });
    const calls: SandboxCallRecord[] = (await sandbox.calls()).filter((c) => c.operation !== 'token');
    const times = calls.map((c) => c.at).sort((a, b) => a - b);
    const patches = calls.filter((c) => c.operation === 'patch');
    const from = times[0] ?? 0;
    const to = Math.max(...patches.map((c) => c.at));
    const counts = windowCounts(times, from, to);
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
      meta: { customers: opts.customers, batchSize: opts.batchSize, jobLimit: JOB_LIMIT, sandboxLimit: SANDBOX_LIMIT, startedAt },
      run,
      calls: calls.length,
      rejected429: rejected,
      busyMs: to - from,
      perWindow: { min, max, mean: counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length), windows: counts.length },
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

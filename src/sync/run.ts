import pLimit from 'p-limit';
import { sql } from 'kysely';
import type pg from 'pg';
import type { Config } from '../core/config.js';
import type { CriteoClient, ListStatistics } from '../criteo/client.js';
import { callTrace } from '../criteo/client.js';
import type { Db } from '../db/connection.js';
import { AuthenticationError, ListRejectedError, TransientError, oneLine, type CriteoProblem } from '../core/errors.js';
import {
  applyConfirmedBatches,
  applyConfirmedBatchesIn,
  applyConfirmedEmptying,
  countLedger,
  findUncertainty,
  recordBatchFailure,
  recordEmptyingIntent,
  settleInStep,
} from './ledger.js';
import type { Logger } from '../core/logger.js';
import { assertMigrated } from '../db/migrate.js';
import { discardOrphanedPlans, discardPlan, materializePlan, type PlanCounts, type Uncertainty } from './plan.js';
import {
  LIST_LOCK_CLASS,
  RUN_LOCK_CLASS,
  closeAbandonedRuns,
  finishListSync,
  finishRun,
  recordCampaignFunnels,
  recordHeldRemovals,
  recordListPlan,
  recordListStatistics,
  startListSync,
  startRun,
} from './records.js';
import type { ListSyncStatus, RunStatus } from '../db/schema.js';
import { sendPlannedOperation } from './send.js';
import { chooseSourceRead, pruneChangeLog, recordSourceRead, takeSourceSnapshot } from '../source/change-log.js';
import {
  applyChangedTargets,
  applyCounterDeltas,
  findChangedTargets,
  findTouchedIdentifiers,
  lockListState,
  markOutOfStep,
  readCounters,
  recountCounters,
  type SnapshotCounts,
} from '../source/snapshot.js';
import { findListTargets, type CampaignFunnel, type Funnel, type ListTarget } from '../source/target-groups.js';
import { sleep } from '../criteo/rate-limiter.js';

/**
 * One pass over every list (or the chosen ones), per list under its advisory
 * lock: bring its snapshot up to the source and plan the diff against the ledger, send adds
 * then removes, or empty a list whose campaigns have all ended; read the
 * statistics of every list it touched. Lists run in parallel
 * (LIST_CONCURRENCY); the Criteo client bounds calls across all of them.
 */

export interface SyncDeps {
  db: Db;
  pool: pg.Pool;
  client: CriteoClient;
  config: Config;
  log: Logger;
}

export interface SyncOptions {
  trigger: string;
  /** Only these lists (CSM resync); default every list a campaign points at. */
  segmentIds?: readonly string[];
  /** The instant campaigns are judged active at; default now. */
  asOf?: Date;
  signal?: AbortSignal;
  /** Resync --full: re-send every desired identifier, remove every ledger identifier not desired. */
  full?: boolean;
  /** Override the mass-removal guard for this run. */
  allowMassRemoval?: boolean;
  /** Called after each confirmed batch, for progress bars. */
  onProgress?: (progress: ListProgress) => void;
}

export interface ListProgress {
  segmentId: string;
  planned: number;
  done: number;
}

export interface ListOutcome {
  listSyncId: number | null;
  segmentId: string;
  action: 'sync' | 'empty';
  status: ListSyncStatus;
  campaignIds: string[];
  activeCampaignIds: string[];
  funnel: Funnel | null;
  campaignFunnels: CampaignFunnel[];
  ledgerBefore: number | null;
  toAdd: number;
  toRemove: number;
  added: number;
  removed: number;
  emptied: boolean;
  heldRemovals: number;
  reason: string | null;
  errorCode: string | null;
  traceId: string | null;
  statistics: ListStatistics | null;
  /** A planned list: whether its source was read from the change log or whole, and why whole. */
  sourceRead?: 'changes' | 'whole';
  wholeReadReason?: string | null;
}

export interface RunSummary {
  runId: number;
  trigger: string;
  status: RunStatus;
  asOf: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  lists: ListOutcome[];
  error: string | null;
}

export async function runSync(deps: SyncDeps, options: SyncOptions): Promise<RunSummary> {
  const { db, config } = deps;
  const started = new Date();
  const asOf = options.asOf ?? started;
  await assertMigrated(db);
  await closeAbandonedRuns(db);
  await discardOrphanedPlans(db);
  // A process that runs on a schedule starts each run at the full rate, with no authentication hold.
  deps.client.beginRun();

  const runId = await startRun(db, options.trigger, asOf, {
    segmentIds: options.segmentIds ?? null,
    full: options.full ?? false,
    allowMassRemoval: options.allowMassRemoval ?? false,
  });
  const log = deps.log.child({ runId });
  // The run's own liveness lock: a later run that can take it knows this one died.
  const runLock = await deps.pool.connect();
  let runError: string | null = null;
  let status: RunStatus = 'succeeded';
  const lists: ListOutcome[] = [];
  try {
    await runLock.query('SELECT pg_advisory_lock($1::int, $2::int)', [RUN_LOCK_CLASS, runId]);
    log.info({ trigger: options.trigger, asOf: asOf.toISOString() }, 'run started');

    const targets = await findListTargets(db, asOf, options.segmentIds);
    const unknown = (options.segmentIds ?? []).filter((id) => !targets.some((t) => t.segmentId === id));
    for (const id of unknown) lists.push(notFeedByAnyCampaign(id));

    // An authentication failure stops every list: retrying would only storm Criteo.
    const abort = new AbortController();
    const onOuterAbort = () => abort.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', onOuterAbort, { once: true });
    let authFailure: AuthenticationError | undefined;

    const limit = pLimit(config.listConcurrency);
    const outcomes = await Promise.all(
      targets.map((target) =>
        limit(async () => {
          if (abort.signal.aborted) return interruptedBeforeStart(target, authFailure ? 'run aborted: authentication failed' : 'run interrupted');
          try {
            return await syncList(deps, { runId, asOf, target, signal: abort.signal, log, options });
          } catch (error) {
            if (error instanceof AuthenticationError) {
              authFailure ??= error;
              abort.abort(error);
            }
            throw error;
          }
        }).catch((error: unknown) => failedOutside(target, error)),
      ),
    );
    options.signal?.removeEventListener('abort', onOuterAbort);
    lists.push(...outcomes);
    // Housekeeping: a failure here loses nothing (the rows stay for the next run), so it never fails the run.
    await pruneChangeLog(db).then(
      (pruned) => pruned > 0 && log.info({ pruned }, 'change log pruned'),
      (error: unknown) => log.warn({ error: oneLine(error) }, 'change log not pruned'),
    );

    if (authFailure) {
      status = 'aborted';
      runError = oneLine(authFailure);
    } else if (options.signal?.aborted) {
      status = 'interrupted';
      runError = 'interrupted by signal';
    } else if (lists.some((l) => l.status === 'failed' || l.status === 'incomplete' || l.status === 'held')) {
      status = 'failed';
    }
  } catch (error) {
    status = 'failed';
    runError = oneLine(error);
    throw error;
  } finally {
    await finishRun(db, runId, status, runError ?? undefined).catch(() => {});
    runLock.release(true); // closing the connection frees the advisory lock with it
    log.info({ status, lists: lists.length }, 'run finished');
  }
  const finished = new Date();
  return {
    runId,
    trigger: options.trigger,
    status,
    asOf: asOf.toISOString(),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    lists,
    error: runError,
  };
}

interface ListJob {
  runId: number;
  asOf: Date;
  target: ListTarget;
  signal: AbortSignal;
  log: Logger;
  options: SyncOptions;
}

async function syncList(deps: SyncDeps, job: ListJob): Promise<ListOutcome> {
  const { db, config } = deps;
  const { target } = job;
  const log = job.log.child({ list: target.segmentId, campaigns: target.activeCampaignIds });
  const action = target.allEnded ? 'empty' : 'sync';
  const outcome: ListOutcome = baseOutcome(target, action);

  const lock = await deps.pool.connect();
  try {
    const holder = await acquireListLock(lock, db, target.segmentId, config.lockWaitSeconds);
    if (holder !== 'acquired') {
      outcome.status = 'skipped';
      outcome.reason = `list ${target.segmentId} is being synced by run ${holder ?? 'unknown'}`;
      outcome.listSyncId = await startListSync(db, listSyncStart(job, action));
      await finishListSync(db, outcome.listSyncId, 'skipped', { reason: outcome.reason });
      log.warn({ reason: outcome.reason }, 'list skipped');
      return outcome;
    }
    const listSyncId = await startListSync(db, listSyncStart(job, action));
    outcome.listSyncId = listSyncId;
    const uncertainty = await findUncertainty(db, target.segmentId);
    let touched = false;
    let authFailure: AuthenticationError | undefined;
    try {
      if (action === 'empty') {
        touched = await emptyList(deps, job, listSyncId, uncertainty.batchIds.length > 0, outcome, log);
      } else {
        touched = await syncMembers(deps, job, listSyncId, uncertainty, outcome, log);
      }
    } catch (error) {
      touched ||= (error as { touched?: boolean }).touched ?? false;
      const verdict = classify(error);
      outcome.status = verdict.status;
      outcome.reason = verdict.reason;
      outcome.errorCode = verdict.problem?.code ?? null;
      outcome.traceId = verdict.problem?.traceId ?? null;
      if (error instanceof AuthenticationError) authFailure = error;
    } finally {
      // What Criteo confirmed goes into the ledger now, whatever stopped the list (a finished list did it already);
      // if the database is gone, the next sync of the list does it before it plans or empties.
      if (outcome.status !== 'succeeded') await applyConfirmedBatches(db, target.segmentId).catch(() => {});
      await discardPlan(db, listSyncId).catch(() => {});
    }
    outcome.reason = withDatesNote(outcome.reason, target);
    await refreshOutcomeCounts(db, listSyncId, outcome);
    await finishListSync(db, listSyncId, outcome.status, {
      ...(outcome.reason ? { reason: outcome.reason } : {}),
      ...(outcome.errorCode ? { errorCode: outcome.errorCode } : {}),
      ...(outcome.traceId ? { traceId: outcome.traceId } : {}),
    });
    // Recorded first, then the whole run stops: retrying with refused credentials would only storm Criteo.
    if (authFailure) throw Object.assign(authFailure, { outcome });
    // Statistics after any change, and at least daily for a live list, so the report never reads stale figures.
    if (touched || (action === 'sync' && outcome.status !== 'failed' && (await statisticsOlderThan(db, target.segmentId, STATISTICS_MAX_AGE_MS)))) {
      await readStatistics(deps, listSyncId, target.segmentId, outcome, log);
    }
    log.info(
      {
        status: outcome.status,
        action,
        toAdd: outcome.toAdd,
        toRemove: outcome.toRemove,
        added: outcome.added,
        removed: outcome.removed,
        emptied: outcome.emptied,
        reason: outcome.reason,
      },
      'list finished',
    );
    return outcome;
  } finally {
    lock.release(true);
  }
}

async function syncMembers(deps: SyncDeps, job: ListJob, listSyncId: number, uncertainty: Uncertainty, outcome: ListOutcome, log: Logger): Promise<boolean> {
  const { db, config } = deps;
  const segmentId = job.target.segmentId;
  const plan = await planList(deps, job, listSyncId, uncertainty);
  Object.assign(outcome, plan);
  await recordListPlan(db, listSyncId, plan);
  await recordCampaignFunnels(db, listSyncId, plan.campaignFunnels);
  if (plan.heldRemovals > 0) await recordHeldRemovals(db, listSyncId, plan.heldRemovals);
  log.info(
    {
      ...plan.funnel,
      ledgerBefore: plan.ledgerBefore,
      changedRows: plan.changedRows,
      sourceRead: plan.sourceRead,
      ...(plan.wholeReadReason ? { wholeReadReason: plan.wholeReadReason } : {}),
      incremental: plan.incremental,
      toAdd: plan.toAdd,
      toRemove: plan.toRemove,
      heldRemovals: plan.heldRemovals,
      uncertainBatches: uncertainty.batchIds.length,
    },
    'list planned',
  );

  const planned = plan.toAdd + (plan.heldRemovals > 0 ? 0 : plan.toRemove);
  let done = 0;
  const ctx = {
    db,
    client: deps.client,
    log,
    batchSize: config.criteo.batchSize,
    concurrency: config.criteo.concurrency,
    signal: job.signal,
    seq: { next: 1 },
    onBatchConfirmed: (_op: 'add' | 'remove', size: number) => {
      done += size;
      job.options.onProgress?.({ segmentId, planned, done });
    },
  };
  job.options.onProgress?.({ segmentId, planned, done });
  // Adds before removes: a list never dips below its desired members mid-sync.
  const adds = await sendPlannedOperation(ctx, listSyncId, segmentId, 'add', plan.toAdd);
  let touched = adds.confirmedBatches > 0;
  if (adds.error) throw Object.assign(asError(adds.error), { touched });
  if (adds.interrupted) return markInterrupted(outcome, touched);
  if (plan.heldRemovals > 0) {
    outcome.status = 'held';
    outcome.reason = plan.heldReason;
    log.warn({ heldRemovals: plan.heldRemovals, ledgerBefore: plan.ledgerBefore }, 'removals held by the mass-removal guard');
    return touched;
  }
  const removes = await sendPlannedOperation(ctx, listSyncId, segmentId, 'remove', plan.toRemove);
  touched ||= removes.confirmedBatches > 0;
  if (removes.error) throw Object.assign(asError(removes.error), { touched });
  if (removes.interrupted) return markInterrupted(outcome, touched);

  // Everything planned is confirmed: older unsettled batches have been re-sent, and the ledger is in step.
  await settleInStep(db, segmentId, uncertainty.batchIds);
  outcome.status = 'succeeded';
  return touched;
}

export interface ListPlan extends PlanCounts {
  funnel: Funnel;
  campaignFunnels: CampaignFunnel[];
  ledgerBefore: number;
  /** Removals the mass-removal guard holds back (0 when none). */
  heldRemovals: number;
  heldReason: string | null;
  /** Target-group rows new, gone or with a changed email since the list was last planned. */
  changedRows: number;
  /** How they were found: from the keys the source change log names, or by reading the whole target group. */
  sourceRead: 'changes' | 'whole';
  /** Why the whole target group was read. */
  wholeReadReason: string | null;
  /** The diff looked only at the identifiers those rows touch (the ledger was in step). */
  incremental: boolean;
}

/**
 * What syncing a list means now: its snapshot brought up to the source, its
 * funnel, and its diff written to plan_entries under `planId`, in one
 * transaction. `run` commits it and sends the plan; `plan` (dryRun) rolls it
 * all back, so a dry run changes nothing.
 */
export async function planList(
  deps: Pick<SyncDeps, 'db' | 'config'>,
  job: Pick<ListJob, 'target' | 'asOf' | 'options'>,
  planId: number,
  uncertainty: Uncertainty,
  { dryRun = false }: { dryRun?: boolean } = {},
): Promise<ListPlan> {
  const { db, config } = deps;
  const { segmentId, activeCampaignIds } = job.target;
  let plan: ListPlan | undefined;
  await db
    .transaction()
    .execute(async (tx) => {
      // Batches an earlier sync had confirmed but not yet moved into the ledger (it was killed): the ledger takes
      // them first, in this transaction, so a dry run rolls it back with the rest.
      await applyConfirmedBatchesIn(tx, segmentId);
      const state = await lockListState(tx, segmentId);
      // Only a ledger in step with the snapshot, nothing uncertain and no --full lets the diff look at today's changes alone.
      const incremental = state.inStep && uncertainty.batchIds.length === 0 && !uncertainty.wholeList && !job.options.full;
      const ledgerBefore = incremental ? state.identifiers : await countLedger(tx, segmentId);
      const seen = await takeSourceSnapshot(tx);
      const read = await chooseSourceRead(tx, segmentId, activeCampaignIds, seen, {
        full: job.options.full ?? false,
        wholeReadDays: config.sourceWholeReadDays,
      });
      const { changedRows } = await findChangedTargets(tx, segmentId, activeCampaignIds, read);
      await applyChangedTargets(tx, segmentId);
      await recordSourceRead(tx, segmentId, read, activeCampaignIds, config.sourceWholeReadDays);
      let counts: PlanCounts;
      if (incremental) {
        await findTouchedIdentifiers(tx, segmentId);
        counts = await materializePlan(tx, planId, segmentId, { kind: 'touched' }, config.criteo.batchSize);
        // The ledger held exactly the snapshot's identifiers, and the diff moved exactly the ones that changed.
        await applyCounterDeltas(tx, segmentId, ledgerBefore + counts.toAdd - counts.toRemove);
      } else {
        await recountCounters(tx, segmentId);
        // --full distrusts the whole ledger: every desired identifier is re-sent.
        const whole = job.options.full ? { ...uncertainty, wholeList: true } : uncertainty;
        counts = await materializePlan(tx, planId, segmentId, { kind: 'whole', uncertainty: whole }, config.criteo.batchSize);
      }
      await markOutOfStep(tx, segmentId);
      const { funnel, campaignFunnels } = funnelsOf(await readCounters(tx, segmentId), activeCampaignIds);
      const ratio = ledgerBefore > 0 ? counts.toRemove / ledgerBefore : 0;
      const held = !job.options.allowMassRemoval && ratio > config.maxRemovalRatio;
      plan = {
        ...counts,
        funnel,
        campaignFunnels,
        ledgerBefore,
        changedRows,
        sourceRead: read.kind,
        wholeReadReason: read.kind === 'whole' ? read.reason : null,
        incremental,
        heldRemovals: held ? counts.toRemove : 0,
        heldReason: held
          ? `held ${counts.toRemove} removals (${(ratio * 100).toFixed(0)}% of the list, over MAX_REMOVAL_RATIO ${config.maxRemovalRatio}): check the source data, then rerun with --allow-mass-removal`
          : null,
      };
      if (dryRun) throw DRY_RUN;
    })
    .catch((error: unknown) => {
      if (error === DRY_RUN) return;
      const e = error as { code?: string; constraint?: string };
      if (e.code === '23505' && e.constraint === 'list_targets_pkey') {
        // Only a source view can do this: the tables' own keys forbid it.
        throw new Error(
          `the source repeats a target-group row or a customer id for list ${segmentId}: campaign_target_groups must be unique on (campaign_id, customer_id) and customers on customer_id`,
        );
      }
      throw error;
    });
  return plan!;
}

/** Thrown to roll a dry run's plan transaction back. */
const DRY_RUN = Symbol('dry run');

function funnelsOf(counts: SnapshotCounts, activeCampaignIds: readonly string[]): { funnel: Funnel; campaignFunnels: CampaignFunnel[] } {
  const stages = (scope: string) => {
    const c = counts.byScope.get(scope) ?? { no_customer: 0, missing: 0, invalid: 0, valid: 0 };
    return {
      targetGroupSize: c.no_customer + c.missing + c.invalid + c.valid,
      missingCustomers: c.no_customer,
      withoutEmail: c.missing,
      invalidEmails: c.invalid,
    };
  };
  // A campaign's own distinct identifiers are known only when it feeds the list alone.
  const lone = activeCampaignIds.length === 1;
  return {
    funnel: { ...stages(''), uniqueIdentifiers: counts.identifiers },
    campaignFunnels: activeCampaignIds.map((campaignId) => ({ campaignId, ...stages(campaignId), uniqueIdentifiers: lone ? counts.identifiers : null })),
  };
}

async function emptyList(deps: SyncDeps, job: ListJob, listSyncId: number, hasUncertainty: boolean, outcome: ListOutcome, log: Logger): Promise<boolean> {
  const { db } = deps;
  const segmentId = job.target.segmentId;
  // Batches an earlier sync had confirmed but not yet moved into the ledger (it was killed): the ledger takes them first.
  await applyConfirmedBatches(db, segmentId);
  const ledgerBefore = await countLedger(db, segmentId);
  outcome.ledgerBefore = ledgerBefore;
  outcome.toRemove = ledgerBefore;
  await recordListPlan(db, listSyncId, { ledgerBefore, toAdd: 0, toRemove: ledgerBefore });
  if (ledgerBefore === 0 && !hasUncertainty) {
    // Already empty, and we never sent anything we are unsure of: no call at all.
    outcome.status = 'succeeded';
    outcome.reason = 'measurement period ended; list already empty';
    return false;
  }
  const batchId = await recordEmptyingIntent(db, listSyncId, segmentId, ledgerBefore);
  try {
    const out = await deps.client.emptyContactList(segmentId);
    await applyConfirmedEmptying(db, batchId, listSyncId, segmentId, {
      httpStatus: out.status,
      attempts: out.attempts,
      waitedMs: out.waitedMs,
      durationMs: out.durationMs,
    });
  } catch (error) {
    const mayHaveApplied =
      callTrace(error)?.mayHaveApplied ||
      (error instanceof TransientError ? error.mayHaveApplied : !(error instanceof ListRejectedError || error instanceof AuthenticationError));
    await recordBatchFailure(db, batchId, mayHaveApplied, callTrace(error) ?? {}, (error as { problem?: CriteoProblem }).problem).catch(() => {});
    throw error;
  }
  outcome.status = 'succeeded';
  outcome.reason = 'measurement period ended; list emptied';
  log.info({ removed: ledgerBefore }, 'list emptied');
  return true;
}

const STATISTICS_MAX_AGE_MS = 20 * 3_600_000;

async function statisticsOlderThan(db: Db, segmentId: string, maxAgeMs: number): Promise<boolean> {
  const { rows } = await sql<{ read_at: Date | null }>`
    SELECT max(stats_read_at) AS read_at FROM audience_sync.list_syncs WHERE audience_segment_id = ${segmentId}::bigint`.execute(db);
  const readAt = rows[0]?.read_at;
  return !readAt || Date.now() - readAt.getTime() > maxAgeMs;
}

async function readStatistics(deps: SyncDeps, listSyncId: number, segmentId: string, outcome: ListOutcome, log: Logger): Promise<void> {
  try {
    const out = await deps.client.getStatistics(segmentId);
    outcome.statistics = out.body;
    await recordListStatistics(deps.db, listSyncId, out.body);
  } catch (error) {
    // Statistics are for the report; failing to read them does not undo a sync.
    log.warn({ error: oneLine(error) }, 'could not read list statistics');
  }
}

/**
 * Waits up to `waitSeconds` for the list's advisory lock on a dedicated
 * connection (released with it). Returns 'acquired', or the run holding it.
 */
async function acquireListLock(lock: pg.PoolClient, db: Db, segmentId: string, waitSeconds: number): Promise<'acquired' | number | null> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const { rows } = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS ok', [LIST_LOCK_CLASS, Number(segmentId) | 0]);
    if (rows[0]?.ok) return 'acquired';
    if (Date.now() >= deadline) break;
    await sleep(Math.min(500, Math.max(1, deadline - Date.now())));
  }
  const { rows } = await sql<{ run_id: number }>`
    SELECT run_id FROM audience_sync.list_syncs
    WHERE audience_segment_id = ${segmentId}::bigint AND status IN ('planning', 'sending')
    ORDER BY list_sync_id DESC LIMIT 1`.execute(db);
  return rows[0]?.run_id ?? null;
}

async function refreshOutcomeCounts(db: Db, listSyncId: number, outcome: ListOutcome): Promise<void> {
  const row = await db.selectFrom('audience_sync.list_syncs').select(['added', 'removed', 'emptied']).where('list_sync_id', '=', listSyncId).executeTakeFirst();
  if (row) Object.assign(outcome, row);
}

/** The database went away (restart, failover, network): the list is incomplete, and the next run resumes it. */
function lostDatabase(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  const code = e.code ?? '';
  return (
    code.startsWith('08') || // connection exceptions
    ['57P01', '57P02', '57P03', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code) ||
    /Connection terminated|connection timeout/i.test(e.message ?? '')
  );
}

/** Names campaigns whose dates are inverted: they are never active, and nothing else would say so. */
function withDatesNote(reason: string | null, target: ListTarget): string | null {
  if (target.invertedCampaignIds.length === 0) return reason;
  const note = target.invertedCampaignIds.map((id) => `campaign ${id} ends before it starts (never active)`).join('; ');
  return reason ? `${reason}; ${note}` : note;
}

function classify(error: unknown): { status: ListSyncStatus; reason: string; problem?: CriteoProblem } {
  const problem = (error as { problem?: CriteoProblem }).problem;
  const reason = oneLine(error);
  if (error instanceof TransientError || lostDatabase(error)) return { status: 'incomplete', reason, ...(problem ? { problem } : {}) };
  return { status: 'failed', reason, ...(problem ? { problem } : {}) };
}

function markInterrupted(outcome: ListOutcome, touched: boolean): boolean {
  outcome.status = 'incomplete';
  outcome.reason = 'interrupted before every batch was sent; the next run resumes it';
  return touched;
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function listSyncStart(job: ListJob, action: 'sync' | 'empty') {
  return {
    runId: job.runId,
    segmentId: job.target.segmentId,
    advertiserId: job.target.advertiserIds[0] ?? null,
    campaignIds: job.target.campaignIds,
    action,
  };
}

function baseOutcome(target: ListTarget, action: 'sync' | 'empty'): ListOutcome {
  return {
    listSyncId: null,
    segmentId: target.segmentId,
    action,
    status: 'planning',
    campaignIds: target.campaignIds,
    activeCampaignIds: target.activeCampaignIds,
    funnel: null,
    campaignFunnels: [],
    ledgerBefore: null,
    toAdd: 0,
    toRemove: 0,
    added: 0,
    removed: 0,
    emptied: false,
    heldRemovals: 0,
    reason: null,
    errorCode: null,
    traceId: null,
    statistics: null,
  };
}

function interruptedBeforeStart(target: ListTarget, reason: string): ListOutcome {
  return { ...baseOutcome(target, target.allEnded ? 'empty' : 'sync'), status: 'incomplete', reason };
}

function failedOutside(target: ListTarget, error: unknown): ListOutcome {
  const carried = (error as { outcome?: ListOutcome }).outcome;
  if (carried) return carried;
  const verdict = classify(error);
  return { ...baseOutcome(target, target.allEnded ? 'empty' : 'sync'), status: verdict.status, reason: verdict.reason };
}

function notFeedByAnyCampaign(segmentId: string): ListOutcome {
  return {
    ...baseOutcome({ segmentId, campaignIds: [], activeCampaignIds: [], advertiserIds: [], allEnded: false, invertedCampaignIds: [] }, 'sync'),
    status: 'skipped',
    reason: `no campaign points at list ${segmentId}; left alone`,
  };
}

// --- plan (dry run) ------------------------------------------------------------

export interface PlannedList {
  segmentId: string;
  action: 'sync' | 'empty' | 'none';
  campaignIds: string[];
  activeCampaignIds: string[];
  funnel: Funnel | null;
  ledgerBefore: number;
  toAdd: number;
  toRemove: number;
  heldRemovals: number;
  uncertainBatches: number;
  note: string | null;
}

export interface PlanSummary {
  asOf: string;
  lists: PlannedList[];
}

/**
 * What `run` would do now, list by list, through the same planning code,
 * sending nothing and changing nothing: each list's plan transaction is
 * rolled back.
 */
export async function planSync(
  deps: Pick<SyncDeps, 'db' | 'config' | 'log'>,
  options: Omit<SyncOptions, 'trigger' | 'signal' | 'onProgress'> = {},
): Promise<PlanSummary> {
  const { db } = deps;
  const asOf = options.asOf ?? new Date();
  await assertMigrated(db);
  const targets = await findListTargets(db, asOf, options.segmentIds);
  const lists: PlannedList[] = [];
  for (const id of options.segmentIds ?? []) {
    if (!targets.some((t) => t.segmentId === id)) lists.push({ ...emptyPlanned(id), note: `no campaign points at list ${id}; left alone` });
  }
  for (const target of targets) {
    const uncertainty = await findUncertainty(db, target.segmentId);
    const base = {
      ...emptyPlanned(target.segmentId),
      campaignIds: target.campaignIds,
      activeCampaignIds: target.activeCampaignIds,
      uncertainBatches: uncertainty.batchIds.length,
    };
    if (target.allEnded) {
      const ledgerBefore = await countLedger(db, target.segmentId);
      const needed = ledgerBefore > 0 || uncertainty.batchIds.length > 0;
      lists.push({
        ...base,
        action: needed ? 'empty' : 'none',
        ledgerBefore,
        toRemove: ledgerBefore,
        note: withDatesNote(needed ? 'measurement period ended: one DELETE empties the list' : 'measurement period ended; list already empty', target),
      });
      continue;
    }
    // A negative id never collides with a real list sync's plan.
    const planId = -Math.floor(Math.random() * 2 ** 47) - 1;
    try {
      const plan = await planList(deps, { target, asOf, options: { trigger: 'plan', ...options } }, planId, uncertainty, { dryRun: true });
      lists.push({
        ...base,
        action: plan.toAdd + plan.toRemove > 0 ? 'sync' : 'none',
        funnel: plan.funnel,
        ledgerBefore: plan.ledgerBefore,
        toAdd: plan.toAdd,
        toRemove: plan.toRemove,
        heldRemovals: plan.heldRemovals,
        note: withDatesNote(plan.heldReason ?? (target.activeCampaignIds.length === 0 ? 'no campaign active yet' : null), target),
      });
    } finally {
      await discardPlan(db, planId);
    }
  }
  deps.log.info({ lists: lists.length }, 'plan computed');
  return { asOf: asOf.toISOString(), lists };
}

function emptyPlanned(segmentId: string): PlannedList {
  return {
    segmentId,
    action: 'none',
    campaignIds: [],
    activeCampaignIds: [],
    funnel: null,
    ledgerBefore: 0,
    toAdd: 0,
    toRemove: 0,
    heldRemovals: 0,
    uncertainBatches: 0,
    note: null,
  };
}

import type pg from 'pg';
import { oneLine } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../criteo/rate-limiter.js';
import type { Db } from '../db/connection.js';
import { releaseListLock, tryListLock } from '../db/locks.js';
import { vacuumSnapshot } from '../source/snapshot-table.js';
import { emptyList } from './empty.js';
import { applyConfirmedBatches, confirmAnswers, settleInStep, type ListSyncCounts } from './ledger.js';
import { actionOf, baseOutcome, classify, INTERRUPTED_REASON, stopsRun, withDatesNote, type RunStopper } from './outcome.js';
import { discardPlan, type Uncertainty } from './plan.js';
import { inPlanSlot, planList, type ListPlan } from './plan-list.js';
import { finishListSync, listSyncHolder, startListSync, startLockedListSync } from './records.js';
import { sendPlannedOperation, type SendContext } from './send.js';
import { readStatistics, statisticsDue } from './statistics.js';
import type { ListJob, ListOutcome, SyncDeps } from './types.js';

/** A list's sync, and what must stop the whole run, if Criteo refused the credentials or retired the API version. */
export interface ListResult {
  outcome: ListOutcome;
  stop?: RunStopper;
}

/** What a list's work did: whether Criteo was changed, what stopped it, if anything, and whether its end is recorded already. */
interface ListWork {
  touched: boolean;
  error?: unknown;
  finished?: boolean;
}

/**
 * One list, under its advisory lock: plan and send (or empty it), record how
 * it ended, then read its statistics when it changed or they are due.
 */
export async function syncList(deps: SyncDeps, job: ListJob): Promise<ListResult> {
  const { target } = job;
  const log = job.log.child({ list: target.segmentId, campaigns: target.activeCampaignIds });
  const outcome = baseOutcome(target, actionOf(target));
  if (job.refusal) return { outcome: await refuseList(deps.db, job, job.refusal, outcome, log) };
  const lock = await deps.locks.connect();
  let held = false;
  try {
    held = await acquireListLock(lock, deps.config.lockWaitSeconds, target.segmentId);
    if (!held) return { outcome: await skipLockedList(deps.db, job, outcome, log) };
    const { listSyncId, uncertainty } = await startLockedListSync(deps.db, listSyncStart(job, outcome.action));
    outcome.listSyncId = listSyncId;
    const work = await doListWork(deps, job, listSyncId, uncertainty, outcome, log);
    if (!work.finished) await finishList(deps.db, job, listSyncId, outcome);
    // Recorded first, then the whole run stops: retrying with refused credentials would only storm Criteo.
    if (stopsRun(work.error)) return { outcome, stop: work.error };
    // Statistics after any change, and at least daily for a live list, so the report never reads stale figures.
    if (work.touched || (outcome.action === 'sync' && outcome.status !== 'failed' && (await statisticsDue(deps.db, target.segmentId)))) {
      await readStatistics(deps, listSyncId, target.segmentId, outcome, log);
    }
    const { status, action, toAdd, toRemove, added, removed, emptied, reason } = outcome;
    log.info({ status, action, toAdd, toRemove, added, removed, emptied, reason }, 'list finished');
    return { outcome };
  } finally {
    await releaseListLock(lock, target.segmentId, held);
  }
}

/** Waits up to `waitSeconds` for the list's advisory lock on a dedicated connection (released with it). */
async function acquireListLock(lock: pg.PoolClient, waitSeconds: number, segmentId: string): Promise<boolean> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    if (await tryListLock(lock, segmentId)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(500, Math.max(1, deadline - Date.now())));
  }
}

async function skipLockedList(db: Db, job: ListJob, outcome: ListOutcome, log: Logger): Promise<ListOutcome> {
  const holder = await listSyncHolder(db, job.target.segmentId);
  outcome.status = 'skipped';
  outcome.reason = `list ${job.target.segmentId} is being synced by run ${holder ?? 'unknown'}`;
  outcome.listSyncId = await startListSync(db, listSyncStart(job, outcome.action));
  await finishListSync(db, outcome.listSyncId, 'skipped', { reason: outcome.reason });
  log.warn({ reason: outcome.reason }, 'list skipped');
  return outcome;
}

/** Records a list the run must not write to, and why; nothing is sent, and the ledger is untouched. */
async function refuseList(db: Db, job: ListJob, refusal: NonNullable<ListJob['refusal']>, outcome: ListOutcome, log: Logger): Promise<ListOutcome> {
  outcome.status = refusal.status;
  outcome.reason = refusal.reason;
  outcome.listSyncId = await startListSync(db, listSyncStart(job, outcome.action));
  await finishListSync(db, outcome.listSyncId, refusal.status, { reason: refusal.reason });
  log.warn({ reason: refusal.reason }, 'list refused');
  return outcome;
}

/** Empties or syncs the list; whatever stopped it, what Criteo confirmed goes into the ledger and the plan is dropped. */
async function doListWork(deps: SyncDeps, job: ListJob, listSyncId: number, uncertainty: Uncertainty, outcome: ListOutcome, log: Logger): Promise<ListWork> {
  const { db } = deps;
  const segmentId = job.target.segmentId;
  let work: ListWork;
  try {
    work =
      outcome.action === 'empty'
        ? { touched: await emptyList(deps, job, listSyncId, uncertainty.batchIds.length > 0, outcome, log) }
        : await syncMembers(deps, job, listSyncId, uncertainty, outcome, log);
  } catch (error) {
    work = { touched: false, error };
  }
  if (work.error !== undefined) {
    const verdict = classify(work.error);
    outcome.status = verdict.status;
    outcome.reason = verdict.reason;
    outcome.errorCode = verdict.problem?.code ?? null;
    outcome.traceId = verdict.problem?.traceId ?? null;
  }
  // A finished list did both already; if the database is gone, the next sync of the list does it before it plans or empties.
  if (outcome.status !== 'succeeded') {
    await applyConfirmedBatches(db, segmentId).catch(() => {});
    await discardPlan(db, listSyncId).catch(() => {});
  }
  return work;
}

/** Records the list sync's end: its reason, and the counts the ledger confirmed. */
async function finishList(db: Db, job: ListJob, listSyncId: number, outcome: ListOutcome): Promise<void> {
  outcome.reason = withDatesNote(outcome.reason, job.target);
  const counts = await finishListSync(db, listSyncId, outcome.status, {
    ...(outcome.reason ? { reason: outcome.reason } : {}),
    ...(outcome.errorCode ? { errorCode: outcome.errorCode } : {}),
    ...(outcome.traceId ? { traceId: outcome.traceId } : {}),
  });
  takeCounts(outcome, counts);
}

function takeCounts(outcome: ListOutcome, counts: ListSyncCounts | undefined): void {
  if (!counts) return;
  outcome.added = counts.added;
  outcome.removed = counts.removed;
  outcome.emptied = counts.emptied;
}

/** Plans the list, then sends the plan. */
async function syncMembers(deps: SyncDeps, job: ListJob, listSyncId: number, uncertainty: Uncertainty, outcome: ListOutcome, log: Logger): Promise<ListWork> {
  const { db } = deps;
  const plan = await inPlanSlot(deps, () => planList(deps, job, listSyncId, uncertainty, { record: true }));
  takePlan(outcome, plan);
  logPlan(log, plan, uncertainty);
  // A first fill of more than a batch: its claims read the new snapshot's identifier index (see vacuumSnapshot).
  if (plan.rangedAdds && plan.toAdd > deps.config.criteo.batchSize) {
    await inPlanSlot(deps, () => vacuumSnapshot(db, job.target.segmentId)).catch((error: unknown) =>
      log.warn({ reason: oneLine(error) }, 'the new snapshot was not vacuumed'),
    );
  }

  const ctx = sendContext(deps, job, plan, log);
  try {
    return await sendPlan(deps, ctx, job, listSyncId, plan, uncertainty, outcome);
  } finally {
    // Answers no statement carried (the list stopped before its settle): written now, or, with the database gone,
    // left uncertain for the next plan to re-send.
    await confirmAnswers(db, listSyncId, ctx.answers.splice(0)).catch(() => {});
  }
}

/** Sends the plan: adds before removes (a list never dips below its desired members mid-sync), then settles the list. */
async function sendPlan(
  deps: SyncDeps,
  ctx: SendContext,
  job: ListJob,
  listSyncId: number,
  plan: ListPlan,
  uncertainty: Uncertainty,
  outcome: ListOutcome,
): Promise<ListWork> {
  const segmentId = job.target.segmentId;
  const adds = await sendPlannedOperation(ctx, listSyncId, segmentId, 'add', plan.toAdd);
  let touched = adds.confirmedBatches > 0;
  if (adds.error) return { touched, error: adds.error };
  if (adds.interrupted) return interrupted(outcome, touched);
  if (plan.heldRemovals > 0) {
    outcome.status = 'held';
    outcome.reason = plan.heldReason;
    ctx.log.warn({ heldRemovals: plan.heldRemovals, ledgerBefore: plan.ledgerBefore }, 'removals held by the mass-removal guard');
    return { touched };
  }
  const removes = await sendPlannedOperation(ctx, listSyncId, segmentId, 'remove', plan.toRemove);
  touched ||= removes.confirmedBatches > 0;
  if (removes.error) return { touched, error: removes.error };
  if (removes.interrupted) return interrupted(outcome, touched);

  // Everything planned is confirmed: the last answers are written, older unsettled batches have been re-sent, the
  // ledger is in step, and the list sync ends, in one statement.
  const reason = withDatesNote(outcome.reason, job.target);
  const answers = ctx.answers.splice(0);
  // One statement that may move a whole list's identifiers into the ledger: it takes a plan slot, as a plan does.
  const counts = await inPlanSlot(deps, () =>
    settleInStep(ctx.db, segmentId, listSyncId, uncertainty.batchIds, reason ?? null, answers, { fill: plan.rangedAdds }),
  ).catch((error: unknown) => {
    ctx.answers.unshift(...answers);
    throw error;
  });
  outcome.status = 'succeeded';
  outcome.reason = reason;
  takeCounts(outcome, counts);
  return { touched, finished: true };
}

/** The plan's figures that the run's outcome reports. */
function takePlan(outcome: ListOutcome, plan: ListPlan): void {
  outcome.funnel = plan.funnel;
  outcome.campaignFunnels = plan.campaignFunnels;
  outcome.ledgerBefore = plan.ledgerBefore;
  outcome.toAdd = plan.toAdd;
  outcome.toRemove = plan.toRemove;
  outcome.heldRemovals = plan.heldRemovals;
  outcome.sourceRead = plan.sourceRead;
  outcome.wholeReadReason = plan.wholeReadReason;
  if (plan.checkBeside) outcome.checkBeside = plan.checkBeside;
  if (plan.newlyValidEmails !== null) outcome.newlyValidEmails = plan.newlyValidEmails;
}

function logPlan(log: Logger, plan: ListPlan, uncertainty: Uncertainty): void {
  log.info(
    {
      ...plan.funnel,
      ledgerBefore: plan.ledgerBefore,
      changedRows: plan.changedRows,
      sourceRead: plan.sourceRead,
      ...(plan.wholeReadReason ? { wholeReadReason: plan.wholeReadReason } : {}),
      ...(plan.checkBeside
        ? { checkBeside: plan.checkBeside.failed === null ? 'read beside the plan' : `failed, checked in the plan: ${plan.checkBeside.failed}` }
        : {}),
      ...(plan.newlyValidEmails !== null ? { newlyValidEmails: plan.newlyValidEmails } : {}),
      incremental: plan.incremental,
      toAdd: plan.toAdd,
      toRemove: plan.toRemove,
      heldRemovals: plan.heldRemovals,
      uncertainBatches: uncertainty.batchIds.length,
    },
    'list planned',
  );
}

/** How the list's batches are sent, with progress reported after each confirmed batch. */
function sendContext(deps: SyncDeps, job: ListJob, plan: ListPlan, log: Logger): SendContext {
  const segmentId = job.target.segmentId;
  const planned = plan.toAdd + (plan.heldRemovals > 0 ? 0 : plan.toRemove);
  let done = 0;
  job.options.onProgress?.({ segmentId, planned, done });
  return {
    db: deps.db,
    client: deps.client,
    log,
    batchSize: deps.config.criteo.batchSize,
    concurrency: deps.config.criteo.concurrency,
    signal: job.signal,
    seq: { next: 1 },
    answers: [],
    rangedAdds: plan.rangedAdds,
    onBatchConfirmed: (_op: 'add' | 'remove', size: number) => {
      done += size;
      job.options.onProgress?.({ segmentId, planned, done });
    },
  };
}

function interrupted(outcome: ListOutcome, touched: boolean): ListWork {
  outcome.status = 'incomplete';
  outcome.reason = INTERRUPTED_REASON;
  return { touched };
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

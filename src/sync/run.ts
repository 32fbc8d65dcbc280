import pLimit from 'p-limit';
import { oneLine } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { startRunHoldingItsLock } from '../db/locks.js';
import type { RunStatus } from '../db/schema.js';
import { assertMigrated } from '../db/migrate.js';
import { pruneChangeLog } from '../source/change-log.js';
import { discardRunChanges } from '../source/run-changes.js';
import { findListTargets, type ListTarget } from '../source/target-groups.js';
import { advertiserMismatch, findListOwners } from './advertisers.js';
import { bindNamedLists } from './bind-lists.js';
import { syncList } from './list.js';
import { actionOf, failedOutside, interruptedBeforeStart, notFedByAnyCampaign, stoppedReason, stopsRun, type RunStopper } from './outcome.js';
import { discardOrphanedPlans } from './plan.js';
import { inPlanSlot } from './plan-list.js';
import { finishQuietList, settleQuietLists } from './quiet-lists.js';
import { closeAbandonedRuns, finishRun } from './records.js';
import type { ListBinding, ListJob, ListOutcome, RunSummary, SyncDeps, SyncOptions } from './types.js';

export type { ListOutcome, ListProgress, PlannedList, PlanSummary, RunSummary, SyncDeps, SyncOptions } from './types.js';
export { planSync } from './dry-run.js';
export { planList, type ListPlan } from './plan-list.js';

/**
 * One pass over every list (or the chosen ones), per list under its advisory
 * lock: bring its snapshot up to the source and plan the diff against the
 * ledger, send adds then removes, or empty a list whose campaigns have all
 * ended; read the statistics of every list it touched. Lists run in parallel
 * (LIST_CONCURRENCY); the Criteo client bounds calls across all of them.
 */
export async function runSync(deps: SyncDeps, options: SyncOptions): Promise<RunSummary> {
  const { db } = deps;
  const started = new Date();
  const asOf = options.asOf ?? started;
  await assertMigrated(db);
  await closeAbandonedRuns(db);
  await discardOrphanedPlans(db);
  await discardRunChanges(db);
  // A process that runs on a schedule starts each run at the full rate, with no authentication hold.
  deps.client.beginRun();

  // The run's own liveness lock, taken with its row: a later run that can take it knows this one died.
  const runLock = await deps.locks.connect();
  const runId = await startRunHoldingItsLock(runLock, options.trigger, asOf, {
    segmentIds: options.segmentIds ?? null,
    full: options.full ?? false,
    allowMassRemoval: options.allowMassRemoval ?? false,
  }).catch((error: unknown) => {
    runLock.release(true);
    throw error;
  });
  const log = deps.log.child({ runId });
  let ending: RunEnding = { status: 'failed', error: null };
  const lists: ListOutcome[] = [];
  const bindings: ListBinding[] = [];
  try {
    options.onStarted?.(runId);
    log.info({ trigger: options.trigger, asOf: asOf.toISOString() }, 'run started');
    const pass = await syncLists(deps, runId, asOf, log, options);
    lists.push(...pass.lists);
    bindings.push(...pass.bindings);
    await pruneQuietly(deps, log);
    // Once a run: Criteo said the version is deprecated, and when it will stop answering.
    const sunset = deps.client.lifecycleWarning();
    if (sunset) log.warn({ apiVersion: deps.config.criteo.apiVersion }, sunset);
    ending = runEnding(pass, options);
  } catch (error) {
    ending = { status: 'failed', error: oneLine(error) };
    throw error;
  } finally {
    await finishRun(db, runId, ending.status, ending.error ?? undefined).catch(() => {});
    await discardRunChanges(db).catch(() => {});
    runLock.release(true); // closing the connection frees the advisory lock with it
    log.info({ status: ending.status, lists: lists.length }, 'run finished');
  }
  const finished = new Date();
  return {
    runId,
    trigger: options.trigger,
    status: ending.status,
    asOf: asOf.toISOString(),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    bindings,
    lists,
    error: ending.error,
  };
}

interface ListsPass {
  bindings: ListBinding[];
  lists: ListOutcome[];
  stop: RunStopper | undefined;
}

interface RunEnding {
  status: RunStatus;
  error: string | null;
}

/**
 * Binds the campaigns that name their list, then syncs every list of the run,
 * LIST_CONCURRENCY at a time. Refused credentials or a retired API version
 * stop the lists not yet started.
 */
async function syncLists(deps: SyncDeps, runId: number, asOf: Date, log: Logger, options: SyncOptions): Promise<ListsPass> {
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  // A stop asked for while the run was starting (a SIGTERM during a console resync's first statements) fires no event.
  if (options.signal?.aborted) onOuterAbort();
  try {
    return await syncListsUntil(deps, runId, asOf, log, options, abort);
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/** syncLists' pass over the lists, stopped by `abort`. */
async function syncListsUntil(deps: SyncDeps, runId: number, asOf: Date, log: Logger, options: SyncOptions, abort: AbortController): Promise<ListsPass> {
  let stop: RunStopper | undefined;
  const halt = (error: unknown) => {
    if (!stopsRun(error)) throw error;
    stop ??= error;
    abort.abort(error);
  };
  const bindings = await bindNamedLists(deps).catch((error: unknown) => (halt(error), [] as ListBinding[]));
  const unbound = bindings.filter((b) => b.segmentId === null).map((b) => b.campaignId);
  const targets = await findListTargets(deps.db, asOf, options.segmentIds, unbound);
  const unknown = (options.segmentIds ?? []).filter((id) => !targets.some((t) => t.segmentId === id));
  const owners = stop
    ? undefined
    : await findListOwners(deps.client, targets).catch((error: unknown) => (stopsRun(error) ? (halt(error), undefined) : oneLine(error)));

  // Lists nothing changed for are settled together first; the rest are planned one by one. A run asked to stop settles none.
  const quiet =
    stop || abort.signal.aborted
      ? new Map<string, ListOutcome>()
      : await inPlanSlot(deps, () =>
          settleQuietLists(
            deps,
            runId,
            targets.filter((t) => isQuietCandidate(t, owners)),
            options,
          ),
        );
  if (quiet.size > 0) log.info({ lists: quiet.size }, 'lists unchanged since their last sync: settled without a plan');

  const limit = pLimit(deps.config.listConcurrency);
  const one = async (target: ListTarget): Promise<ListOutcome> => {
    if (abort.signal.aborted) return interruptedBeforeStart(target, stoppedReason(stop));
    const settled = quiet.get(target.segmentId);
    if (settled) return finishQuietList(deps, settled, options, log);
    const refusal = refusalOf(target, owners);
    const result = await syncList(deps, { runId, asOf, target, signal: abort.signal, log, options, ...(refusal ? { refusal } : {}) });
    if (result.stop) halt(result.stop);
    return result.outcome;
  };
  const outcomes = await Promise.all(targets.map((target) => limit(() => one(target)).catch((error: unknown) => failedOutside(target, error))));
  return { bindings, lists: [...unknown.map(notFedByAnyCampaign), ...outcomes], stop };
}

/** A list the run may settle without a plan, if nothing changed for it: one it syncs (not empties) and may write to. */
function isQuietCandidate(target: ListTarget, owners: Map<string, string | null> | string | undefined): boolean {
  return actionOf(target) === 'sync' && refusalOf(target, owners) === undefined;
}

/** Why the list must not be written to in this run: its owner is another advertiser, or could not be learnt. */
function refusalOf(target: ListTarget, owners: Map<string, string | null> | string | undefined): ListJob['refusal'] {
  if (typeof owners === 'string') {
    return {
      status: 'incomplete',
      reason: `${owners} (so which advertiser owns list ${target.segmentId} is not known: nothing was sent, the next run retries)`,
    };
  }
  const mismatch = advertiserMismatch(target, owners?.get(target.segmentId));
  return mismatch ? { status: 'failed', reason: `list ${target.segmentId} ${mismatch}: nothing was sent to it` } : undefined;
}

/** Housekeeping: a failure here loses nothing (the rows stay for the next run), so it never fails the run. */
async function pruneQuietly(deps: SyncDeps, log: Logger): Promise<void> {
  await pruneChangeLog(deps.db).then(
    (pruned) => pruned > 0 && log.info({ pruned }, 'change log pruned'),
    (error: unknown) => log.warn({ error: oneLine(error) }, 'change log not pruned'),
  );
}

function runEnding(pass: ListsPass, options: SyncOptions): RunEnding {
  if (pass.stop) return { status: 'aborted', error: oneLine(pass.stop) };
  if (options.signal?.aborted) return { status: 'interrupted', error: 'interrupted by signal' };
  const failed =
    pass.bindings.some((b) => b.state === 'failed') || pass.lists.some((l) => l.status === 'failed' || l.status === 'incomplete' || l.status === 'held');
  return { status: failed ? 'failed' : 'succeeded', error: null };
}

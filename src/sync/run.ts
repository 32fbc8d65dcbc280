import pLimit from 'p-limit';
import { AuthenticationError, oneLine } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { holdRunLock } from '../db/locks.js';
import type { RunStatus } from '../db/schema.js';
import { assertMigrated } from '../db/migrate.js';
import { pruneChangeLog } from '../source/change-log.js';
import { findListTargets, type ListTarget } from '../source/target-groups.js';
import { advertiserMismatch, findListOwners } from './advertisers.js';
import { syncList } from './list.js';
import { failedOutside, interruptedBeforeStart, notFedByAnyCampaign } from './outcome.js';
import { discardOrphanedPlans } from './plan.js';
import { closeAbandonedRuns, finishRun, startRun } from './records.js';
import type { ListJob, ListOutcome, RunSummary, SyncDeps, SyncOptions } from './types.js';

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
  let ending: RunEnding = { status: 'failed', error: null };
  const lists: ListOutcome[] = [];
  try {
    await holdRunLock(runLock, runId);
    log.info({ trigger: options.trigger, asOf: asOf.toISOString() }, 'run started');
    const pass = await syncLists(deps, runId, asOf, log, options);
    lists.push(...pass.lists);
    await pruneQuietly(deps, log);
    ending = runEnding(pass, options);
  } catch (error) {
    ending = { status: 'failed', error: oneLine(error) };
    throw error;
  } finally {
    await finishRun(db, runId, ending.status, ending.error ?? undefined).catch(() => {});
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
    lists,
    error: ending.error,
  };
}

interface ListsPass {
  lists: ListOutcome[];
  authFailure: AuthenticationError | undefined;
}

interface RunEnding {
  status: RunStatus;
  error: string | null;
}

/** Every list of the run, LIST_CONCURRENCY at a time; an authentication failure stops the lists not yet started. */
async function syncLists(deps: SyncDeps, runId: number, asOf: Date, log: Logger, options: SyncOptions): Promise<ListsPass> {
  const targets = await findListTargets(deps.db, asOf, options.segmentIds);
  const unknown = (options.segmentIds ?? []).filter((id) => !targets.some((t) => t.segmentId === id));
  // An authentication failure stops every list: retrying would only storm Criteo.
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let authFailure: AuthenticationError | undefined;
  const owners = await findListOwners(deps.client, targets).catch((error: unknown) => {
    if (!(error instanceof AuthenticationError)) return oneLine(error);
    authFailure = error;
    abort.abort(error);
    return undefined;
  });

  const limit = pLimit(deps.config.listConcurrency);
  const one = async (target: ListTarget): Promise<ListOutcome> => {
    if (abort.signal.aborted) return interruptedBeforeStart(target, authFailure ? 'run aborted: authentication failed' : 'run interrupted');
    const refusal = refusalOf(target, owners);
    const result = await syncList(deps, { runId, asOf, target, signal: abort.signal, log, options, ...(refusal ? { refusal } : {}) });
    if (result.authFailure) {
      authFailure ??= result.authFailure;
      abort.abort(result.authFailure);
    }
    return result.outcome;
  };
  const outcomes = await Promise.all(targets.map((target) => limit(() => one(target)).catch((error: unknown) => failedOutside(target, error))));
  options.signal?.removeEventListener('abort', onOuterAbort);
  return { lists: [...unknown.map(notFedByAnyCampaign), ...outcomes], authFailure };
}

/** Why the list must not be written to in this run: its owner is another advertiser, or could not be learnt. */
function refusalOf(target: ListTarget, owners: Map<string, string | null> | string | undefined): ListJob['refusal'] {
  if (typeof owners === 'string') {
    return {
      status: 'incomplete',
      reason: `could not check which advertiser owns list ${target.segmentId} (${owners}); nothing was sent, the next run retries`,
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
  if (pass.authFailure) return { status: 'aborted', error: oneLine(pass.authFailure) };
  if (options.signal?.aborted) return { status: 'interrupted', error: 'interrupted by signal' };
  const failed = pass.lists.some((l) => l.status === 'failed' || l.status === 'incomplete' || l.status === 'held');
  return { status: failed ? 'failed' : 'succeeded', error: null };
}

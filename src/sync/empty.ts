import { CriteoError, TransientError, type CriteoProblem } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { callTrace } from '../criteo/client.js';
import { inPlanSlot } from './plan-list.js';
import { applyConfirmedBatches, applyConfirmedEmptying, countLedger, recordBatchFailure, recordEmptyingIntent } from './ledger.js';
import { recordListPlan } from './records.js';
import type { ListJob, ListOutcome, SyncDeps } from './types.js';

/**
 * Empties a list whose campaigns have all ended: one DELETE, written ahead
 * as a batch so that a run killed mid-call knows it may have been applied.
 * Returns whether Criteo was changed.
 */
export async function emptyList(
  deps: SyncDeps,
  job: ListJob,
  listSyncId: number,
  hasUncertainty: boolean,
  outcome: ListOutcome,
  log: Logger,
): Promise<boolean> {
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
    // The ledger's whole list deleted in one transaction: it takes a plan slot, as a plan does (SyncDeps.planSlots).
    await inPlanSlot(deps, () =>
      applyConfirmedEmptying(db, batchId, listSyncId, segmentId, {
        httpStatus: out.status,
        attempts: out.attempts,
        waitedMs: out.waitedMs,
        durationMs: out.durationMs,
      }),
    );
  } catch (error) {
    // Criteo's definite answers (refusals, a retired version) applied nothing; only a call left unanswered may have.
    const mayHaveApplied = callTrace(error)?.mayHaveApplied || (error instanceof TransientError ? error.mayHaveApplied : !(error instanceof CriteoError));
    await recordBatchFailure(db, batchId, mayHaveApplied, callTrace(error) ?? {}, (error as { problem?: CriteoProblem }).problem).catch(() => {});
    throw error;
  }
  outcome.status = 'succeeded';
  outcome.reason = 'measurement period ended; list emptied';
  log.info({ removed: ledgerBefore }, 'list emptied');
  return true;
}

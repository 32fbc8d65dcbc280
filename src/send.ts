import type { CriteoClient } from './criteo-client.js';
import { callTrace } from './criteo-client.js';
import type { Db } from './db.js';
import { TransientError } from './errors.js';
import { applyConfirmedAmendment, recordBatchFailure, recordBatchIntent } from './ledger.js';
import type { Logger } from './logger.js';
import { streamPlannedBatches, type PlannedBatch } from './plan.js';

/**
 * Streams one planned operation of a list to Criteo: batches of at most
 * `batchSize` identifiers, up to `prefetch` of them in flight (the client
 * bounds concurrency and rate across lists), each recorded before it leaves
 * and applied to the ledger as soon as Criteo confirms it. The first failure
 * stops new batches for this list; those in flight finish and are recorded.
 */

export interface SendContext {
  db: Db;
  client: CriteoClient;
  log: Logger;
  batchSize: number;
  prefetch: number;
  signal?: AbortSignal | undefined;
  /** Shared across the list's operations so batch numbers run on. */
  seq: { next: number };
  onBatchConfirmed?: (operation: 'add' | 'remove', size: number) => void;
}

export interface SendOutcome {
  confirmedBatches: number;
  confirmedIdentifiers: number;
  error?: unknown;
  interrupted: boolean;
}

export async function sendPlannedOperation(
  ctx: SendContext,
  listSyncId: number,
  segmentId: string,
  operation: 'add' | 'remove',
): Promise<SendOutcome> {
  const outcome: SendOutcome = { confirmedBatches: 0, confirmedIdentifiers: 0, interrupted: false };
  const inflight = new Set<Promise<void>>();

  const sendBatch = async ({ identifiers, after, last }: PlannedBatch, seq: number): Promise<void> => {
    const batchId = await recordBatchIntent(ctx.db, { listSyncId, segmentId, seq, operation, size: identifiers.length, after, last });
    try {
      const out = await ctx.client.amendContactList(segmentId, operation, identifiers);
      await applyConfirmedAmendment(ctx.db, batchId, listSyncId, segmentId, operation, { httpStatus: out.status, ...pickCall(out) }, out.body);
      outcome.confirmedBatches++;
      outcome.confirmedIdentifiers += identifiers.length;
      ctx.onBatchConfirmed?.(operation, identifiers.length);
      if ((out.body.nbInvalidIdentifiers ?? 0) > 0) {
        ctx.log.warn({ batch: seq, operation, nbInvalid: out.body.nbInvalidIdentifiers }, 'criteo counted invalid identifiers in a batch');
      }
    } catch (error) {
      outcome.error ??= error;
      // An earlier attempt of the same call may have gone through even if the last answer was a refusal.
      const mayHaveApplied = callTrace(error)?.mayHaveApplied || (error instanceof TransientError ? error.mayHaveApplied : !isCriteoVerdict(error));
      // A failure to record the failure (database gone) leaves the batch 'sending': still uncertain, still safe.
      await recordBatchFailure(ctx.db, batchId, mayHaveApplied, callTrace(error) ?? {}, problemOf(error)).catch(() => {});
    }
  };

  try {
    for await (const batch of streamPlannedBatches(ctx.db, listSyncId, operation, ctx.batchSize)) {
      if (outcome.error) break;
      if (ctx.signal?.aborted) {
        outcome.interrupted = true;
        break;
      }
      // A batch row the database refuses stops the list like any failure, not the loop: the batches in flight are still awaited.
      const p: Promise<void> = sendBatch(batch, ctx.seq.next++).catch((error: unknown) => void (outcome.error ??= error)).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= ctx.prefetch) await Promise.race(inflight);
    }
  } catch (error) {
    // Reading the plan failed (the database went away): the list stops here.
    outcome.error ??= error;
  } finally {
    // Never return while a request is on its way: the list's lock must outlive every write.
    await Promise.allSettled(inflight);
  }
  return outcome;
}

function pickCall(out: { attempts: number; waitedMs: number; durationMs: number }) {
  return { attempts: out.attempts, waitedMs: out.waitedMs, durationMs: out.durationMs };
}

/** Criteo answered with a definite status (a refusal): it did not apply the request. */
function isCriteoVerdict(error: unknown): boolean {
  return problemOf(error) !== undefined;
}

function problemOf(error: unknown) {
  return (error as { problem?: import('./errors.js').CriteoProblem }).problem;
}

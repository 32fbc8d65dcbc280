import type { CriteoClient } from '../criteo/client.js';
import { callTrace } from '../criteo/client.js';
import type { Db } from '../db/connection.js';
import { TransientError, type CriteoProblem } from '../core/errors.js';
import pLimit from 'p-limit';
import { claimBatch, withdrawBatch, type ClaimedBatch, type PlannedBatch } from './claim.js';
import { confirmAnswers, recordBatchFailure, type BatchAnswer } from './ledger.js';
import type { Logger } from '../core/logger.js';

/**
 * Sends one planned operation of a list to Criteo: the plan's numbered
 * batches of at most `batchSize` identifiers, up to `concurrency` of them in
 * flight and one more claimed ahead (the client bounds concurrency and rate
 * across lists), each claimed and written ahead in one statement before it
 * leaves. An answer to the operation's last batches rides on the list's
 * next statement (the next operation's first claim, or the settle: see
 * BatchAnswer), so a small list's sync writes three statements, not five;
 * the ledger takes confirmed batches once per list (see
 * applyConfirmedBatches). The first failure stops new batches for
 * this list; those in flight finish and are recorded.
 */

export interface SendContext {
  db: Db;
  client: CriteoClient;
  log: Logger;
  batchSize: number;
  /** Requests of this list in flight at once; one more batch than this is claimed ahead. */
  concurrency: number;
  signal?: AbortSignal | undefined;
  /** Shared across the list's operations so batch numbers run on. */
  seq: { next: number };
  /** Criteo's answers not yet written, shared across the list's operations: each claim carries those there are. */
  answers: BatchAnswer[];
  /** The plan's adds are ranges of the list's snapshot (a first fill: see planFill). */
  rangedAdds: boolean;
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
  planned: number,
): Promise<SendOutcome> {
  const outcome: SendOutcome = { confirmedBatches: 0, confirmedIdentifiers: 0, interrupted: false };
  const inflight = new Set<Promise<void>>();

  // Batches are claimed one ahead of what Criteo takes at once; a claimed batch waits here for its turn to be sent.
  const sending = pLimit(ctx.concurrency);
  // Claims run side by side, but batches queue for sending in batch order, whichever claim returns first.
  let claimedInOrder: Promise<unknown> = Promise.resolve();
  let claiming = true; // until the last batch is claimed (see keepAnswer)
  // A first fill of several batches writes each answer at once, and its identifiers into the ledger (confirmAnswers).
  const fillsLedger = ctx.rangedAdds && operation === 'add' && planned > ctx.batchSize;

  const sendBatch = async (batchNo: number, seq: number): Promise<void> => {
    const claim = claimCarrying(ctx, { listSyncId, segmentId, seq, operation, batchNo, ranged: ctx.rangedAdds && operation === 'add' });
    const turn = claimedInOrder.then(() => claim);
    claimedInOrder = turn.catch(() => {});
    const batch = await turn;
    if (!batch) throw new Error(`plan batch ${batchNo} of ${operation} is gone or changed: the plan or the snapshot changed under the list sync`);
    await sendClaimed(batch, seq);
  };

  const sendClaimed = async (batch: ClaimedBatch, seq: number): Promise<void> => {
    // The request holds a place; its answer is written after, so that a slow write does not hold the next one back.
    const sent = await sending(() => (outcome.error || ctx.signal?.aborted ? null : request(ctx, segmentId, operation, batch, outcome)));
    // The list stopped while this batch waited: it never left, so its claim is withdrawn, and the list is not done.
    if (!sent) {
      outcome.interrupted ||= !outcome.error;
      await withdrawBatch(ctx.db, batch.batchId);
      return;
    }
    try {
      if ('error' in sent) throw sent.error;
      await keepAnswer(ctx, listSyncId, answerOf(batch, operation, sent.out), { now: claiming || fillsLedger, intoLedger: fillsLedger });
      outcome.confirmedBatches++;
      outcome.confirmedIdentifiers += batch.size;
      ctx.onBatchConfirmed?.(operation, batch.size);
      warnOfInvalid(ctx.log, seq, operation, sent.out.body.nbInvalidIdentifiers ?? 0);
    } catch (error) {
      outcome.error ??= error;
      await recordFailure(ctx, batch.batchId, error);
    }
  };

  try {
    const batches = Math.ceil(planned / ctx.batchSize);
    for (let batchNo = 0; batchNo < batches; batchNo++) {
      if (outcome.error || ctx.signal?.aborted) {
        if (!outcome.error) outcome.interrupted = true;
        break;
      }
      // A batch row the database refuses stops the list like any failure, not the loop: the batches in flight are still awaited.
      const p: Promise<void> = sendBatch(batchNo, ctx.seq.next++)
        .catch((error: unknown) => void (outcome.error ??= error))
        .finally(() => inflight.delete(p));
      inflight.add(p);
      if (batchNo === batches - 1) claiming = false;
      if (inflight.size > ctx.concurrency) await Promise.race(inflight);
    }
  } finally {
    claiming = false;
    // Never return while a request is on its way: the list's lock must outlive every write.
    await Promise.allSettled(inflight);
  }
  return outcome;
}

/**
 * Criteo's answer. While the operation still claims batches, it is written
 * at once: a claim carrying it would update the list sync's row (its
 * counts) and hold it to its commit, and the claims beside it carrying
 * answers too would queue for it; so is a fill's, with its identifiers into
 * the ledger (`intoLedger`). Otherwise, once the last batch is claimed, it
 * waits for the list's next statement: the next operation's first claim,
 * made alone, or the settle. Stamped with the time it arrived, which its
 * batch records as its end.
 */
async function keepAnswer(
  ctx: SendContext,
  listSyncId: number,
  answer: Omit<BatchAnswer, 'answeredAt'>,
  { now, intoLedger }: { now: boolean; intoLedger: boolean },
): Promise<void> {
  const stamped = { ...answer, answeredAt: new Date() };
  if (now) await confirmAnswers(ctx.db, listSyncId, [stamped], { intoLedger });
  else ctx.answers.push(stamped);
}

/** Criteo's answer to a batch, as the ledger records it. */
function answerOf(batch: ClaimedBatch, operation: 'add' | 'remove', out: Awaited<ReturnType<CriteoClient['amendContactList']>>) {
  return { batchId: batch.batchId, operation, size: batch.size, call: { httpStatus: out.status, ...pickCall(out) }, result: out.body };
}

/** Criteo counted identifiers of a batch invalid: worth a word, never an identifier. */
function warnOfInvalid(log: Logger, seq: number, operation: 'add' | 'remove', nbInvalid: number): void {
  if (nbInvalid > 0) log.warn({ batch: seq, operation, nbInvalid }, 'criteo counted invalid identifiers in a batch');
}

/**
 * The batch's request, its failure kept as a value for the sender to record,
 * and set on the outcome before the request's place frees: no batch waiting
 * for the place leaves after it.
 */
function request(ctx: SendContext, segmentId: string, operation: 'add' | 'remove', batch: ClaimedBatch, outcome: SendOutcome) {
  return ctx.client.amendContactList(segmentId, operation, batch.encoded).then(
    (out) => ({ out }),
    (error: unknown) => {
      outcome.error ??= error;
      return { error };
    },
  );
}

/**
 * Claims a plan batch with the list's answers not yet written. A refused
 * claim wrote none of them: they wait for the next statement. (Its refusal
 * is reported through the batch's turn, not as an unhandled rejection.)
 */
function claimCarrying(ctx: SendContext, batch: PlannedBatch): Promise<ClaimedBatch | null> {
  const carried = ctx.answers.splice(0);
  const claim = claimBatch(ctx.db, batch, carried);
  claim.catch(() => void ctx.answers.unshift(...carried));
  return claim;
}

/** The batch's request failed: recorded 'unknown' if it may have applied, else 'failed'. */
async function recordFailure(ctx: SendContext, batchId: number, error: unknown): Promise<void> {
  // An earlier attempt of the same call may have gone through even if the last answer was a refusal.
  const mayHaveApplied = callTrace(error)?.mayHaveApplied || (error instanceof TransientError ? error.mayHaveApplied : !isCriteoVerdict(error));
  // A failure to record the failure (database gone) leaves the batch 'sending': still uncertain, still safe.
  await recordBatchFailure(ctx.db, batchId, mayHaveApplied, callTrace(error) ?? {}, problemOf(error)).catch(() => {});
}

function pickCall(out: { attempts: number; waitedMs: number; durationMs: number }) {
  return { attempts: out.attempts, waitedMs: out.waitedMs, durationMs: out.durationMs };
}

/** Criteo answered with a definite status (a refusal): it did not apply the request. */
function isCriteoVerdict(error: unknown): boolean {
  return problemOf(error) !== undefined;
}

function problemOf(error: unknown) {
  return (error as { problem?: CriteoProblem }).problem;
}

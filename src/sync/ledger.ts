import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import type { AmendmentResult } from '../criteo/client.js';
import type { CriteoProblem } from '../core/errors.js';
import { droppingPlan, type Uncertainty } from './plan.js';
import { forgetSnapshot } from '../source/snapshot.js';

/**
 * The ledger (list_members) and the batches that change it. The write-ahead
 * rule: a batch row with its identifiers is committed before its request
 * leaves; Criteo's confirmation, written with the list's next statement
 * (see BatchAnswer), settles it ('confirmed', identifiers kept), and the
 * ledger takes confirmed batches in one sorted write per list
 * (applyConfirmedBatches), which every list sync also does before it plans.
 * So what a list holds is list_members plus its confirmed batches that still
 * hold identifiers; a crash before the confirmation leaves an unsettled
 * batch, which the next plan treats as uncertain and re-sends.
 */

export async function countLedger(db: Db, segmentId: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::bigint AS n FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`.execute(db);
  return rows[0]!.n;
}

/**
 * Unsettled batches of a list: sent, and Criteo's answer never recorded;
 * and whether confirmed batches wait to be moved into the ledger (a sync
 * stopped before it settled), which its plan then applies first.
 */
export async function findUncertainty(db: Db, segmentId: string): Promise<Uncertainty> {
  const { rows } = await sql<UncertainBatch>`${uncertainBatches(segmentId)}`.execute(db);
  return uncertaintyOf(rows);
}

/** A batch findUncertainty weighs. */
export interface UncertainBatch {
  batch_id: number;
  operation: string;
  status: string;
}

/** SQL: the list's unsettled batches, and its confirmed ones the ledger has not taken. */
export const uncertainBatches = (segmentId: string) => sql<UncertainBatch>`
  SELECT batch_id, operation, status FROM audience_sync.batches
  WHERE audience_segment_id = ${segmentId}::bigint
    AND (status IN ('sending', 'unknown') OR (status = 'confirmed' AND payload IS NOT NULL))`;

/** The uncertainty those batches make. */
export function uncertaintyOf(rows: readonly UncertainBatch[]): Uncertainty {
  const unsettled = rows.filter((r) => r.status !== 'confirmed');
  return {
    batchIds: unsettled.map((r) => r.batch_id),
    wholeList: unsettled.some((r) => r.operation === 'delete'),
    unapplied: unsettled.length < rows.length,
  };
}

export interface BatchCall {
  httpStatus: number;
  attempts: number;
  waitedMs: number;
  durationMs: number;
}

/**
 * Criteo's answer to a batch. Written at once while its operation still
 * claims batches (confirmAnswers); after the operation's last claim, it
 * rides on the list's next statement: the next operation's first claim, or
 * the settle (settleInStep); a list that stops before either writes what it
 * holds (confirmAnswers). Until it is written the batch is 'sending',
 * uncertain, as when a process dies between the answer and its record: the
 * next plan re-sends it.
 */
export interface BatchAnswer {
  batchId: number;
  operation: 'add' | 'remove';
  size: number;
  call: BatchCall;
  result: AmendmentResult;
  answeredAt: Date;
}

/**
 * SQL, a statement's part: the answered batches settled, 'confirmed'. Each
 * keeps its identifiers until applyConfirmedBatches moves them into the
 * ledger, once per list in one sorted statement rather than one random-key
 * write per batch; until then the ledger is the list_members rows plus these
 * batches. `dropPayload`: the same statement moves them (settleInStep).
 */
export function confirming(answers: readonly BatchAnswer[], { dropPayload = false }: { dropPayload?: boolean } = {}) {
  const rows = answers.map((a) => ({
    batch_id: a.batchId,
    http_status: a.call.httpStatus,
    attempts: a.call.attempts,
    waited_ms: Math.round(a.call.waitedMs),
    duration_ms: Math.round(a.call.durationMs),
    nb_valid: a.result.nbValidIdentifiers,
    nb_invalid: a.result.nbInvalidIdentifiers,
    sample_invalid: a.result.sampleInvalidIdentifiers.slice(0, 10),
    finished_at: a.answeredAt.toISOString(),
  }));
  return sql`
    UPDATE audience_sync.batches b SET
      status = 'confirmed', http_status = a.http_status, attempts = a.attempts, waited_ms = a.waited_ms,
      duration_ms = a.duration_ms, nb_valid = a.nb_valid, nb_invalid = a.nb_invalid, sample_invalid = a.sample_invalid,
      finished_at = a.finished_at ${dropPayload ? sql`, payload = NULL` : sql``}
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS a (batch_id bigint, http_status integer, attempts integer,
      waited_ms integer, duration_ms integer, nb_valid integer, nb_invalid integer, sample_invalid text[], finished_at timestamptz)
    WHERE b.batch_id = a.batch_id
    RETURNING 1`;
}

/** The identifiers the answers confirm added and removed. */
function answeredSizes(answers: readonly BatchAnswer[]): { added: number; removed: number } {
  const sum = (operation: 'add' | 'remove') => answers.reduce((n, a) => n + (a.operation === operation ? a.size : 0), 0);
  return { added: sum('add'), removed: sum('remove') };
}

/** SQL, a statement's part: the list sync's counts of confirmed identifiers moved by the answers. */
export function counting(listSyncId: number, answers: readonly BatchAnswer[]) {
  const { added, removed } = answeredSizes(answers);
  return sql`
    UPDATE audience_sync.list_syncs SET added = added + ${added}, removed = removed + ${removed}
    WHERE list_sync_id = ${listSyncId} RETURNING 1`;
}

/**
 * Writes answers in a statement of their own: one while its operation still
 * claims, or those the list holds when it stops. `intoLedger`: the answers
 * are a first fill's adds (disjoint ranges of distinct identifiers, into a
 * ledger that was empty when the list planned, its lock held since), and
 * the ledger takes their identifiers in the same statement: appended,
 * with no probe, while the rest of the fill is still being sent.
 */
export async function confirmAnswers(db: Db, listSyncId: number, answers: readonly BatchAnswer[], { intoLedger = false } = {}): Promise<void> {
  if (answers.length === 0) return;
  if (intoLedger && answers.some((a) => a.operation !== 'add'))
    throw new Error("confirmAnswers: only a first fill's adds go into the ledger as they are answered");
  const ids = answers.map((a) => a.batchId);
  if (!intoLedger) {
    await sql`WITH confirmed AS (${confirming(answers)}) ${counting(listSyncId, answers)}`.execute(db);
    return;
  }
  // The append is the statement, its parts after it. Postgres's executor runs a WITH's unread writes once the
  // statement's own is done (its documentation leaves the order open), so the list sync's row, which every
  // confirmation of the fill updates, is locked from then to the commit, not through the append; only how long the
  // fill's confirmations wait for each other depends on that order, not what they write. Every part reads the
  // batches as they were before the statement: the payloads the confirmation drops are appended.
  await sql`
    WITH confirmed AS (${confirming(answers, { dropPayload: true })}), counted AS (${counting(listSyncId, answers)})
    INSERT INTO audience_sync.list_members (audience_segment_id, identifier)
    SELECT b.audience_segment_id, unnest(b.payload) FROM (
      SELECT audience_segment_id, payload FROM audience_sync.batches
      WHERE batch_id = ANY(${ids}::bigint[]) AND payload IS NOT NULL ORDER BY seq
    ) b`.execute(db);
}

/**
 * Moves every confirmed batch of a list that still holds its identifiers
 * into the ledger: list sync by list sync, older first (a list sync's adds
 * and removes never share an identifier), each in one statement.
 */
export async function applyConfirmedBatches(db: Db, segmentId: string): Promise<number> {
  const { rows: syncs } = await sql<{ list_sync_id: number }>`
    SELECT DISTINCT list_sync_id FROM audience_sync.batches
    WHERE audience_segment_id = ${segmentId}::bigint AND status = 'confirmed' AND payload IS NOT NULL
    ORDER BY list_sync_id`.execute(db);
  let applied = 0;
  for (const { list_sync_id: listSyncId } of syncs) {
    const { rows } = await sql<{ applied: number }>`${applyingListSync(segmentId, listSyncId)} SELECT ${appliedCount} AS applied`.execute(db);
    applied += rows[0]!.applied;
  }
  return applied;
}

/**
 * A statement's data-changing part: the list sync's confirmed adds inserted
 * in identifier order and its removes deleted (`added` and `removed` count
 * them), and their payloads dropped: the ledger holds what they said.
 * `fill`: the list sync was a first fill (see planFill), settled whole.
 */
function applyingListSync(segmentId: string, listSyncId: number, answered: readonly number[] = [], { fill = false }: { fill?: boolean } = {}) {
  // The statement's own answers (settleInStep) are confirmed beside this part: it reads them as they were, 'sending'.
  const pending = (operation: 'add' | 'remove') => sql`
    SELECT seq, payload FROM audience_sync.batches
    WHERE list_sync_id = ${listSyncId} AND audience_segment_id = ${segmentId}::bigint AND operation = ${operation}
      AND (status = 'confirmed' OR batch_id = ANY(${answered}::bigint[])) AND payload IS NOT NULL`;
  const added = fill
    ? // A first fill's batches are disjoint ranges of distinct identifiers, each claimed in order (pickedRange), and the
      // list's ledger was empty when it planned, its lock held since: appended batch by batch, with no probe of the
      // ledger and no sort of the list. Were it not so, the primary key would refuse the statement, and the batches
      // would stay confirmed for the next sync, which is no fill (RELIABILITY, point 14).
      sql`
      INSERT INTO audience_sync.list_members (audience_segment_id, identifier)
      SELECT ${segmentId}::bigint, unnest(b.payload) FROM (${pending('add')} ORDER BY seq) b
      RETURNING 1`
    : // An anti-join, not ON CONFLICT: its speculative insertion costs three times the insert. The list's lock keeps
      // any other sync from writing these rows meanwhile; a re-sent identifier the ledger holds already is skipped.
      sql`
      INSERT INTO audience_sync.list_members (audience_segment_id, identifier)
      SELECT DISTINCT ${segmentId}::bigint, p.identifier FROM (SELECT unnest(b.payload) AS identifier FROM (${pending('add')}) b) p
      WHERE NOT EXISTS (SELECT 1 FROM audience_sync.list_members m
                        WHERE m.audience_segment_id = ${segmentId}::bigint AND m.identifier = p.identifier)
      ORDER BY p.identifier
      RETURNING 1`;
  return sql`
    WITH added AS (${added}),
    removed AS (
      DELETE FROM audience_sync.list_members
      WHERE audience_segment_id = ${segmentId}::bigint AND identifier IN (SELECT unnest(b.payload) FROM (${pending('remove')}) b) RETURNING 1
    ),
    dropped AS (
      UPDATE audience_sync.batches SET payload = NULL
      WHERE list_sync_id = ${listSyncId} AND audience_segment_id = ${segmentId}::bigint AND status = 'confirmed' AND payload IS NOT NULL
        AND batch_id <> ALL(${answered}::bigint[])
      RETURNING 1
    )`;
}

const appliedCount = sql`((SELECT count(*) FROM added) + (SELECT count(*) FROM removed))::int`;

/**
 * Everything a list sync planned is confirmed, in one statement: the last
 * answers are written, the ledger takes its confirmed batches (older list
 * syncs' were taken before it planned, and none has been confirmed since:
 * the list's lock is held),
 * older unsettled batches are superseded (this sync re-sent their work), the
 * ledger is in step with the snapshot again, the sync's plan is dropped, and
 * the list sync ends 'succeeded' with `reason`. Returns what the ledger
 * confirmed for it (none: no such list sync).
 */
export async function settleInStep(
  db: Db,
  segmentId: string,
  listSyncId: number,
  supersededBatchIds: readonly number[],
  reason: string | null,
  answers: readonly BatchAnswer[] = [],
  { fill = false }: { fill?: boolean } = {},
): Promise<ListSyncCounts | undefined> {
  const { added, removed } = answeredSizes(answers);
  const { rows } = await sql<ListSyncCounts>`
    ${applyingListSync(
      segmentId,
      listSyncId,
      answers.map((a) => a.batchId),
      { fill },
    )},
    confirmed AS (${answers.length > 0 ? confirming(answers, { dropPayload: true }) : sql`SELECT 1`}),
    superseded AS (
      UPDATE audience_sync.batches SET status = 'superseded', payload = NULL
      WHERE batch_id = ANY(${supersededBatchIds}::bigint[]) AND status IN ('sending', 'unknown') RETURNING 1
    ),
    in_step AS (
      UPDATE audience_sync.lists SET in_step = true, updated_at = now() WHERE audience_segment_id = ${segmentId}::bigint RETURNING 1
    ),
    ${droppingPlan(listSyncId)},
    finished AS (
      UPDATE audience_sync.list_syncs SET status = 'succeeded', finished_at = now(), reason = ${reason}, error_code = NULL, trace_id = NULL,
        added = added + ${added}, removed = removed + ${removed}
      WHERE list_sync_id = ${listSyncId} RETURNING added, removed, emptied
    )
    SELECT f.added, f.removed, f.emptied, ${appliedCount} AS applied FROM finished f`.execute(db);
  return rows[0];
}

/** What the ledger confirmed for a list sync: identifiers added and removed, and whether the list was emptied. */
export interface ListSyncCounts {
  added: number;
  removed: number;
  emptied: boolean;
}

/** Criteo confirmed the DELETE: the list is empty, so is the ledger, and nothing is uncertain any more. */
export async function applyConfirmedEmptying(db: Db, batchId: number, listSyncId: number, segmentId: string, call: BatchCall): Promise<number> {
  return db.transaction().execute(async (tx) => {
    const removed = await sql`DELETE FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`.execute(tx);
    await sql`
      UPDATE audience_sync.batches SET status = 'superseded', payload = NULL
      WHERE audience_segment_id = ${segmentId}::bigint AND status IN ('sending', 'unknown') AND batch_id <> ${batchId}`.execute(tx);
    await sql`
      UPDATE audience_sync.batches SET status = 'confirmed', payload = NULL, http_status = ${call.httpStatus},
        attempts = ${call.attempts}, waited_ms = ${call.waitedMs}, duration_ms = ${call.durationMs}, finished_at = now()
      WHERE batch_id = ${batchId}`.execute(tx);
    await sql`
      UPDATE audience_sync.batches SET payload = NULL
      WHERE audience_segment_id = ${segmentId}::bigint AND status = 'confirmed' AND payload IS NOT NULL`.execute(tx);
    await forgetSnapshot(tx, segmentId);
    const n = Number(removed.numAffectedRows ?? 0);
    await sql`UPDATE audience_sync.list_syncs SET removed = removed + ${n}, emptied = true WHERE list_sync_id = ${listSyncId}`.execute(tx);
    return n;
  });
}

/**
 * The request failed. `mayHaveApplied` keeps the identifiers (status
 * 'unknown') for the next plan; otherwise Criteo certainly did nothing and
 * the batch is closed as 'failed'.
 */
export async function recordBatchFailure(
  db: Db,
  batchId: number,
  mayHaveApplied: boolean,
  call: Partial<BatchCall>,
  problem: CriteoProblem | undefined,
): Promise<void> {
  await sql`
    UPDATE audience_sync.batches SET
      status = ${mayHaveApplied ? 'unknown' : 'failed'},
      payload = CASE WHEN ${mayHaveApplied}::boolean THEN payload END,
      http_status = ${problem?.status ?? null}, attempts = ${call.attempts ?? 0}, waited_ms = ${call.waitedMs ?? 0},
      duration_ms = ${call.durationMs ?? null}, error_code = ${problem?.code ?? null},
      error_title = ${problem?.title ?? null}, trace_id = ${problem?.traceId ?? null}, finished_at = now()
    WHERE batch_id = ${batchId}`.execute(db);
}

/** Write-ahead for a DELETE: if no answer is recorded, the next plan distrusts the whole ledger. */
export async function recordEmptyingIntent(db: Db, listSyncId: number, segmentId: string, ledgerSize: number): Promise<number> {
  const row = await db
    .insertInto('audience_sync.batches')
    .values({ list_sync_id: listSyncId, audience_segment_id: segmentId, seq: 1, operation: 'delete', size: ledgerSize })
    .returning('batch_id')
    .executeTakeFirstOrThrow();
  return row.batch_id;
}

import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connection.js';
import type { EncodedIdentifiers } from '../criteo/client.js';
import { confirming, counting, type BatchAnswer } from './ledger.js';

/**
 * Claiming a plan batch: the write-ahead of a request. The batch row, with
 * the identifiers the request carries, is committed before the request
 * leaves (see ledger.ts for what settles it).
 */

/** A claimed batch: its row, and its identifiers as the JSON array of 64-hex strings the request body carries. */
export interface ClaimedBatch {
  batchId: number;
  size: number;
  encoded: EncodedIdentifiers;
}

/** A plan batch to claim; `ranged`: a range of the snapshot's identifiers (plan_ranges), not plan_entries rows. */
export interface PlannedBatch {
  listSyncId: number;
  segmentId: string;
  seq: number;
  operation: 'add' | 'remove';
  batchNo: number;
  ranged: boolean;
}

/**
 * Write-ahead, in one statement: the batch row is written with the
 * identifiers of its plan batch, and they come back as the request body
 * needs them: the JSON array, in parts of a thousand identifiers that
 * Postgres formats and the request sends as they are (fifty buffers of
 * 67 kB, not fifty thousand strings nor one buffer of megabytes). Null when
 * the plan batch is empty, or, for a range, gone or not the size planned.
 */
export async function claimBatch(db: Db, batch: PlannedBatch, answers: readonly BatchAnswer[] = []): Promise<ClaimedBatch | null> {
  const { rows } = await sql<{ batch_id: number; size: number; part: string }>`
    WITH ${answers.length > 0 ? sql`confirmed AS (${confirming(answers)}), counted AS (${counting(batch.listSyncId, answers)}),` : sql``}
    picked AS (${batch.ranged ? pickedRange(batch) : pickedEntries(batch)}),
    claimed AS (
      INSERT INTO audience_sync.batches (list_sync_id, audience_segment_id, seq, operation, size, payload)
      SELECT ${batch.listSyncId}, ${batch.segmentId}::bigint, ${batch.seq}, ${batch.operation}, count(*), array_agg(identifier)
      FROM picked HAVING ${batch.ranged ? sql`count(*) = (${plannedRange(batch, sql`r.size`)})` : sql`count(*) > 0`}
      RETURNING batch_id, size, payload
    )
    -- The payload as it was written, as the JSON strings of a thousand identifiers a row (their order within the
    -- batch is of no matter): the first part opens the array, the last closes it. One pass over the array.
    SELECT c.batch_id, c.size,
      CASE WHEN u.part = 0 THEN '["' ELSE ',"' END
        || string_agg(encode(u.identifier, 'hex'), '","')
        || CASE WHEN u.part = (c.size - 1) / ${CLAIM_PART} THEN '"]' ELSE '"' END AS part
    FROM claimed c, LATERAL (
      SELECT (o - 1) / ${CLAIM_PART} AS part, x AS identifier FROM unnest(c.payload) WITH ORDINALITY AS e (x, o)
    ) u
    GROUP BY c.batch_id, c.size, u.part
    ORDER BY u.part`.execute(db);
  const first = rows[0];
  return first
    ? {
        batchId: first.batch_id,
        size: first.size,
        encoded: jsonArrayParts(
          rows.map((r) => r.part),
          first.size,
        ),
      }
    : null;
}

/** SQL: a plan batch's identifiers, as plan_entries holds them. */
function pickedEntries(batch: PlannedBatch) {
  return sql`
    SELECT p.identifier FROM audience_sync.plan_entries p
    WHERE p.list_sync_id = ${batch.listSyncId} AND p.operation = ${batch.operation} AND p.batch_no = ${batch.batchNo}`;
}

/** SQL: `column` of a ranged plan batch's row. */
function plannedRange(batch: PlannedBatch, column: RawBuilder<unknown>) {
  return sql`SELECT ${column} FROM audience_sync.plan_ranges r WHERE r.list_sync_id = ${batch.listSyncId} AND r.batch_no = ${batch.batchNo}`;
}

/**
 * SQL: a ranged plan batch's identifiers, read back from the list's snapshot
 * by its identifier index: the distinct identifiers from the range's first
 * to its last. Only the list's own plan writes the snapshot, under the
 * list's lock, which the sender holds, so the range holds what was planned;
 * a crash empties the snapshot and the range with it (see RELIABILITY).
 */
function pickedRange(batch: PlannedBatch) {
  // The bounds as scalar subqueries, not a join: the index's own scan then returns the range in order, deduplicated
  // as it comes (a join's output has no order the planner knows, so it would hash the identifiers, then sort them).
  return sql`
    SELECT DISTINCT t.identifier FROM audience_sync.list_targets t
    WHERE t.audience_segment_id = ${batch.segmentId}::bigint AND t.identifier IS NOT NULL
      AND t.identifier BETWEEN (${plannedRange(batch, sql`r.first_identifier`)}) AND (${plannedRange(batch, sql`r.last_identifier`)})
    -- In order: the payload is sorted, and the ledger appends a fill's batches in turn (applyingListSync).
    ORDER BY t.identifier`;
}

/** A claimed batch that never left (its list stopped first): no request, so no record. */
export async function withdrawBatch(db: Db, batchId: number): Promise<void> {
  await sql`DELETE FROM audience_sync.batches WHERE batch_id = ${batchId} AND status = 'sending'`.execute(db);
}

/** One part of a claim's answer: the array's opening or a comma, 64-hex JSON strings, and the closing bracket on the last. */
const JSON_PART = /^[[,]"[0-9a-f]{64}"(?:,"[0-9a-f]{64}")*\]?$/;

/** Characters of one identifier in a part: its quoted 64 hex digits and the comma or bracket before it. */
const JSON_IDENTIFIER = 67;

/**
 * The parts as the request's buffers, each checked to hold nothing but
 * 64-hex strings (whatever the database returned, no other text leaves),
 * and together exactly the batch's identifiers in one array.
 */
function jsonArrayParts(parts: readonly string[], size: number): EncodedIdentifiers {
  const chunks: Buffer[] = [];
  let length = 0;
  let n = 0;
  parts.forEach((part, i) => {
    const last = i === parts.length - 1;
    if (!JSON_PART.test(part) || part.startsWith('[') !== (i === 0) || part.endsWith(']') !== last) {
      throw new Error('claimBatch: identifiers did not come back as JSON strings of 64 hex digits');
    }
    n += (part.length - (last ? 1 : 0)) / JSON_IDENTIFIER;
    const chunk = Buffer.from(part, 'latin1');
    chunks.push(chunk);
    length += chunk.length;
  });
  if (n !== size) throw new Error(`claimBatch: ${n} identifiers came back for a batch of ${size}`);
  return { chunks, length, size };
}

/** Identifiers per row of a claim's answer. */
const CLAIM_PART = 1000;

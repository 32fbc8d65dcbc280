import { sql } from 'kysely';
import type { Db } from './db.js';
import type { AmendmentResult } from './criteo-client.js';
import type { CriteoProblem } from './errors.js';
import type { BatchOperation } from './schema.js';
import type { Uncertainty } from './plan.js';

/**
 * The ledger (list_members) and the batches that change it. The write-ahead
 * rule: a batch row with its identifiers is committed before its request
 * leaves, and the ledger changes only in the transaction that records
 * Criteo's confirmation. A crash between the two leaves an unsettled batch,
 * which the next plan treats as uncertain and re-sends.
 */

export async function countLedger(db: Db, segmentId: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::bigint AS n FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`.execute(db);
  return rows[0]!.n;
}

/** Unsettled batches of a list: sent, and Criteo's answer never recorded. */
export async function findUncertainty(db: Db, segmentId: string): Promise<Uncertainty> {
  const rows = await db
    .selectFrom('audience_sync.batches')
    .select(['batch_id', 'operation'])
    .where('audience_segment_id', '=', segmentId)
    .where('status', 'in', ['sending', 'unknown'])
    .execute();
  return { batchIds: rows.map((r) => r.batch_id), wholeList: rows.some((r) => r.operation === 'delete') };
}

/** Marks unsettled batches settled once a later sync has re-sent their work. */
export async function supersedeBatches(db: Db, batchIds: readonly number[]): Promise<void> {
  if (batchIds.length === 0) return;
  await db
    .updateTable('audience_sync.batches')
    .set({ status: 'superseded', payload: null })
    .where('batch_id', 'in', [...batchIds])
    .execute();
}

/**
 * Write-ahead: the batch and its identifiers are durable before the request
 * leaves. The identifiers are copied from the plan's key range in Postgres,
 * so they never travel back from the job.
 */
export async function recordBatchIntent(
  db: Db,
  batch: { listSyncId: number; segmentId: string; seq: number; operation: 'add' | 'remove'; size: number; after: string | null; last: string },
): Promise<number> {
  const { rows } = await sql<{ batch_id: number; copied: number }>`
    INSERT INTO audience_sync.batches (list_sync_id, audience_segment_id, seq, operation, size, payload)
    VALUES (${batch.listSyncId}, ${batch.segmentId}::bigint, ${batch.seq}, ${batch.operation}, ${batch.size},
            ARRAY(SELECT p.identifier FROM audience_sync.plan_entries p
                  WHERE p.list_sync_id = ${batch.listSyncId} AND p.operation = ${batch.operation}
                    AND p.identifier <= decode(${batch.last}, 'hex')
                    ${batch.after === null ? sql`` : sql`AND p.identifier > decode(${batch.after}, 'hex')`}
                  ORDER BY p.identifier))
    RETURNING batch_id, cardinality(payload) AS copied`.execute(db);
  // The range must hold exactly what was read: anything else would make the record lie about the request.
  if (rows[0]!.copied !== batch.size) throw new Error(`batch ${batch.seq}: plan range holds ${rows[0]!.copied} identifiers, ${batch.size} read`);
  return rows[0]!.batch_id;
}

export interface BatchCall {
  httpStatus: number;
  attempts: number;
  waitedMs: number;
  durationMs: number;
}

/**
 * Criteo confirmed an add or remove: apply the batch's identifiers to the
 * ledger and settle the batch, atomically.
 */
export async function applyConfirmedAmendment(
  db: Db,
  batchId: number,
  listSyncId: number,
  segmentId: string,
  operation: 'add' | 'remove',
  call: BatchCall,
  result: AmendmentResult,
): Promise<void> {
  await db.transaction().execute(async (tx) => {
    if (operation === 'add') {
      await sql`
        INSERT INTO audience_sync.list_members (audience_segment_id, identifier)
        SELECT ${segmentId}::bigint, unnest(payload) FROM audience_sync.batches WHERE batch_id = ${batchId}
        ON CONFLICT DO NOTHING`.execute(tx);
    } else {
      await sql`
        DELETE FROM audience_sync.list_members
        WHERE audience_segment_id = ${segmentId}::bigint
          AND identifier IN (SELECT unnest(payload) FROM audience_sync.batches WHERE batch_id = ${batchId})`.execute(tx);
    }
    const { rows } = await sql<{ size: number }>`
      UPDATE audience_sync.batches SET
        status = 'confirmed', payload = NULL, http_status = ${call.httpStatus}, attempts = ${call.attempts},
        waited_ms = ${call.waitedMs}, duration_ms = ${call.durationMs}, nb_valid = ${result.nbValidIdentifiers},
        nb_invalid = ${result.nbInvalidIdentifiers}, sample_invalid = ${result.sampleInvalidIdentifiers.slice(0, 10)}::text[],
        finished_at = now()
      WHERE batch_id = ${batchId} RETURNING size`.execute(tx);
    const size = rows[0]!.size;
    await sql`
      UPDATE audience_sync.list_syncs
      SET added = added + ${operation === 'add' ? size : 0}, removed = removed + ${operation === 'remove' ? size : 0}
      WHERE list_sync_id = ${listSyncId}`.execute(tx);
  });
}

/** Criteo confirmed the DELETE: the list is empty, so is the ledger, and nothing is uncertain any more. */
export async function applyConfirmedEmptying(
  db: Db,
  batchId: number,
  listSyncId: number,
  segmentId: string,
  call: BatchCall,
): Promise<number> {
  return db.transaction().execute(async (tx) => {
    const removed = await sql`DELETE FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`.execute(tx);
    await sql`
      UPDATE audience_sync.batches SET status = 'superseded', payload = NULL
      WHERE audience_segment_id = ${segmentId}::bigint AND status IN ('sending', 'unknown') AND batch_id <> ${batchId}`.execute(tx);
    await sql`
      UPDATE audience_sync.batches SET status = 'confirmed', payload = NULL, http_status = ${call.httpStatus},
        attempts = ${call.attempts}, waited_ms = ${call.waitedMs}, duration_ms = ${call.durationMs}, finished_at = now()
      WHERE batch_id = ${batchId}`.execute(tx);
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

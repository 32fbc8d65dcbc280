import { sql, type RawBuilder } from 'kysely';
import { probingKeys, type Db } from '../db/connection.js';
import { snapshotTable } from '../source/snapshot-table.js';

/**
 * The diff of one list: desired members (valid identifiers of its active
 * target groups) against the ledger, written to plan_entries in one
 * set-based statement and streamed to Criteo in batches from there.
 *
 * Identifiers of unsettled batches (sent, answer never received) are
 * uncertain: Criteo may or may not hold them. The plan re-sends them in the
 * direction the desired state asks for, so a run killed mid-request converges.
 */

export interface Uncertainty {
  /** Batches whose outcome is unknown (status 'sending' or 'unknown'). */
  batchIds: number[];
  /** One of them is a DELETE: nothing in the ledger can be trusted. */
  wholeList: boolean;
  /** Confirmed batches not yet moved into the ledger (applyConfirmedBatches). */
  unapplied: boolean;
}

export interface PlanCounts {
  toAdd: number;
  toRemove: number;
  /** The adds are ranges of the snapshot's identifiers (a first fill: plan_ranges), not plan_entries rows. */
  rangedAdds: boolean;
}

/**
 * How the diff is taken: on the identifiers today's changes touched (the ledger was in step: see
 * findTouchedIdentifiers), on the whole list, or as a first fill (the ledger is empty and nothing is uncertain).
 */
export type DiffScope = { kind: 'touched'; identifiers: RawBuilder<unknown>; few: boolean } | { kind: 'whole'; uncertainty: Uncertainty } | { kind: 'fill' };

/**
 * The list's desired members, read from its own table of the snapshot by name: the planner then knows how many
 * distinct identifiers it holds. Read through list_targets, it would take list_targets' statistics as a whole,
 * which no ANALYZE of a list's table gives, and count 200: hashed, then sorted on disk, where the list's
 * identifier index gives them in order (from the index alone once the table is vacuumed).
 */
const desiredMembers = (segmentId: string) => sql`
  SELECT DISTINCT identifier FROM ${sql.table(snapshotTable(segmentId))}
  WHERE audience_segment_id = ${segmentId}::bigint AND identifier IS NOT NULL`;

const ledgerMembers = (segmentId: string) => sql`
  SELECT identifier FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`;

/**
 * Writes the adds and removes of one list sync to plan_entries, numbered
 * into batches of `batchSize` in identifier order, from the snapshot (see
 * snapshot.ts) against the ledger. Runs in the plan's transaction.
 */
export async function materializePlan(tx: Db, listSyncId: number, segmentId: string, scope: DiffScope, batchSize: number): Promise<PlanCounts> {
  if (scope.kind === 'fill') return planFill(tx, listSyncId, segmentId, batchSize);
  let diff;
  if (scope.kind === 'touched' && scope.few) {
    // The ledger equalled the snapshot before today's changes: only identifiers they touched can differ.
    // A few, each looked up in the ledger's index: a scalar subquery is never hashed into a read of the whole list,
    // which the planner, with no statistics for the few, may choose. OFFSET 0 keeps the inner select whole, so the
    // CASE reads one lookup per identifier rather than making two.
    diff = sql`
      SELECT identifier, CASE WHEN desired AND NOT held THEN 'add' WHEN NOT desired AND held THEN 'remove' END AS operation
      FROM (SELECT i.identifier, i.desired,
                   (SELECT true FROM audience_sync.list_members l
                    WHERE l.audience_segment_id = ${segmentId}::bigint AND l.identifier = i.identifier) IS NOT NULL AS held
            FROM ${scope.identifiers} i OFFSET 0) i`;
  } else if (scope.kind === 'touched') {
    // Many, with their statistics: the planner joins them to the ledger as it finds cheapest.
    diff = sql`
      SELECT i.identifier,
             CASE WHEN i.desired AND l.identifier IS NULL THEN 'add' WHEN NOT i.desired AND l.identifier IS NOT NULL THEN 'remove' END AS operation
      FROM ${scope.identifiers} i
      LEFT JOIN audience_sync.list_members l ON l.audience_segment_id = ${segmentId}::bigint AND l.identifier = i.identifier`;
  } else if (scope.uncertainty.batchIds.length === 0 && !scope.uncertainty.wholeList) {
    diff = sql`
      SELECT coalesce(d.identifier, l.identifier) AS identifier,
             CASE WHEN l.identifier IS NULL THEN 'add' WHEN d.identifier IS NULL THEN 'remove' END AS operation
      FROM (${desiredMembers(segmentId)}) d
      FULL JOIN (${ledgerMembers(segmentId)}) l ON l.identifier = d.identifier`;
  } else {
    const { uncertainty } = scope;
    diff = sql`
      SELECT coalesce(d.identifier, k.identifier) AS identifier,
             CASE WHEN d.identifier IS NOT NULL AND (k.identifier IS NULL OR k.uncertain) THEN 'add'
                  WHEN d.identifier IS NULL THEN 'remove' END AS operation
      FROM (${desiredMembers(segmentId)}) d
      FULL JOIN (
        -- what Criteo may hold: the ledger, plus identifiers of unsettled batches
        SELECT identifier, bool_or(uncertain) AS uncertain FROM (
          SELECT identifier, ${uncertainty.wholeList}::boolean AS uncertain FROM (${ledgerMembers(segmentId)}) l
          UNION ALL
          SELECT unnest(b.payload), true FROM audience_sync.batches b
          WHERE b.batch_id = ANY(${uncertainty.batchIds}::bigint[]) AND b.payload IS NOT NULL
        ) u GROUP BY identifier
      ) k ON k.identifier = d.identifier`;
  }
  const write = () =>
    sql<{ to_add: number; to_remove: number }>`
    WITH inserted AS (
      INSERT INTO audience_sync.plan_entries (list_sync_id, operation, batch_no, identifier)
      SELECT ${listSyncId}::bigint, operation,
             ((row_number() OVER (PARTITION BY operation ORDER BY identifier) - 1) / ${batchSize}::int)::int,
             identifier
      FROM (${diff}) x WHERE operation IS NOT NULL
      RETURNING operation
    )
    SELECT count(*) FILTER (WHERE operation = 'add')::bigint AS to_add,
           count(*) FILTER (WHERE operation = 'remove')::bigint AS to_remove
    FROM inserted`.execute(tx);
  // The touched identifiers are few: each is looked up in the ledger's index.
  const { rows } = scope.kind === 'touched' ? await probingKeys(tx, write) : await write();
  return { toAdd: Number(rows[0]!.to_add), toRemove: Number(rows[0]!.to_remove), rangedAdds: false };
}

/**
 * A first fill's plan: every distinct identifier of the snapshot is an add,
 * so the plan is the snapshot itself, cut into batches as its identifier
 * index orders it. One row a batch goes to plan_ranges: the batch's first
 * and last identifier and its size (no join with the empty ledger, no
 * sort); each claim reads its range back from the index (claimBatch).
 * Writing a row a member cost the first sync of a big list a fifth of its
 * local work. The batches are found one after the other, each from where
 * the last one ended (nextRange), which reads each identifier of the index
 * once, as a numbering of them all would, without numbering them (at a
 * million members, 0.15 s instead of 0.38 s with the numbering: see
 * docs/BENCHMARKS.md).
 */
async function planFill(tx: Db, listSyncId: number, segmentId: string, batchSize: number): Promise<PlanCounts> {
  const { rows } = await sql<{ to_add: number }>`
    WITH RECURSIVE batches (batch_no, first_identifier, last_identifier, size) AS (
      SELECT 0, r.* FROM ${nextRange(segmentId, sql`''::bytea`, batchSize)} r
      UNION ALL
      SELECT b.batch_no + 1, r.* FROM batches b CROSS JOIN LATERAL ${nextRange(segmentId, sql`b.last_identifier`, batchSize)} r
      WHERE b.size = ${batchSize}::int
    ),
    ranges AS (
      INSERT INTO audience_sync.plan_ranges (list_sync_id, batch_no, first_identifier, last_identifier, size)
      SELECT ${listSyncId}::bigint, batch_no, first_identifier, last_identifier, size FROM batches
      RETURNING size
    )
    SELECT coalesce(sum(size), 0)::bigint AS to_add FROM ranges`.execute(tx);
  return { toAdd: Number(rows[0]!.to_add), toRemove: 0, rangedAdds: true };
}

/**
 * SQL, a relation of one row or none: the batch of the list's next
 * `batchSize` distinct identifiers after `after`, in the index's order. A
 * full batch's last identifier is found by skipping to it; only the last,
 * partial batch is counted, and it ends with the list's last identifier.
 */
function nextRange(segmentId: string, after: RawBuilder<unknown>, batchSize: number) {
  const table = sql.table(snapshotTable(segmentId));
  const from = (first: RawBuilder<unknown>) => sql`
    SELECT DISTINCT identifier FROM ${table}
    WHERE audience_segment_id = ${segmentId}::bigint AND identifier >= ${first} ORDER BY identifier`;
  return sql`(
    SELECT f.identifier AS first_identifier,
           coalesce(full_batch.last, (SELECT identifier FROM ${table} WHERE audience_segment_id = ${segmentId}::bigint
                                      AND identifier IS NOT NULL ORDER BY identifier DESC LIMIT 1)) AS last_identifier,
           CASE WHEN full_batch.last IS NOT NULL THEN ${batchSize}::int
                ELSE (SELECT count(*)::int FROM (${from(sql`f.identifier`)}) partial) END AS size
    FROM (SELECT identifier FROM ${table} WHERE audience_segment_id = ${segmentId}::bigint AND identifier > ${after}
          ORDER BY identifier LIMIT 1) f
    LEFT JOIN LATERAL (SELECT identifier AS last FROM (${from(sql`f.identifier`)}) s OFFSET ${batchSize - 1}::int LIMIT 1) full_batch ON true
  )`;
}

/** SQL, a statement's common table expressions: a list sync's plan dropped, its entries and its ranges. */
export function droppingPlan(listSyncId: number) {
  return sql`
    plan AS (DELETE FROM audience_sync.plan_entries WHERE list_sync_id = ${listSyncId} RETURNING 1),
    ranges AS (DELETE FROM audience_sync.plan_ranges WHERE list_sync_id = ${listSyncId} RETURNING 1)`;
}

/** Drops a list sync's plan once it is sent (or abandoned: the next run plans afresh). */
export async function discardPlan(db: Db, listSyncId: number): Promise<void> {
  await sql`WITH ${droppingPlan(listSyncId)} SELECT 1`.execute(db);
}

/** Plans whose run is gone (killed processes) are dead weight in unlogged tables. */
export async function discardOrphanedPlans(db: Db): Promise<void> {
  await sql`
    WITH ranges AS (
      DELETE FROM audience_sync.plan_ranges p USING audience_sync.list_syncs s
      WHERE s.list_sync_id = p.list_sync_id AND s.status NOT IN ('planning', 'sending')
    )
    DELETE FROM audience_sync.plan_entries p USING audience_sync.list_syncs s
    WHERE s.list_sync_id = p.list_sync_id AND s.status NOT IN ('planning', 'sending')`.execute(db);
}

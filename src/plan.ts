import { sql } from 'kysely';
import type { Db } from './db.js';
import { isActive } from './source.js';

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
}

export interface PlanCounts {
  toAdd: number;
  toRemove: number;
  /** Distinct identifiers the list should hold. */
  desired: number;
  /**
   * The target-group rows of the list's active campaigns and how many of
   * them have no customer, no email, an invalid email. Exact customer counts
   * when one campaign feeds the list; a customer selected by two campaigns
   * of a shared list counts twice here.
   */
  rows: { targetGroupRows: number; missingCustomers: number; withoutEmail: number; invalidEmails: number };
}

/**
 * The target-group rows of a list grouped by identifier, in one pass: the
 * non-null groups are the desired members, the null group holds every row
 * without a usable email. Materialized once, read by the diff and the counts.
 */
const groupedMembers = (segmentId: string, asOf: Date) => sql`
  SELECT ci.identifier,
         count(*) AS n,
         count(*) FILTER (WHERE ci.customer_id IS NULL) AS missing,
         count(*) FILTER (WHERE ci.email_state = 'missing') AS without_email,
         count(*) FILTER (WHERE ci.email_state = 'invalid') AS invalid
  FROM audience_sync.campaigns c
  JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
  LEFT JOIN audience_sync.customer_identifiers ci ON ci.customer_id = tg.customer_id
  WHERE c.audience_segment_id = ${segmentId}::bigint AND ${isActive(asOf)}
  GROUP BY ci.identifier`;

const desiredMembers = sql`SELECT identifier FROM grouped WHERE identifier IS NOT NULL`;

const ledgerMembers = (segmentId: string) => sql`
  SELECT identifier FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`;

/** Writes the adds and removes of one list sync to plan_entries, and counts what it saw on the way. */
export async function materializePlan(
  db: Db,
  listSyncId: number,
  segmentId: string,
  asOf: Date,
  uncertainty: Uncertainty,
): Promise<PlanCounts> {
  const certain = uncertainty.batchIds.length === 0 && !uncertainty.wholeList;
  const diff = certain
    ? sql`
        SELECT coalesce(d.identifier, l.identifier) AS identifier,
               CASE WHEN l.identifier IS NULL THEN 'add' WHEN d.identifier IS NULL THEN 'remove' END AS operation
        FROM (${desiredMembers}) d
        FULL JOIN (${ledgerMembers(segmentId)}) l ON l.identifier = d.identifier`
    : sql`
        SELECT coalesce(d.identifier, k.identifier) AS identifier,
               CASE WHEN d.identifier IS NOT NULL AND (k.identifier IS NULL OR k.uncertain) THEN 'add'
                    WHEN d.identifier IS NULL THEN 'remove' END AS operation
        FROM (${desiredMembers}) d
        FULL JOIN (
          -- what Criteo may hold: the ledger, plus identifiers of unsettled batches
          SELECT identifier, bool_or(uncertain) AS uncertain FROM (
            SELECT identifier, ${uncertainty.wholeList}::boolean AS uncertain FROM (${ledgerMembers(segmentId)}) l
            UNION ALL
            SELECT unnest(b.payload), true FROM audience_sync.batches b
            WHERE b.batch_id = ANY(${uncertainty.batchIds}::bigint[]) AND b.payload IS NOT NULL
          ) u GROUP BY identifier
        ) k ON k.identifier = d.identifier`;
  const { rows } = await sql<{
    to_add: number;
    to_remove: number;
    desired: number;
    target_rows: number;
    missing: number;
    without_email: number;
    invalid: number;
  }>`
    WITH grouped AS MATERIALIZED (${groupedMembers(segmentId, asOf)}),
    inserted AS (
      INSERT INTO audience_sync.plan_entries (list_sync_id, operation, identifier)
      SELECT ${listSyncId}::bigint, operation, identifier FROM (${diff}) x WHERE operation IS NOT NULL
      ORDER BY operation, identifier
      RETURNING operation
    ),
    changes AS (
      SELECT count(*) FILTER (WHERE operation = 'add')::bigint AS to_add,
             count(*) FILTER (WHERE operation = 'remove')::bigint AS to_remove
      FROM inserted
    ),
    seen AS (
      SELECT count(identifier)::bigint AS desired, coalesce(sum(n), 0)::bigint AS target_rows,
             coalesce(sum(missing), 0)::bigint AS missing, coalesce(sum(without_email), 0)::bigint AS without_email,
             coalesce(sum(invalid), 0)::bigint AS invalid
      FROM grouped
    )
    SELECT * FROM changes, seen`.execute(db);
  const r = rows[0]!;
  return {
    toAdd: r.to_add,
    toRemove: r.to_remove,
    desired: r.desired,
    rows: { targetGroupRows: r.target_rows, missingCustomers: r.missing, withoutEmail: r.without_email, invalidEmails: r.invalid },
  };
}

/** One batch of a plan: its identifiers, and the key range (after, last] they fill in plan_entries. */
export interface PlannedBatch {
  identifiers: string[];
  /** Exclusive lower bound (64 hex), or null for the first batch. */
  after: string | null;
  /** Inclusive upper bound (64 hex). */
  last: string;
}

/**
 * Reads a planned operation's identifiers as 64-hex strings, `batchSize` at
 * a time, each batch its own keyset query in identifier order: memory holds
 * one batch, not the list; each batch touches one narrow key range of the
 * ledger's index; and no connection is held between batches, so a database
 * that goes away mid-run surfaces as one failed query, not a hung cursor.
 */
export async function* streamPlannedBatches(
  db: Db,
  listSyncId: number,
  operation: 'add' | 'remove',
  batchSize: number,
): AsyncGenerator<PlannedBatch> {
  let after: string | null = null;
  for (;;) {
    const rows: { id: string }[] = await db
      .selectFrom('audience_sync.plan_entries')
      .select(sql<string>`encode(identifier, 'hex')`.as('id'))
      .where('list_sync_id', '=', listSyncId)
      .where('operation', '=', operation)
      .$if(after !== null, (q) => q.where('identifier', '>', sql<Buffer>`decode(${after}, 'hex')`))
      .orderBy('identifier')
      .limit(batchSize)
      .execute();
    if (rows.length === 0) return;
    const last = rows[rows.length - 1]!.id;
    yield { identifiers: rows.map((r) => r.id), after, last };
    if (rows.length < batchSize) return;
    after = last;
  }
}

/** Drops a list sync's plan once it is sent (or abandoned: the next run plans afresh). */
export async function discardPlan(db: Db, listSyncId: number): Promise<void> {
  await db.deleteFrom('audience_sync.plan_entries').where('list_sync_id', '=', listSyncId).execute();
}

/** Plans whose run is gone (killed processes) are dead weight in an unlogged table. */
export async function discardOrphanedPlans(db: Db): Promise<void> {
  await sql`
    DELETE FROM audience_sync.plan_entries p
    USING audience_sync.list_syncs s
    WHERE s.list_sync_id = p.list_sync_id AND s.status NOT IN ('planning', 'sending')`.execute(db);
}

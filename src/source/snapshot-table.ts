import { sql } from 'kysely';
import { probingNoMore, type Db } from '../db/connection.js';

/**
 * Each list's own table of the snapshot, a partition of list_targets
 * (migration 0016): how a whole read writes a row's columns, how the list's
 * first plan makes the table, attaches it and has it vacuumed.
 */

/** The fingerprint of customer row `cu`'s email, NULL when there is no such customer. */
export const fingerprint = sql`CASE WHEN cu.customer_id IS NOT NULL THEN hashtextextended(coalesce(cu.email, ''), 0) END`;
/**
 * The list's target groups as a plan reads them, after FROM: its active
 * campaigns' rows `tg`, each with its customer `cu` (NULL when there is no
 * such customer), which `fingerprint` and `stateWithoutEmail` read.
 */
export const targetGroupsWithCustomers = (activeCampaignIds: readonly string[]) => sql`
  audience_sync.campaign_target_groups tg
  LEFT JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
  WHERE tg.campaign_id = ANY(${activeCampaignIds}::text[])`;

/** A present row's state when it is not decided by its identifier (see newState): no customer `cu`, or no email. */
export const stateWithoutEmail = sql`
  CASE WHEN cu.customer_id IS NULL THEN 'no_customer' WHEN coalesce(btrim(cu.email, E' \t\n\r\f'), '') = '' THEN 'missing' END`;

/** List `segmentId`'s own table of the snapshot: its partition of list_targets (migration 0016). */
export function snapshotTable(segmentId: string): string {
  return `audience_sync.list_targets_${BigInt(segmentId)}`;
}

/** SQL: whether the list's table of the snapshot is there, attached to list_targets (a table left unattached is not). */
export function attachedSnapshotTable(segmentId: string) {
  return sql<boolean>`coalesce((SELECT relispartition FROM pg_class WHERE oid = to_regclass(${snapshotTable(segmentId)})), false)`;
}

/** Whether the list has its table of the snapshot (see attachedSnapshotTable). */
export async function hasSnapshotTable(db: Db, segmentId: string): Promise<boolean> {
  const { rows } = await sql<{ attached: boolean }>`SELECT ${attachedSnapshotTable(segmentId)} AS attached`.execute(db);
  return rows[0]!.attached;
}

/**
 * Writes a list's first snapshot (the list has no table attached yet) from
 * its whole read: one parallel CREATE TABLE AS makes the list's table,
 * every row new, with no index, then constrains it as list_targets
 * (migration 0019). A table an unfinished plan left unattached is dropped
 * first (the caller found no attached one, under the list's lock).
 * Returns how many rows the snapshot has (all of them changed).
 */
export async function writeNewSnapshot(tx: Db, segmentId: string, activeCampaignIds: readonly string[]): Promise<number> {
  const table = sql.table(snapshotTable(segmentId));
  await sql`DROP TABLE IF EXISTS ${table}`.execute(tx);
  // Cheap tuple transfer keeps the read parallel, as CREATE TABLE AS allows (see compareWholeTargetGroup).
  await sql`SELECT set_config('parallel_tuple_cost', '0.001', true)`.execute(tx);
  // OFFSET 0 keeps the read a subquery: each email is judged once, in the parallel workers, and the state that
  // depends on its identifier is decided above them (the same columns a later read writes: see newState).
  await sql`
    CREATE UNLOGGED TABLE ${table} AS
    SELECT ${segmentId}::bigint AS audience_segment_id, r.customer_id, r.campaign_id, r.email_fingerprint,
           coalesce(r.state, CASE WHEN r.identifier IS NULL THEN 'invalid' ELSE 'valid' END) AS email_state, r.identifier
    FROM (
      SELECT tg.customer_id, tg.campaign_id, ${fingerprint} AS email_fingerprint, ${stateWithoutEmail} AS state,
             audience_sync.email_identifier(cu.email) AS identifier
      FROM ${targetGroupsWithCustomers(activeCampaignIds)}
      OFFSET 0
    ) r`.execute(tx);
  await probingNoMore(tx);
  const rows = await countWrittenRows(tx, segmentId);
  await sql`SELECT audience_sync.constrain_snapshot_table(${segmentId}::bigint)`.execute(tx);
  return rows;
}

/**
 * Attaches a list's new table to list_targets, which builds its two indexes
 * by sorting once, not by inserting each key into them; the table's CHECK
 * on the list's id spares it a scan. It waits for no other list's plan
 * (SHARE UPDATE EXCLUSIVE on list_targets), only for another first
 * snapshot's, until that plan commits.
 */
export async function attachNewSnapshot(tx: Db, segmentId: string): Promise<void> {
  await sql`SELECT audience_sync.attach_snapshot_table(${segmentId}::bigint)`.execute(tx);
  // Statistics for the rest of the plan, which reads the whole new table: without them, the planner takes it for a
  // few rows and hashes and sorts its identifiers on disk (a third longer at a million rows).
  await sql`ANALYZE ${sql.table(snapshotTable(segmentId))}`.execute(tx);
}

/**
 * The rows this transaction wrote into a table it made: its own count of
 * inserted rows, exact and free, where a count(*) would read the table
 * again. Postgres keeps that count only with track_counts on (the default,
 * which autovacuum needs); otherwise, or for an empty table, count(*).
 */
async function countWrittenRows(tx: Db, segmentId: string): Promise<number> {
  const table = snapshotTable(segmentId);
  const { rows } = await sql<{ n: string }>`
    SELECT CASE WHEN n > 0 THEN n ELSE (SELECT count(*) FROM ${sql.table(table)}) END AS n
    FROM (SELECT pg_stat_get_xact_tuples_inserted(${table}::regclass) AS n) x`.execute(tx);
  return Number(rows[0]!.n);
}

/** Drops a new table that will not be attached (its VACUUM failed): best effort, as the next plan drops it anyway. */
export async function dropUnattachedSnapshot(db: Db, segmentId: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    const { rows } = await sql<{ attached: boolean }>`
      SELECT relispartition AS attached FROM pg_class WHERE oid = to_regclass(${snapshotTable(segmentId)})`.execute(tx);
    if (rows[0] && !rows[0].attached) await sql`DROP TABLE ${sql.table(snapshotTable(segmentId))}`.execute(tx);
  });
}

/**
 * After a first fill's plan commits: a VACUUM of the list's new table sets
 * its rows' hint bits and marks its pages all-visible, in one sequential
 * pass, so that the claims read their ranges from the identifier index
 * alone (see pickedRange), rather than a heap page for each row in
 * identifier order: 10–15 ms a claim of 50,000 instead of 45–120 ms, at a
 * million rows. Later plans' probes of the index gain as much. It changes
 * no row: if it fails, the claims only read the heap.
 */
export async function vacuumSnapshot(db: Db, segmentId: string): Promise<void> {
  await sql`VACUUM ${sql.table(snapshotTable(segmentId))}`.execute(db);
}

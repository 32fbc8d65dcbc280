import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connection.js';
import { RUN_LOGGED, RUN_WINDOW_XIDS, RUN_WINDOWS } from '../db/temp-tables.js';

/**
 * The day's changes, read once for the run's lists (migration 0014). The
 * change log names customers, not lists, so a day that writes more
 * customers than a small list would look up key by key sends every such
 * list to a whole read of its target group, each paying the look-up of all
 * its customers. Instead, the run's first transaction (the one that settles
 * the quiet lists, holding the log's lock shared) maps the window of each
 * such list to its own keys, in one pass over the log and their snapshots:
 * its campaigns' logged rows, and its snapshot's rows of logged customers,
 * exactly the keys a plan reading the log would look up (compareLoggedKeys).
 *
 * A plan uses its list's window only while the list's read of the log is
 * still the window's start: any plan or emptying of the list in between
 * (this run's or another process's, under the list's lock) moves
 * changes_read_in to a later snapshot, and the plan then reads the log
 * itself. The plan reads the log as of the window's `seen`, taken earlier
 * than its own snapshot: what committed in between is read by the next
 * plan, and reading a key's current state early is harmless (change-log.ts).
 */

/**
 * SQL: the most unread source changes list `segment` looks up key by key,
 * past which one read of its whole target group costs less: a tenth of its
 * snapshot's rows, at least 1000. chooseSourceRead and mapRunChanges both
 * judge by it; the log triggers' audience_sync.change_log_key_limit
 * (migrations 0011 and 0014) holds the same rule, as the largest limit of
 * the lists a statement concerns.
 */
export const keyLimitOf = (segment: RawBuilder<unknown>) => sql<number>`
  greatest(1000, floor((SELECT coalesce(sum(k.n), 0) FROM audience_sync.list_target_counts k
                        WHERE k.audience_segment_id = ${segment} AND k.scope <> '') / 10))::bigint`;

/**
 * Maps the window of each of these lists whose unread customer rows exceed
 * what its plan would look up key by key (keyLimitOf) to its keys. In the caller's
 * transaction, which holds the log's lock shared and took `seen`. Returns the
 * lists mapped.
 */
export async function mapRunChanges(
  tx: Db,
  runId: number,
  lists: readonly { segmentId: string; activeCampaignIds: readonly string[] }[],
  seen: string,
): Promise<string[]> {
  if (lists.length === 0) return [];
  const candidates = JSON.stringify(lists.map((l) => ({ segment: l.segmentId, campaigns: l.activeCampaignIds })));
  // Each step in a temporary table with its own statistics: the planner then hashes what is many and probes what is few.
  await sql`
    CREATE TEMP TABLE ${RUN_WINDOWS} ON COMMIT DROP AS
    SELECT l.audience_segment_id, l.changes_read_in, c.campaigns,
           ${keyLimitOf(sql`l.audience_segment_id`)} AS key_limit
    FROM audience_sync.lists l
    JOIN jsonb_to_recordset(${candidates}::jsonb) AS c(segment text, campaigns text[]) ON c.segment::bigint = l.audience_segment_id
    WHERE l.changes_read_in IS NOT NULL AND pg_snapshot_xmax(l.changes_read_in) <= pg_snapshot_xmax(${seen}::pg_snapshot)`.execute(tx);
  await sql`ANALYZE ${RUN_WINDOWS}`.execute(tx);
  await sql`
    CREATE TEMP TABLE ${RUN_LOGGED} ON COMMIT DROP AS
    SELECT s.xid, s.campaign_id, s.customer_id FROM audience_sync.source_changes s
    WHERE s.customer_id IS NOT NULL AND s.xid >= (SELECT min(pg_snapshot_xmin(changes_read_in)) FROM ${RUN_WINDOWS})
      AND s.xid < pg_snapshot_xmax(${seen}::pg_snapshot) AND pg_visible_in_snapshot(s.xid, ${seen}::pg_snapshot)`.execute(tx);
  await sql`ANALYZE ${RUN_LOGGED}`.execute(tx);
  // Each list's unread transactions: the lists times a day's handful of writing transactions.
  await sql`
    CREATE TEMP TABLE ${RUN_WINDOW_XIDS} ON COMMIT DROP AS
    SELECT w.audience_segment_id, x.xid, x.customer_rows FROM ${RUN_WINDOWS} w
    JOIN (SELECT xid, count(*) FILTER (WHERE campaign_id IS NULL) AS customer_rows FROM ${RUN_LOGGED} GROUP BY xid) x
      ON x.xid >= pg_snapshot_xmin(w.changes_read_in) AND NOT pg_visible_in_snapshot(x.xid, w.changes_read_in)`.execute(tx);
  await sql`ANALYZE ${RUN_WINDOW_XIDS}`.execute(tx);
  const { rows } = await sql<{ segment: string }>`
    INSERT INTO audience_sync.run_change_windows (run_id, audience_segment_id, read_from, seen)
    SELECT ${runId}::bigint, w.audience_segment_id, w.changes_read_in::text, ${seen} FROM ${RUN_WINDOWS} w
    WHERE (SELECT coalesce(sum(x.customer_rows), 0) FROM ${RUN_WINDOW_XIDS} x WHERE x.audience_segment_id = w.audience_segment_id) > w.key_limit
    RETURNING audience_segment_id::text AS segment`.execute(tx);
  if (rows.length === 0) return [];
  // The mapped lists' campaigns' rows, and their snapshots' rows of logged customers, each in its list's window.
  await sql`
    INSERT INTO audience_sync.run_change_keys (run_id, audience_segment_id, customer_id, campaign_id)
    SELECT ${runId}::bigint, k.audience_segment_id, k.customer_id, k.campaign_id FROM (
      SELECT w.audience_segment_id, g.customer_id, g.campaign_id
      FROM (SELECT audience_segment_id, unnest(campaigns) AS campaign_id FROM ${RUN_WINDOWS}) w
      JOIN audience_sync.run_change_windows m ON m.run_id = ${runId} AND m.audience_segment_id = w.audience_segment_id
      JOIN ${RUN_LOGGED} g ON g.campaign_id = w.campaign_id
      JOIN ${RUN_WINDOW_XIDS} wx ON wx.audience_segment_id = w.audience_segment_id AND wx.xid = g.xid
      UNION
      SELECT t.audience_segment_id, t.customer_id, t.campaign_id
      FROM audience_sync.list_targets t
      JOIN ${RUN_LOGGED} g ON g.customer_id = t.customer_id AND g.campaign_id IS NULL
      JOIN ${RUN_WINDOW_XIDS} wx ON wx.audience_segment_id = t.audience_segment_id AND wx.xid = g.xid
      WHERE t.audience_segment_id IN (SELECT audience_segment_id FROM audience_sync.run_change_windows WHERE run_id = ${runId})
    ) k`.execute(tx);
  // So that each plan looks its few keys up by index, and each key up in the source.
  await sql`ANALYZE audience_sync.run_change_keys`.execute(tx);
  return rows.map((r) => r.segment);
}

/**
 * SQL, for chooseSourceRead's row of the list `l`: the list's window in the
 * run's map (mapped_seen) and its number of keys (mapped_keys), both NULL
 * when it has none or its read of the log has moved since (see above).
 */
export function mappedWindowOf(runId: number | undefined) {
  if (runId === undefined) return sql`NULL::text AS mapped_seen, NULL::int AS mapped_keys`;
  return sql`
    w.seen AS mapped_seen,
    CASE WHEN w.seen IS NOT NULL THEN (SELECT count(*)::int FROM audience_sync.run_change_keys k
                                       WHERE k.run_id = w.run_id AND k.audience_segment_id = w.audience_segment_id) END AS mapped_keys`;
}

/** SQL: the snapshot the plan reads the log as of: the list's window's, or `seen` when it has none. */
export function mappedSeenOr(runId: number | undefined, seen: string) {
  return runId === undefined ? sql`${seen}::pg_snapshot` : sql`coalesce(w.seen, ${seen})::pg_snapshot`;
}

/** SQL: joins the list's window in the run's map as `w` to chooseSourceRead's row of the list `l`. */
export function joinMappedWindow(runId: number | undefined) {
  if (runId === undefined) return sql``;
  return sql`
    LEFT JOIN audience_sync.run_change_windows w
      ON w.run_id = ${runId} AND w.audience_segment_id = l.audience_segment_id AND w.read_from = l.changes_read_in::text`;
}

/** SQL: the list's keys in the run's map. */
export function mappedKeys(runId: number, segmentId: string) {
  return sql`
    SELECT campaign_id, customer_id FROM audience_sync.run_change_keys
    WHERE run_id = ${runId} AND audience_segment_id = ${segmentId}::bigint`;
}

/** The maps of runs that are over: what their lists' plans read (or never did: a list not planned, a process killed). */
export async function discardRunChanges(db: Db): Promise<void> {
  await sql`
    DELETE FROM audience_sync.run_change_keys k USING audience_sync.runs r
    WHERE r.run_id = k.run_id AND r.status <> 'running'`.execute(db);
  await sql`
    DELETE FROM audience_sync.run_change_windows w USING audience_sync.runs r
    WHERE r.run_id = w.run_id AND r.status <> 'running'`.execute(db);
}

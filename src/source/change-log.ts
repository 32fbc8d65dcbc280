import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connection.js';
import { lockChangeLogShared, tryLockChangeLogAlone } from '../db/locks.js';
import { TARGET_CHANGES_NAME } from '../db/temp-tables.js';
import { joinMappedWindow, keyLimitOf, mappedSeenOr, mappedWindowOf } from './run-changes.js';
import type { CounterRow } from './counters.js';
import { sourceCatalog, sourceStamp, stampOf, type SourceCatalogRow } from './log-catalog.js';

/**
 * The source change log (migration 0007): the keys each write to customers
 * or campaign_target_groups touched, tagged with the writer's transaction id;
 * for a TRUNCATE, or a statement writing more keys than any list would read
 * from the log, one marker row instead (migration 0011).
 *
 * A list's snapshot has read the log as of a Postgres snapshot
 * (lists.changes_read_in): every change made by a transaction visible in it
 * is in the list's snapshot. A plan takes a new Postgres snapshot before it
 * reads anything and reads the log rows of the transactions that became
 * visible in between. A committed transaction is visible in every snapshot
 * taken after it, so no change is missed, whatever commits while the plan
 * runs: those are read by the next plan, which re-reads the current state of
 * their keys (a whole read may have seen some already; reading a key twice
 * is harmless).
 *
 * A plan reads the whole target group instead (the snapshot pass) whenever
 * the log cannot be trusted or is not worth it: see chooseSourceRead.
 */

/** Postgres snapshots (pg_snapshot, as text): the log rows read are those of transactions visible in `seen` and not in `from`. */
export type SourceRead = (
  | {
      kind: 'changes';
      from: string;
      seen: string;
      stamp: string;
      /** The run whose map of the log holds the list's keys for this window (run-changes.ts); absent: the plan reads the log. */
      mappedBy?: number;
      /** How many keys that map holds for the list. */
      mappedKeys?: number;
      /**
       * A whole read is due (the periodic safety net): once the log's changes are applied, the whole target group is
       * checked against the snapshot (sourceMatchesSnapshot), and read whole only if they differ. Why it is due.
       */
      check?: string;
    }
  | { kind: 'whole'; seen: string; stamp: string | null; reason: string }
) & {
  /** The email rule the plan judges by (audience_sync.email_rule_stamp()). */
  emailRule: string;
  /** The list's snapshot was judged by another rule: every row with an email beyond ASCII is judged again (a whole read). */
  rejudge: boolean;
  /** The session keeps a table of changed rows from an earlier plan (see keepTargetChanges). */
  changesKept: boolean;
};

/** The snapshot the plan reads the source as of, taken first, under the shared lock that keeps pruning away until it commits. */
export async function takeSourceSnapshot(tx: Db, settings: readonly RawBuilder<string>[] = []): Promise<string> {
  return lockChangeLogShared(tx, settings);
}

/** The log rows of transactions visible in `seen` and not in `from`: the changes a list has not read yet. */
export function unreadChanges(read: { from: string; seen: string }) {
  return unreadBetween(sql`${read.from}::pg_snapshot`, sql`${read.seen}::pg_snapshot`);
}

/** The same, between two pg_snapshot expressions. */
function unreadBetween(from: RawBuilder<unknown>, seen: RawBuilder<unknown>) {
  return sql`
    xid >= pg_snapshot_xmin(${from}) AND xid < pg_snapshot_xmax(${seen})
    AND pg_visible_in_snapshot(xid, ${seen}) AND NOT pg_visible_in_snapshot(xid, ${from})`;
}

/**
 * Of these lists, those nothing can have changed for since their last plan,
 * with their snapshot's read of the log moved on to `seen`: everything a
 * plan would check before reading the log holds (see chooseSourceRead), the
 * ledger is in step with nothing unsettled or unapplied, and the log holds
 * no row concerning them (a customer's, a TRUNCATE's or a bulk write's to
 * the customers, or one of their campaigns' keys or markers) that they have
 * not read (unreadChanges, per list). The log
 * names customers, not lists, so a day with any customer change leaves
 * every list to its plan. One statement
 * for all the lists, in the caller's transaction, which holds the log's
 * lock shared (takeSourceSnapshot) so nothing in the window is pruned. It
 * locks each list's row: a plan of the list (lockListState) holds that row
 * from its start to its commit, which leaves the list out of step, so a row
 * held now is skipped, not waited for, and the list goes to its own plan.
 */
export async function advanceQuietLists(
  tx: Db,
  lists: readonly { segmentId: string; activeCampaignIds: readonly string[] }[],
  seen: string,
  wholeReadDays: number,
): Promise<string[]> {
  const stamp = await sourceStamp(tx);
  if (!stamp || wholeReadDays === 0 || lists.length === 0) return [];
  const candidates = JSON.stringify(lists.map((l) => ({ segment: l.segmentId, campaigns: l.activeCampaignIds })));
  const { rows } = await sql<{ segment: string }>`
    WITH candidates AS (
      SELECT c.segment::bigint AS audience_segment_id, c.campaigns FROM jsonb_to_recordset(${candidates}::jsonb) AS c(segment text, campaigns text[])
    ),
    -- Each transaction's campaigns (NULL: customers, or a marker), once: a day's writes are a handful of transactions.
    logged AS MATERIALIZED (
      SELECT DISTINCT s.xid, s.campaign_id FROM audience_sync.source_changes s
      WHERE s.xid >= (SELECT min(pg_snapshot_xmin(l.changes_read_in)) FROM audience_sync.lists l JOIN candidates USING (audience_segment_id))
        AND s.xid < pg_snapshot_xmax(${seen}::pg_snapshot) AND pg_visible_in_snapshot(s.xid, ${seen}::pg_snapshot)
    ),
    -- A list whose row a plan holds (another process's) is left to its own plan, which then waits for the list's lock.
    quiet AS (
      SELECT l.audience_segment_id FROM audience_sync.lists l JOIN candidates c USING (audience_segment_id)
      WHERE l.in_step AND l.changes_read_in IS NOT NULL
        AND l.source_stamp = ${stamp} AND l.email_rule = audience_sync.email_rule_stamp()
        AND l.snapshot_campaigns @> c.campaigns AND l.snapshot_campaigns <@ c.campaigns
        AND statement_timestamp() < l.whole_read_due
        AND l.whole_read_at >= statement_timestamp() - make_interval(days => ${wholeReadDays}::int)
        AND pg_snapshot_xmax(l.changes_read_in) <= pg_snapshot_xmax(${seen}::pg_snapshot)
        AND (SELECT pruned_below FROM audience_sync.change_log) <= pg_snapshot_xmin(l.changes_read_in)
        AND NOT EXISTS (SELECT 1 FROM audience_sync.batches b WHERE b.audience_segment_id = l.audience_segment_id AND b.status IN ('sending', 'unknown'))
        AND NOT EXISTS (SELECT 1 FROM audience_sync.batches b
                        WHERE b.audience_segment_id = l.audience_segment_id AND b.status = 'confirmed' AND b.payload IS NOT NULL)
        AND NOT EXISTS (SELECT 1 FROM logged g
                        WHERE g.xid >= pg_snapshot_xmin(l.changes_read_in) AND NOT pg_visible_in_snapshot(g.xid, l.changes_read_in)
                          AND (g.campaign_id IS NULL OR g.campaign_id = ANY(c.campaigns)))
      FOR UPDATE OF l SKIP LOCKED
    )
    UPDATE audience_sync.lists l SET changes_read_in = ${seen}::pg_snapshot, updated_at = now()
    FROM quiet q WHERE l.audience_segment_id = q.audience_segment_id
    RETURNING l.audience_segment_id::text AS segment`.execute(tx);
  return rows.map((r) => r.segment);
}

/**
 * Whether the change log can stand in for reading the list's whole target
 * group, cheapest checks first; the reason when it cannot.
 */
export async function chooseSourceRead(
  tx: Db,
  segmentId: string,
  activeCampaignIds: readonly string[],
  seenNow: string,
  { full, wholeReadDays, snapshotLost, runId }: { full: boolean; wholeReadDays: number; snapshotLost: boolean; runId?: number | undefined },
): Promise<SourceRead> {
  const list = await readListForPlan(tx, segmentId, activeCampaignIds, seenNow, { wholeReadDays, runId });
  const stamp = stampOf(list.catalog ?? []);
  const rule = { emailRule: list.rule, rejudge: list.rejudge, changesKept: list.changes_kept };
  let seen = seenNow;
  const whole = (reason: string): SourceRead => ({ kind: 'whole', seen, stamp, reason, ...rule });
  if (full) return whole('--full');
  if (snapshotLost) return whole('the snapshot is gone (its table is unlogged: a Postgres crash or failover empties it)');
  if (wholeReadDays === 0) return whole('SOURCE_WHOLE_READ_DAYS is 0');
  if (!stamp) return whole('a source table is a view or replicated, or its change-log triggers are missing or not enabled ALWAYS');
  if (!list.from) return whole('the snapshot has not read the change log yet');
  // The run mapped this window of the log to the list's keys: the plan reads the log as of the map.
  if (list.mapped_seen !== null) seen = list.mapped_seen;
  if (rule.rejudge) return whole(`the email rule changed (now ${rule.emailRule}): addresses beyond ASCII are judged again`);
  const read = { from: list.from, seen };
  // Said first, as the likeliest reason: a TRUNCATE also rewrites the table, which changes the stamp below.
  if (list.marker) return whole(describeMarker(list.marker_campaign, list.marker_rows));
  // A trigger disabled and enabled again, a table rewritten or swapped: writes in between may be unlogged.
  if (list.source_stamp !== stamp) return whole('a source table or its change-log triggers changed since the last plan');
  if (!list.same_campaigns) return whole('the list is fed by other campaigns than its snapshot holds');
  if (list.ids_went_back) return whole('transaction ids went back since the last plan (a restored or moved database)');
  if (list.pruned_past) return whole('the change log was pruned past what the list has read');
  // The periodic safety net: the log's changes, then the whole target group checked against the snapshot they leave.
  // A write committed after the run mapped the log makes the check fail and the list read whole: more work, never less.
  const check = list.stale ? { check: `the whole target group is checked at least every ${wholeReadDays} days` } : {};

  // Past a tenth of the snapshot, looking every change up costs more than reading everything once. The triggers log
  // a statement's keys as one marker past the largest such limit of the lists they concern (change_log_key_limit,
  // migration 0011), so a marker sends a list to the whole read only where the statement's keys alone would have, as
  // the lists stood when it was written. Only key rows are left to count here.
  const limit = list.key_limit;
  const tooMany = () => whole(`${check.check ? `${check.check}, and ` : ''}more than ${limit} source changes for the list since its last plan`);
  if (list.mapped_keys !== null) {
    return list.mapped_keys > limit ? tooMany() : { kind: 'changes', ...read, stamp, ...rule, mappedBy: runId!, mappedKeys: list.mapped_keys, ...check };
  }
  if ((await countUnreadKeys(tx, read, activeCampaignIds, limit)) > limit) return tooMany();
  return { kind: 'changes', ...read, stamp, ...rule, ...check };
}

/** The list's unread key rows in the log, counted up to one past `limit`. */
async function countUnreadKeys(tx: Db, read: { from: string; seen: string }, activeCampaignIds: readonly string[], limit: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM (
      SELECT 1 FROM audience_sync.source_changes
      WHERE ${unreadChanges(read)} AND customer_id IS NOT NULL AND (campaign_id IS NULL OR campaign_id = ANY(${activeCampaignIds}::text[]))
      LIMIT ${limit + 1}) w`.execute(tx);
  return rows[0]!.n;
}

/** The whole read a checked read falls back to when the snapshot, after the log's changes, differs from the source. */
export function wholeAfterFailedCheck(read: SourceRead & { kind: 'changes'; check: string }): SourceRead {
  const { from: _from, mappedBy: _mappedBy, mappedKeys: _mappedKeys, check, ...rest } = read;
  return {
    ...rest,
    kind: 'whole',
    reason: `${check}; after the change log's changes the snapshot differed from the source (a write the log missed), so it is read row by row`,
  };
}

/**
 * The list's row as chooseSourceRead weighs it, with the source's catalog
 * rows (its stamp: see sourceStamp), the email rule this plan
 * judges by (audience_sync.email_rule_stamp(), migration 0009: a new rule, or
 * a Postgres whose NFC tables or ICU differ, has every address beyond ASCII
 * judged again; the stamp fails with the command to run when the server's ICU
 * changed since `migrate` calibrated the rule), the run's map of the log for
 * the list, and the first unread marker concerning it.
 */
async function readListForPlan(
  tx: Db,
  segmentId: string,
  activeCampaignIds: readonly string[],
  seenNow: string,
  { wholeReadDays, runId }: { wholeReadDays: number; runId: number | undefined },
) {
  const { rows } = await sql<{
    rule: string;
    rejudge: boolean;
    changes_kept: boolean;
    from: string | null;
    catalog: SourceCatalogRow[] | null;
    source_stamp: string | null;
    same_campaigns: boolean;
    stale: boolean;
    ids_went_back: boolean;
    pruned_past: boolean;
    key_limit: number;
    mapped_seen: string | null;
    mapped_keys: number | null;
    marker: boolean;
    marker_campaign: string | null;
    marker_rows: string | null;
  }>`
    SELECT r.rule, l.email_rule IS DISTINCT FROM r.rule AS rejudge, l.changes_read_in::text AS from, ${mappedWindowOf(runId)},
           m.marker IS NOT NULL AS marker, m.campaign_id AS marker_campaign, m.bulk_rows::text AS marker_rows, to_regclass(${TARGET_CHANGES_NAME}) IS NOT NULL AS changes_kept,
           (SELECT json_agg(c ORDER BY c.relname, c.tgname) FROM (${sourceCatalog}) c) AS catalog, l.source_stamp,
           coalesce(l.snapshot_campaigns @> ${activeCampaignIds}::text[] AND l.snapshot_campaigns <@ ${activeCampaignIds}::text[], false) AS same_campaigns,
           coalesce(statement_timestamp() >= l.whole_read_due OR l.whole_read_at < statement_timestamp() - make_interval(days => ${wholeReadDays}::int), true) AS stale,
           coalesce(pg_snapshot_xmax(l.changes_read_in) > pg_snapshot_xmax(${seenNow}::pg_snapshot), false) AS ids_went_back,
           coalesce((SELECT pruned_below FROM audience_sync.change_log) > pg_snapshot_xmin(l.changes_read_in), true) AS pruned_past,
           ${keyLimitOf(sql`${segmentId}::bigint`)} AS key_limit
    FROM (SELECT audience_sync.email_rule_stamp() AS rule) r
    LEFT JOIN audience_sync.lists l ON l.audience_segment_id = ${segmentId}::bigint ${joinMappedWindow(runId)}
    -- The unread marker that concerns the list, if any (see describeMarker), in the window the plan reads.
    LEFT JOIN LATERAL (
      SELECT true AS marker, s.campaign_id, s.bulk_rows FROM audience_sync.source_changes s
      WHERE s.customer_id IS NULL AND ${unreadBetween(sql`l.changes_read_in`, mappedSeenOr(runId, seenNow))}
        AND (s.campaign_id IS NULL OR s.campaign_id = ANY(${activeCampaignIds}::text[]))
      ORDER BY s.bulk_rows IS NOT NULL, s.campaign_id IS NOT NULL, s.bulk_rows DESC LIMIT 1
    ) m ON true`.execute(tx);
  return rows[0]!;
}

/**
 * Why an unread marker row concerns the list: a TRUNCATE of either table
 * (both keys and bulk_rows NULL), or a statement whose keys exceeded what
 * any list reads from the log (migration 0011): to customers (campaign_id
 * NULL), or to one of the list's campaigns' target-group rows. A marker of
 * another campaign leaves the list to the log.
 */
function describeMarker(campaignId: string | null, bulkRows: string | null): string {
  if (bulkRows === null) return 'a source table was truncated';
  const target = campaignId === null ? 'customers' : `campaign ${campaignId}'s target group`;
  return `a bulk write of ${bulkRows} rows to ${target}`;
}

/**
 * The list's row after its plan: its snapshot holds the source as of
 * `read.seen`, for these campaigns; its ledger may now lag the snapshot, so
 * it is out of step until a fully confirmed sync puts it back (settleInStep);
 * and, when the plan moved the counters by its changes, its count of
 * distinct identifiers (a recount sets its own), and no counter at zero.
 * Returns the counters' rows as the plan left them, read in the same
 * statement (countersFrom makes them the list's counts).
 */
export async function recordListAfterPlan(
  tx: Db,
  segmentId: string,
  read: SourceRead,
  activeCampaignIds: readonly string[],
  { wholeReadDays, identifiers }: { wholeReadDays: number; identifiers: number | null },
): Promise<CounterRow[]> {
  // Due dates are compared with statement_timestamp(), not the transaction's start: a plan whose transaction began
  // before a pruning but took its lock after must see the due date the pruning saw as passed.
  // The due date is stored, not recomputed from the setting: pruning then never depends on how another process is configured.
  // A checked read that matched counts as a whole read: the whole target group equals the snapshot it leaves.
  const wholeTargetGroup = read.kind === 'whole' || read.check !== undefined;
  const { rows } = await sql<CounterRow>`
    WITH emptied_counters AS (
      DELETE FROM audience_sync.list_target_counts WHERE audience_segment_id = ${segmentId}::bigint AND n = 0
    ),
    listed AS (
      UPDATE audience_sync.lists SET
        changes_read_in = ${read.seen}::pg_snapshot,
        source_stamp = ${read.stamp},
        email_rule = ${read.emailRule},
        snapshot_campaigns = ${activeCampaignIds}::text[],
        whole_read_at = CASE WHEN ${wholeTargetGroup} THEN now() ELSE whole_read_at END,
        whole_read_due = CASE WHEN ${wholeTargetGroup} THEN now() + make_interval(days => ${wholeReadDays}::int) ELSE whole_read_due END,
        in_step = false,
        identifiers = coalesce(${identifiers}::bigint, identifiers),
        updated_at = now()
      WHERE audience_segment_id = ${segmentId}::bigint
      RETURNING identifiers
    )
    -- The counters as the plan's earlier statements left them; those at zero, deleted above, are skipped here too.
    SELECT ${segmentId}::text AS segment, l.identifiers, k.scope, k.email_state, k.n
    FROM listed l LEFT JOIN audience_sync.list_target_counts k ON k.audience_segment_id = ${segmentId}::bigint AND k.n <> 0`.execute(tx);
  return rows;
}

/**
 * Deletes the log rows every list that still reads the log has read: those
 * of transactions older than each such list's snapshot (an emptied list, or
 * one due for a whole read, reads none of it). Skipped while a plan holds the log.
 */
export async function pruneChangeLog(db: Db): Promise<number> {
  return db.transaction().execute(async (tx) => {
    if (!(await tryLockChangeLogAlone(tx))) return 0;
    // Recorded first: a list that has not read this far then reads whole, whatever the clocks said (see chooseSourceRead).
    const { rows: bound } = await sql<{ below: string }>`
      UPDATE audience_sync.change_log SET pruned_below = greatest(pruned_below, coalesce(
        (SELECT min(pg_snapshot_xmin(changes_read_in)) FROM audience_sync.lists
         WHERE changes_read_in IS NOT NULL AND statement_timestamp() < whole_read_due),
        pg_snapshot_xmin(pg_current_snapshot())))
      RETURNING pruned_below::text AS below`.execute(tx);
    const pruned = await sql`DELETE FROM audience_sync.source_changes WHERE xid < ${bound[0]!.below}::xid8`.execute(tx);
    return Number(pruned.numAffectedRows ?? 0);
  });
}

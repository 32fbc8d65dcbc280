import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * Match coverage per list, from the latest recorded sync of each list: the
 * funnel from target group to matched Criteo users.
 */

export interface CoverageRow {
  segmentId: string;
  campaignIds: string[];
  lastRunId: number;
  lastStatus: string;
  lastSyncAt: string;
  targetGroupSize: number | null;
  validEmails: number | null;
  uniqueIdentifiers: number | null;
  synced: number;
  criteoIdentifiers: number | null;
  matched: number | null;
  /** matched ÷ identifiers in Criteo, derived from the counts (Criteo's own rate is 0–1 or 0–100, unconfirmed). */
  matchRate: number | null;
  /** matched ÷ target-group customers. */
  coverage: number | null;
  statsReadAt: string | null;
}

export async function coverageByList(db: Db, filter: { segmentIds?: readonly string[] } = {}): Promise<CoverageRow[]> {
  const where = filter.segmentIds ? sql`AND s.audience_segment_id = ANY(${filter.segmentIds}::bigint[])` : sql``;
  const { rows } = await sql<{
    segment_id: string;
    campaign_ids: string[];
    run_id: number;
    status: string;
    finished_at: Date | null;
    started_at: Date;
    target_group_size: number | null;
    missing_customers: number | null;
    without_email: number | null;
    invalid_emails: number | null;
    unique_identifiers: number | null;
    synced: number;
    stats_identifiers: number | null;
    stats_matches: number | null;
    stats_read_at: Date | null;
  }>`
    SELECT DISTINCT ON (s.audience_segment_id)
           s.audience_segment_id::text AS segment_id, s.campaign_ids, s.run_id, s.status, s.started_at, s.finished_at,
           s.target_group_size, s.missing_customers, s.without_email, s.invalid_emails, s.unique_identifiers,
           (SELECT count(*) FROM audience_sync.list_members m WHERE m.audience_segment_id = s.audience_segment_id)::bigint AS synced,
           st.stats_identifiers, st.stats_matches, st.stats_read_at
    FROM audience_sync.list_syncs s
    LEFT JOIN LATERAL (
      SELECT x.stats_identifiers, x.stats_matches, x.stats_read_at FROM audience_sync.list_syncs x
      WHERE x.audience_segment_id = s.audience_segment_id AND x.stats_read_at IS NOT NULL
      ORDER BY x.list_sync_id DESC LIMIT 1
    ) st ON true
    WHERE s.status <> 'skipped' ${where}
    ORDER BY s.audience_segment_id, s.list_sync_id DESC`.execute(db);
  return rows.map((r) => {
    const valid =
      r.target_group_size === null ? null : r.target_group_size - (r.missing_customers ?? 0) - (r.without_email ?? 0) - (r.invalid_emails ?? 0);
    return {
      segmentId: r.segment_id,
      campaignIds: r.campaign_ids,
      lastRunId: r.run_id,
      lastStatus: r.status,
      lastSyncAt: (r.finished_at ?? r.started_at).toISOString(),
      targetGroupSize: r.target_group_size,
      validEmails: valid,
      uniqueIdentifiers: r.unique_identifiers,
      synced: r.synced,
      criteoIdentifiers: r.stats_identifiers,
      matched: r.stats_matches,
      matchRate: r.stats_identifiers && r.stats_matches !== null ? r.stats_matches / r.stats_identifiers : null,
      coverage: r.target_group_size && r.stats_matches !== null ? r.stats_matches / r.target_group_size : null,
      statsReadAt: r.stats_read_at?.toISOString() ?? null,
    };
  });
}

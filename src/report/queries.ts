import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import { CAMPAIGN_LISTS } from '../source/list-bindings.js';

/**
 * The report's reads of the audit trail, one named statement each, set-based
 * over every list in scope. Nothing here writes.
 *
 * "Synced" (the ledger after a list sync) is read, not derived: a list sync's
 * ledger_before is the exact ledger the previous one left (the list lock
 * serialises them), and the ledger itself is what the latest one left.
 * ledger_before + added − removed would be close but not exact: a --full
 * resync re-sends identifiers the ledger already holds and counts them as added.
 */

export interface CampaignInfo {
  campaignId: string;
  name: string;
  advertiserId: string;
  startsAt: string;
  measurementEndsAt: string;
}

export interface ListInScopeRow {
  segmentId: string;
  campaigns: CampaignInfo[];
  ledgerNow: number;
  lastSuccessAt: Date | null;
  lastAttempt: { runId: number; status: string; reason: string | null; finishedAt: string | null } | null;
  /** When Criteo created the list, for a list the job created for a campaign that names it. */
  createdByJobAt: string | null;
}

/** Lists a campaign points at or a run has synced, narrowed to one list or one campaign's list. */
export async function readListsInScope(db: Db, filter: { segmentId?: string; campaignId?: string }): Promise<ListInScopeRow[]> {
  const where = filter.segmentId
    ? sql`WHERE l.audience_segment_id = ${filter.segmentId}::bigint`
    : filter.campaignId
      ? sql`WHERE l.audience_segment_id IN (
              SELECT audience_segment_id FROM ${CAMPAIGN_LISTS} c WHERE campaign_id = ${filter.campaignId}
              UNION SELECT audience_segment_id FROM audience_sync.list_syncs WHERE ${filter.campaignId} = ANY(campaign_ids))`
      : sql``;
  const { rows } = await sql<{
    segment_id: string;
    campaigns: CampaignInfo[];
    ledger_now: number;
    last_success_at: Date | null;
    last_attempt: { runId: number; status: string; reason: string | null; finishedAt: string | null } | null;
    created_by_job_at: Date | null;
  }>`
    WITH lists AS (
      SELECT audience_segment_id FROM ${CAMPAIGN_LISTS} c WHERE audience_segment_id IS NOT NULL
      UNION SELECT audience_segment_id FROM audience_sync.list_syncs
    )
    SELECT l.audience_segment_id::text AS segment_id,
           coalesce((SELECT json_agg(json_build_object(
                       'campaignId', c.campaign_id, 'name', c.name, 'advertiserId', c.advertiser_id::text,
                       'startsAt', c.starts_at, 'measurementEndsAt', c.measurement_ends_at) ORDER BY c.campaign_id)
                     FROM ${CAMPAIGN_LISTS} c WHERE c.audience_segment_id = l.audience_segment_id), '[]') AS campaigns,
           (SELECT count(*) FROM audience_sync.list_members m WHERE m.audience_segment_id = l.audience_segment_id)::bigint AS ledger_now,
           (SELECT max(s.finished_at) FROM audience_sync.list_syncs s
             WHERE s.audience_segment_id = l.audience_segment_id AND s.status = 'succeeded') AS last_success_at,
           (SELECT json_build_object('runId', s.run_id, 'status', s.status, 'reason', s.reason, 'finishedAt', s.finished_at)
              FROM audience_sync.list_syncs s
             WHERE s.audience_segment_id = l.audience_segment_id AND s.status NOT IN ('planning', 'sending')
             ORDER BY s.list_sync_id DESC LIMIT 1) AS last_attempt,
           (SELECT max(coalesce(b.list_created_at, b.bound_at)) FROM audience_sync.list_bindings b
             WHERE b.audience_segment_id = l.audience_segment_id AND b.created) AS created_by_job_at
    FROM lists l
    ${where}
    ORDER BY l.audience_segment_id`.execute(db);
  return rows.map((r) => ({
    segmentId: r.segment_id,
    campaigns: r.campaigns.map((c) => ({
      campaignId: c.campaignId,
      name: c.name,
      advertiserId: c.advertiserId,
      startsAt: iso(c.startsAt),
      measurementEndsAt: iso(c.measurementEndsAt),
    })),
    ledgerNow: r.ledger_now,
    lastSuccessAt: r.last_success_at,
    lastAttempt: r.last_attempt ? { ...r.last_attempt, finishedAt: r.last_attempt.finishedAt ? iso(r.last_attempt.finishedAt) : null } : null,
    createdByJobAt: r.created_by_job_at?.toISOString() ?? null,
  }));
}

export interface ListSyncRow {
  list_sync_id: number;
  run_id: number;
  trigger: string;
  run_started_at: Date;
  finished_at: Date | null;
  segment_id: string;
  advertiser_id: string | null;
  campaign_ids: string[];
  action: 'sync' | 'empty';
  status: string;
  reason: string | null;
  target_group_size: number | null;
  missing_customers: number | null;
  without_email: number | null;
  invalid_emails: number | null;
  unique_identifiers: number | null;
  ledger_before: number | null;
  added: number;
  removed: number;
  held_removals: number;
  newly_valid_emails: number | null;
  emptied: boolean;
  stats_identifiers: number | null;
  stats_matches: number | null;
  stats_read_at: Date | null;
  /** The next list sync's ledger_before; null for the latest (whose ledger is the current one). */
  ledger_after: number | null;
}

/** Every finished list sync of these lists in runs started since `since`, oldest first. */
export async function readListSyncs(db: Db, segmentIds: readonly string[], since: Date): Promise<ListSyncRow[]> {
  if (segmentIds.length === 0) return [];
  const { rows } = await sql<ListSyncRow>`
    SELECT s.list_sync_id, s.run_id, r.trigger, r.started_at AS run_started_at, s.finished_at,
           s.audience_segment_id::text AS segment_id, s.advertiser_id::text AS advertiser_id, s.campaign_ids,
           s.action, s.status, s.reason, s.target_group_size, s.missing_customers, s.without_email, s.invalid_emails,
           s.unique_identifiers, s.ledger_before, s.added, s.removed, s.held_removals, s.newly_valid_emails, s.emptied,
           s.stats_identifiers, s.stats_matches, s.stats_read_at,
           (SELECT n.ledger_before FROM audience_sync.list_syncs n
             WHERE n.audience_segment_id = s.audience_segment_id AND n.list_sync_id > s.list_sync_id AND n.ledger_before IS NOT NULL
             ORDER BY n.list_sync_id LIMIT 1) AS ledger_after
    FROM audience_sync.list_syncs s
    JOIN audience_sync.runs r ON r.run_id = s.run_id
    WHERE s.audience_segment_id = ANY(${segmentIds}::bigint[])
      AND r.started_at >= ${since}
      AND s.status NOT IN ('skipped', 'planning', 'sending')
    ORDER BY s.audience_segment_id, s.list_sync_id`.execute(db);
  return rows;
}

export interface BatchRow {
  list_sync_id: number;
  seq: number;
  operation: 'add' | 'remove' | 'delete';
  size: number;
  status: string;
  http_status: number | null;
  nb_valid: number | null;
  nb_invalid: number | null;
  sample_invalid: string[] | null;
  attempts: number;
  waited_ms: number;
  duration_ms: number | null;
  error_code: string | null;
  trace_id: string | null;
}

/**
 * The batches of these list syncs, each list sync's in the order they were
 * claimed (batch_id; concurrent sends may claim them out of seq order), with
 * Criteo's answer to each. The sample of invalid identifiers is of hashes sent,
 * never of emails. `report` and `runs show` both read batches here.
 */
export async function readBatches(db: Db, listSyncIds: readonly number[]): Promise<BatchRow[]> {
  if (listSyncIds.length === 0) return [];
  const { rows } = await sql<BatchRow>`
    SELECT list_sync_id, seq, operation, size, status, http_status, nb_valid, nb_invalid, sample_invalid,
           attempts, waited_ms, duration_ms, error_code, trace_id
    FROM audience_sync.batches
    WHERE list_sync_id = ANY(${listSyncIds}::bigint[])
    ORDER BY list_sync_id, batch_id`.execute(db);
  return rows;
}

export interface CampaignFunnelRow {
  list_sync_id: number;
  campaign_id: string;
  name: string | null;
  target_group_size: number;
  missing_customers: number;
  without_email: number;
  invalid_emails: number;
  unique_identifiers: number;
}

export async function readCampaignFunnels(db: Db, listSyncIds: readonly number[]): Promise<CampaignFunnelRow[]> {
  if (listSyncIds.length === 0) return [];
  const { rows } = await sql<CampaignFunnelRow>`
    SELECT f.list_sync_id, f.campaign_id, c.name, f.target_group_size, f.missing_customers, f.without_email,
           f.invalid_emails, f.unique_identifiers
    FROM audience_sync.list_sync_campaigns f
    LEFT JOIN audience_sync.campaigns c ON c.campaign_id = f.campaign_id
    WHERE f.list_sync_id = ANY(${listSyncIds}::bigint[])
    ORDER BY f.list_sync_id, f.campaign_id`.execute(db);
  return rows;
}

export interface StatisticsReadingRow {
  segment_id: string;
  run_id: number;
  stats_identifiers: number | null;
  stats_matches: number | null;
  stats_read_at: Date;
  /** The ledger after the last sync that finished at least a day before the reading, and when. */
  settled: { finishedAt: string; ledger: number } | null;
  /** Ledger sizes after the syncs of the day before the reading (Criteo may reflect any of them). */
  recent_ledgers: number[];
}

/**
 * Each list's latest Criteo statistics, with the ledger sizes it should
 * agree with: Criteo takes up to a day to process an update, so a reading is
 * held against the ledger a day before it and every ledger since.
 */
export async function readLatestStatistics(db: Db, segmentIds: readonly string[], settleHours: number): Promise<StatisticsReadingRow[]> {
  if (segmentIds.length === 0) return [];
  const { rows } = await sql<StatisticsReadingRow>`
    WITH latest AS (
      SELECT DISTINCT ON (audience_segment_id) audience_segment_id, run_id, stats_identifiers, stats_matches, stats_read_at
      FROM audience_sync.list_syncs
      WHERE stats_read_at IS NOT NULL AND audience_segment_id = ANY(${segmentIds}::bigint[])
      ORDER BY audience_segment_id, stats_read_at DESC
    ), syncs AS (
      SELECT s.audience_segment_id, s.finished_at,
             coalesce(
               (SELECT n.ledger_before FROM audience_sync.list_syncs n
                 WHERE n.audience_segment_id = s.audience_segment_id AND n.list_sync_id > s.list_sync_id AND n.ledger_before IS NOT NULL
                 ORDER BY n.list_sync_id LIMIT 1),
               (SELECT count(*) FROM audience_sync.list_members m WHERE m.audience_segment_id = s.audience_segment_id)) AS ledger_after
      FROM audience_sync.list_syncs s
      JOIN latest l ON l.audience_segment_id = s.audience_segment_id
      WHERE s.status NOT IN ('skipped', 'planning', 'sending') AND s.finished_at <= l.stats_read_at
    )
    SELECT l.audience_segment_id::text AS segment_id, l.run_id, l.stats_identifiers, l.stats_matches, l.stats_read_at,
           (SELECT json_build_object('finishedAt', x.finished_at, 'ledger', x.ledger_after) FROM syncs x
             WHERE x.audience_segment_id = l.audience_segment_id
               AND x.finished_at <= l.stats_read_at - make_interval(hours => ${settleHours}::int)
             ORDER BY x.finished_at DESC LIMIT 1) AS settled,
           coalesce((SELECT array_agg(x.ledger_after::bigint ORDER BY x.finished_at) FROM syncs x
             WHERE x.audience_segment_id = l.audience_segment_id
               AND x.finished_at > l.stats_read_at - make_interval(hours => ${settleHours}::int)), '{}') AS recent_ledgers
    FROM latest l
    ORDER BY l.audience_segment_id`.execute(db);
  return rows.map((r) => ({ ...r, recent_ledgers: r.recent_ledgers.map(Number) }));
}

function iso(value: string): string {
  return new Date(value).toISOString();
}

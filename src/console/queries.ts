import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import type { RunRow } from '../report/history.js';
import { CAMPAIGN_LISTS } from '../source/list-bindings.js';

/**
 * The console's own reads of the audit trail, one named statement each; the
 * report's and the history's reads are reused as they are. Nothing here
 * writes, and nothing reads an email or an identifier: counts, statuses and
 * Criteo's answers only.
 */

export interface ListSyncProgressRow {
  segmentId: string;
  status: string;
  action: 'sync' | 'empty';
  toAdd: number | null;
  toRemove: number | null;
  heldRemovals: number;
  /** Identifiers in the list sync's confirmed batches so far. */
  confirmed: number;
  reason: string | null;
}

export interface RunProgressRow {
  runId: number;
  trigger: string;
  status: string;
  error: string | null;
  /** The lists the run was asked for (null: every list). */
  segmentIds: string[] | null;
  lists: ListSyncProgressRow[];
}

/** A run's live state as any process sees it: its status, and each list sync's confirmed identifiers against its plan. */
export async function readRunProgress(db: Db, runId: number): Promise<RunProgressRow | undefined> {
  const run = await db
    .selectFrom('audience_sync.runs')
    .select(['run_id', 'trigger', 'status', 'error', 'options'])
    .where('run_id', '=', runId)
    .executeTakeFirst();
  if (!run) return undefined;
  const { rows } = await sql<ListSyncProgressRow>`
    SELECT s.audience_segment_id::text AS "segmentId", s.status, s.action, s.to_add AS "toAdd", s.to_remove AS "toRemove",
           s.held_removals AS "heldRemovals", s.reason,
           coalesce((SELECT sum(b.size) FROM audience_sync.batches b WHERE b.list_sync_id = s.list_sync_id AND b.status = 'confirmed'), 0)::bigint AS confirmed
    FROM audience_sync.list_syncs s
    WHERE s.run_id = ${runId}
    ORDER BY s.list_sync_id`.execute(db);
  const chosen = (run.options as { segmentIds?: unknown }).segmentIds;
  return {
    runId: run.run_id,
    trigger: run.trigger,
    status: run.status,
    error: run.error,
    segmentIds: Array.isArray(chosen) ? chosen.map(String) : null,
    lists: rows,
  };
}

export interface ListRunRow {
  listSyncId: number;
  runId: number;
  trigger: string;
  runStartedAt: string;
  finishedAt: string | null;
  action: string;
  status: string;
  reason: string | null;
  errorCode: string | null;
  traceId: string | null;
  toAdd: number | null;
  toRemove: number | null;
  added: number;
  removed: number;
}

/** A list's latest list syncs, newest first, with who started each run. */
export async function readListRuns(db: Db, segmentId: string, limit: number): Promise<ListRunRow[]> {
  const { rows } = await sql<Omit<ListRunRow, 'runStartedAt' | 'finishedAt'> & { runStartedAt: Date; finishedAt: Date | null }>`
    SELECT s.list_sync_id AS "listSyncId", s.run_id AS "runId", r.trigger, r.started_at AS "runStartedAt", s.finished_at AS "finishedAt",
           s.action, s.status, s.reason, s.error_code AS "errorCode", s.trace_id AS "traceId",
           s.to_add AS "toAdd", s.to_remove AS "toRemove", s.added, s.removed
    FROM audience_sync.list_syncs s
    JOIN audience_sync.runs r ON r.run_id = s.run_id
    WHERE s.audience_segment_id = ${segmentId}::bigint
    ORDER BY s.list_sync_id DESC
    LIMIT ${limit}`.execute(db);
  return rows.map((r) => ({ ...r, runStartedAt: r.runStartedAt.toISOString(), finishedAt: r.finishedAt?.toISOString() ?? null }));
}

export interface CampaignRow {
  campaignId: string;
  name: string;
  advertiserId: string;
  startsAt: string;
  measurementEndsAt: string;
  /** The list it feeds: its own id, or the list the job bound its name to. */
  segmentId: string | null;
  /** Its own funnel at the latest list sync that planned it. */
  latest: { runId: number; targetGroup: number; validEmail: number } | null;
}

/** Every campaign, with its list and its own funnel as the latest run that planned it counted it. */
export async function readCampaigns(db: Db): Promise<CampaignRow[]> {
  const { rows } = await sql<{
    campaign_id: string;
    name: string;
    advertiser_id: string;
    starts_at: Date;
    measurement_ends_at: Date;
    segment_id: string | null;
    run_id: number | null;
    target_group_size: number | null;
    valid_email: number | null;
  }>`
    SELECT c.campaign_id, c.name, c.advertiser_id::text AS advertiser_id, c.starts_at, c.measurement_ends_at,
           c.audience_segment_id::text AS segment_id, f.run_id, f.target_group_size,
           (f.target_group_size - f.missing_customers - f.without_email - f.invalid_emails)::bigint AS valid_email
    FROM ${CAMPAIGN_LISTS} c
    LEFT JOIN LATERAL (
      SELECT s.run_id, x.target_group_size, x.missing_customers, x.without_email, x.invalid_emails
      FROM audience_sync.list_sync_campaigns x JOIN audience_sync.list_syncs s ON s.list_sync_id = x.list_sync_id
      WHERE x.campaign_id = c.campaign_id
      ORDER BY x.list_sync_id DESC LIMIT 1) f ON true
    ORDER BY c.campaign_id`.execute(db);
  return rows.map((r) => ({
    campaignId: r.campaign_id,
    name: r.name,
    advertiserId: r.advertiser_id,
    startsAt: r.starts_at.toISOString(),
    measurementEndsAt: r.measurement_ends_at.toISOString(),
    segmentId: r.segment_id,
    latest: r.run_id === null ? null : { runId: r.run_id, targetGroup: r.target_group_size ?? 0, validEmail: r.valid_email ?? 0 },
  }));
}

export interface RunFilter {
  status?: string | undefined;
  /** Part of the trigger: "console", "console:alice", "schedule". */
  trigger?: string | undefined;
  segmentId?: string | undefined;
  limit: number;
}

/** The run history, newest first, narrowed by status, trigger and list; the rows `runs` prints. */
export async function findRuns(db: Db, filter: RunFilter): Promise<RunRow[]> {
  const conditions = [
    filter.status ? sql`r.status = ${filter.status}` : null,
    filter.trigger ? sql`strpos(r.trigger, ${filter.trigger}) > 0` : null,
    filter.segmentId
      ? sql`EXISTS (SELECT 1 FROM audience_sync.list_syncs x WHERE x.run_id = r.run_id AND x.audience_segment_id = ${filter.segmentId}::bigint)`
      : null,
  ].filter((c) => c !== null);
  const where = conditions.length > 0 ? sql`WHERE ${sql.join(conditions, sql` AND `)}` : sql``;
  const { rows } = await sql<Omit<RunRow, 'asOf' | 'startedAt' | 'finishedAt'> & { asOf: Date; startedAt: Date; finishedAt: Date | null }>`
    SELECT r.run_id AS "runId", r.trigger, r.status, r.as_of AS "asOf", r.started_at AS "startedAt", r.finished_at AS "finishedAt", r.error,
           count(s.list_sync_id)::bigint AS lists,
           count(s.list_sync_id) FILTER (WHERE s.status IN ('failed', 'incomplete', 'held'))::bigint AS "listsFailed",
           coalesce(sum(s.added), 0)::bigint AS added,
           coalesce(sum(s.removed), 0)::bigint AS removed
    FROM audience_sync.runs r
    LEFT JOIN audience_sync.list_syncs s ON s.run_id = r.run_id
    ${where}
    GROUP BY r.run_id
    ORDER BY r.run_id DESC
    LIMIT ${filter.limit}`.execute(db);
  return rows.map((r) => ({ ...r, asOf: r.asOf.toISOString(), startedAt: r.startedAt.toISOString(), finishedAt: r.finishedAt?.toISOString() ?? null }));
}

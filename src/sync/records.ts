import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import { runLockFree } from '../db/locks.js';
import type { ListSyncStatus, RunStatus } from '../db/schema.js';
import type { CampaignFunnelCounts, FunnelCounts } from '../source/target-groups.js';
import type { ListStatistics } from '../criteo/client.js';
import { uncertainBatches, uncertaintyOf, type ListSyncCounts, type UncertainBatch } from './ledger.js';
import type { Uncertainty } from './plan.js';

/**
 * The audit trail: a row per run, per list within it, per batch (ledger.ts).
 * States move forward only:
 *   run:       running → succeeded | failed | interrupted | aborted
 *   list sync: planning → sending → succeeded | held | failed | incomplete
 *              planning → skipped (locked by another run)
 */

export async function finishRun(db: Db, runId: number, status: RunStatus, error?: string): Promise<void> {
  await db
    .updateTable('audience_sync.runs')
    .set({ status, finished_at: new Date(), error: error ?? null })
    .where('run_id', '=', runId)
    .execute();
}

/**
 * Runs still marked 'running' whose process is gone: each live run holds a
 * session advisory lock on its id, so a lock we can take is a dead run.
 */
export async function closeAbandonedRuns(db: Db): Promise<number[]> {
  const { rows } = await sql<{ run_id: number }>`
    UPDATE audience_sync.runs r SET status = 'interrupted', finished_at = now(),
           error = coalesce(error, 'the process ended before the run finished')
    WHERE r.status = 'running'
      AND ${runLockFree(sql.ref('r.run_id'))}
    RETURNING r.run_id`.execute(db);
  if (rows.length > 0) {
    await sql`
      UPDATE audience_sync.list_syncs SET status = 'incomplete', finished_at = now(),
             reason = coalesce(reason, 'interrupted: the run ended before this list finished')
      WHERE run_id = ANY(${rows.map((r) => r.run_id)}::bigint[]) AND status IN ('planning', 'sending')`.execute(db);
  }
  return rows.map((r) => r.run_id);
}

export interface ListSyncStart {
  runId: number;
  segmentId: string;
  advertiserId: string | null;
  campaignIds: string[];
  action: 'sync' | 'empty';
}

/** A funnel as the columns list_syncs and list_sync_campaigns store it in. */
function funnelColumns(f: Omit<FunnelCounts, 'uniqueIdentifiers'> & { uniqueIdentifiers: number | null }) {
  return {
    target_group_size: f.targetGroupSize,
    missing_customers: f.missingCustomers,
    without_email: f.withoutEmail,
    invalid_emails: f.invalidEmails,
    unique_identifiers: f.uniqueIdentifiers,
  };
}

/** A list sync without a funnel (a list being emptied). */
const NO_FUNNEL = { target_group_size: null, missing_customers: null, without_email: null, invalid_emails: null, unique_identifiers: null };

/** SQL: a list sync's row, 'planning', returning its id. */
const insertListSync = (s: ListSyncStart) => sql`
  INSERT INTO audience_sync.list_syncs (run_id, audience_segment_id, advertiser_id, campaign_ids, action)
  VALUES (${s.runId}, ${s.segmentId}::bigint, ${s.advertiserId}::bigint, ${s.campaignIds}::text[], ${s.action})
  RETURNING list_sync_id`;

/**
 * Starts the list sync of a list whose lock this process holds, and reads
 * what its ledger leaves uncertain (findUncertainty), in one statement.
 */
export async function startLockedListSync(db: Db, s: ListSyncStart): Promise<{ listSyncId: number; uncertainty: Uncertainty }> {
  const { rows } = await sql<{ list_sync_id: number } & Partial<UncertainBatch>>`
    WITH started AS (${insertListSync(s)})
    SELECT s.list_sync_id, b.batch_id, b.operation, b.status FROM started s LEFT JOIN (${uncertainBatches(s.segmentId)}) b ON true`.execute(db);
  const batches = rows.filter((r): r is { list_sync_id: number } & UncertainBatch => r.batch_id != null);
  return { listSyncId: rows[0]!.list_sync_id, uncertainty: uncertaintyOf(batches) };
}

export async function startListSync(db: Db, s: ListSyncStart): Promise<number> {
  const { rows } = await sql<{ list_sync_id: number }>`${insertListSync(s)}`.execute(db);
  return rows[0]!.list_sync_id;
}

/**
 * The plan's figures on its list sync, now 'sending', with each active
 * campaign's funnel and any removals the guard holds back, in one statement.
 */
export async function recordListPlan(
  db: Db,
  listSyncId: number,
  plan: {
    funnel?: FunnelCounts;
    campaignFunnels?: readonly CampaignFunnelCounts[];
    ledgerBefore: number;
    toAdd: number;
    toRemove: number;
    heldRemovals?: number;
    newlyValidEmails?: number | null;
  },
): Promise<void> {
  const f = plan.funnel ? funnelColumns(plan.funnel) : NO_FUNNEL;
  const campaigns = JSON.stringify((plan.campaignFunnels ?? []).map((c) => ({ campaign_id: c.campaignId, ...funnelColumns(c) })));
  await sql`
    WITH campaigns AS (
      INSERT INTO audience_sync.list_sync_campaigns
        (list_sync_id, campaign_id, target_group_size, missing_customers, without_email, invalid_emails, unique_identifiers)
      SELECT ${listSyncId}, c.campaign_id, c.target_group_size, c.missing_customers, c.without_email, c.invalid_emails, c.unique_identifiers
      FROM jsonb_to_recordset(${campaigns}::jsonb)
        AS c(campaign_id text, target_group_size bigint, missing_customers bigint, without_email bigint, invalid_emails bigint, unique_identifiers bigint)
      RETURNING 1
    )
    UPDATE audience_sync.list_syncs SET
      status = 'sending', target_group_size = ${f.target_group_size}, missing_customers = ${f.missing_customers},
      without_email = ${f.without_email}, invalid_emails = ${f.invalid_emails}, unique_identifiers = ${f.unique_identifiers},
      ledger_before = ${plan.ledgerBefore}, to_add = ${plan.toAdd}, to_remove = ${plan.toRemove},
      held_removals = ${plan.heldRemovals ?? 0}, newly_valid_emails = ${plan.newlyValidEmails ?? null}
    WHERE list_sync_id = ${listSyncId}`.execute(db);
}

/** Records how a list sync ended; returns what the ledger confirmed for it: identifiers added and removed, and whether the list was emptied. */
export async function finishListSync(
  db: Db,
  listSyncId: number,
  status: ListSyncStatus,
  detail: { reason?: string; errorCode?: string; traceId?: string } = {},
): Promise<ListSyncCounts | undefined> {
  return db
    .updateTable('audience_sync.list_syncs')
    .set({
      status,
      finished_at: new Date(),
      reason: detail.reason ?? null,
      error_code: detail.errorCode ?? null,
      trace_id: detail.traceId ?? null,
    })
    .where('list_sync_id', '=', listSyncId)
    .returning(['added', 'removed', 'emptied'])
    .executeTakeFirst();
}

export async function recordListStatistics(db: Db, listSyncId: number, stats: ListStatistics): Promise<void> {
  await db
    .updateTable('audience_sync.list_syncs')
    .set({
      stats_identifiers: stats.numberOfIdentifiers,
      stats_matches: stats.numberOfMatches,
      stats_match_rate: stats.matchRate,
      stats_read_at: new Date(),
    })
    .where('list_sync_id', '=', listSyncId)
    .execute();
}

/** Rows per statement of a set-based insert: well under Postgres's 65,535 parameters at any width here. */
const ROWS_PER_INSERT = 1000;

/** The campaign funnels of several list syncs. */
export async function recordCampaignFunnelsOf(db: Db, syncs: readonly { listSyncId: number; funnels: readonly CampaignFunnelCounts[] }[]): Promise<void> {
  const rows = syncs.flatMap(({ listSyncId, funnels }) =>
    funnels.map((f) => ({
      list_sync_id: listSyncId,
      campaign_id: f.campaignId,
      ...funnelColumns(f),
    })),
  );
  for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
    await db
      .insertInto('audience_sync.list_sync_campaigns')
      .values(rows.slice(i, i + ROWS_PER_INSERT))
      .execute();
  }
}

/**
 * List syncs that end as they start, with nothing to send (lists nothing
 * changed for): written whole, 'succeeded', several in one statement.
 * Returns each one's id by list.
 */
export async function recordSettledListSyncs(
  db: Db,
  syncs: readonly (ListSyncStart & { funnel: FunnelCounts; ledgerBefore: number; reason: string | null })[],
): Promise<Map<string, number>> {
  const ids = new Map<string, number>();
  for (let i = 0; i < syncs.length; i += ROWS_PER_INSERT) {
    const rows = await db
      .insertInto('audience_sync.list_syncs')
      .values(
        syncs.slice(i, i + ROWS_PER_INSERT).map((s) => ({
          run_id: s.runId,
          audience_segment_id: s.segmentId,
          advertiser_id: s.advertiserId,
          campaign_ids: s.campaignIds,
          action: s.action,
          status: 'succeeded' as const,
          finished_at: new Date(),
          ...funnelColumns(s.funnel),
          ledger_before: s.ledgerBefore,
          to_add: 0,
          to_remove: 0,
          reason: s.reason,
        })),
      )
      .returning(['list_sync_id', 'audience_segment_id'])
      .execute();
    for (const r of rows) ids.set(String(r.audience_segment_id), r.list_sync_id);
  }
  return ids;
}

/** The run whose sync of the list is still planning or sending: the holder of the list's lock. */
export async function listSyncHolder(db: Db, segmentId: string): Promise<number | null> {
  const { rows } = await sql<{ run_id: number }>`
    SELECT run_id FROM audience_sync.list_syncs
    WHERE audience_segment_id = ${segmentId}::bigint AND status IN ('planning', 'sending')
    ORDER BY list_sync_id DESC LIMIT 1`.execute(db);
  return rows[0]?.run_id ?? null;
}

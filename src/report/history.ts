import { sql, type Selectable } from 'kysely';
import type { Db } from '../db/connection.js';
import type { ListSyncsTable } from '../db/schema.js';
import { readBatches, type BatchRow } from './queries.js';

/** Reads of the audit trail for `runs` and `runs show ID`. */

export interface RunRow {
  runId: number;
  trigger: string;
  status: string;
  asOf: string;
  startedAt: string;
  finishedAt: string | null;
  lists: number;
  listsFailed: number;
  added: number;
  removed: number;
  error: string | null;
}

export async function recentRuns(db: Db, limit = 20, onlyRunId?: number): Promise<RunRow[]> {
  const { rows } = await sql<{
    run_id: number;
    trigger: string;
    status: string;
    as_of: Date;
    started_at: Date;
    finished_at: Date | null;
    lists: number;
    lists_failed: number;
    added: number;
    removed: number;
    error: string | null;
  }>`
    SELECT r.run_id, r.trigger, r.status, r.as_of, r.started_at, r.finished_at, r.error,
           count(s.list_sync_id)::bigint AS lists,
           count(s.list_sync_id) FILTER (WHERE s.status IN ('failed', 'incomplete', 'held'))::bigint AS lists_failed,
           coalesce(sum(s.added), 0)::bigint AS added,
           coalesce(sum(s.removed), 0)::bigint AS removed
    FROM audience_sync.runs r
    LEFT JOIN audience_sync.list_syncs s ON s.run_id = r.run_id
    ${onlyRunId === undefined ? sql`` : sql`WHERE r.run_id = ${onlyRunId}`}
    GROUP BY r.run_id
    ORDER BY r.run_id DESC
    LIMIT ${limit}`.execute(db);
  return rows.map((r) => ({
    runId: r.run_id,
    trigger: r.trigger,
    status: r.status,
    asOf: r.as_of.toISOString(),
    startedAt: r.started_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
    lists: r.lists,
    listsFailed: r.lists_failed,
    added: r.added,
    removed: r.removed,
    error: r.error,
  }));
}

interface BatchDetail {
  seq: number;
  operation: string;
  size: number;
  status: string;
  httpStatus: number | null;
  nbValid: number | null;
  nbInvalid: number | null;
  attempts: number;
  waitedMs: number;
  durationMs: number | null;
  errorCode: string | null;
  traceId: string | null;
}

interface ListSyncDetail {
  listSyncId: number;
  segmentId: string;
  action: string;
  status: string;
  campaignIds: string[];
  targetGroupSize: number | null;
  uniqueIdentifiers: number | null;
  ledgerBefore: number | null;
  toAdd: number | null;
  toRemove: number | null;
  added: number;
  removed: number;
  heldRemovals: number;
  /** After a change of email rule: customers whose email was invalid and is valid now. */
  newlyValidEmails: number | null;
  emptied: boolean;
  reason: string | null;
  errorCode: string | null;
  traceId: string | null;
  /** In the order they were claimed. */
  batches: BatchDetail[];
}

/** `runs show ID`: the run, then each of its list syncs with its batches. */
/** A campaign of the run that names its list: the list the job bound it to (its current binding). */
export interface RunBinding {
  campaignId: string;
  name: string;
  segmentId: string;
  created: boolean;
  boundAt: string;
}

export interface RunDetail {
  run: RunRow;
  bindings: RunBinding[];
  lists: ListSyncDetail[];
}

export async function runDetail(db: Db, runId: number): Promise<RunDetail | undefined> {
  const run = (await recentRuns(db, 1, runId))[0];
  if (!run) return undefined;
  const lists = await db.selectFrom('audience_sync.list_syncs').selectAll().where('run_id', '=', runId).orderBy('list_sync_id').execute();
  const batches = await readBatches(
    db,
    lists.map((l) => l.list_sync_id),
  );
  const bindings = await readRunBindings(
    db,
    lists.flatMap((l) => l.campaign_ids),
  );
  return { run, bindings, lists: lists.map((l) => listSyncDetail(l, batches)) };
}

async function readRunBindings(db: Db, campaignIds: readonly string[]): Promise<RunBinding[]> {
  if (campaignIds.length === 0) return [];
  const rows = await db
    .selectFrom('audience_sync.list_bindings')
    .selectAll()
    .where('campaign_id', 'in', [...new Set(campaignIds)])
    .orderBy('campaign_id')
    .execute();
  return rows.map((r) => ({
    campaignId: r.campaign_id,
    name: r.segment_name,
    segmentId: String(r.audience_segment_id),
    created: r.created,
    boundAt: r.bound_at.toISOString(),
  }));
}

function listSyncDetail(l: Selectable<ListSyncsTable>, batches: readonly BatchRow[]): ListSyncDetail {
  return {
    listSyncId: l.list_sync_id,
    segmentId: String(l.audience_segment_id),
    action: l.action,
    status: l.status,
    campaignIds: l.campaign_ids,
    targetGroupSize: l.target_group_size,
    uniqueIdentifiers: l.unique_identifiers,
    ledgerBefore: l.ledger_before,
    toAdd: l.to_add,
    toRemove: l.to_remove,
    added: l.added,
    removed: l.removed,
    heldRemovals: l.held_removals,
    newlyValidEmails: l.newly_valid_emails,
    emptied: l.emptied,
    reason: l.reason,
    errorCode: l.error_code,
    traceId: l.trace_id,
    batches: batches.filter((b) => b.list_sync_id === l.list_sync_id).map(batchDetail),
  };
}

function batchDetail(b: BatchRow): BatchDetail {
  return {
    seq: b.seq,
    operation: b.operation,
    size: b.size,
    status: b.status,
    httpStatus: b.http_status,
    nbValid: b.nb_valid,
    nbInvalid: b.nb_invalid,
    attempts: b.attempts,
    waitedMs: b.waited_ms,
    durationMs: b.duration_ms,
    errorCode: b.error_code,
    traceId: b.trace_id,
  };
}

import { sql } from 'kysely';
import { oneLine } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/connection.js';
import { recordListStatistics } from './records.js';
import type { ListOutcome, SyncDeps } from './types.js';

/** A live list's statistics are read at least this often, so the report never shows stale figures. */
const STATISTICS_MAX_AGE_MS = 20 * 3_600_000;

/** Whether the list's last statistics reading is missing or older than a day's run allows. */
export async function statisticsDue(db: Db, segmentId: string): Promise<boolean> {
  const { rows } = await sql<{ read_at: Date | null }>`
    SELECT max(stats_read_at) AS read_at FROM audience_sync.list_syncs WHERE audience_segment_id = ${segmentId}::bigint`.execute(db);
  const readAt = rows[0]?.read_at;
  return !readAt || Date.now() - readAt.getTime() > STATISTICS_MAX_AGE_MS;
}

/** Reads Criteo's statistics of the list into the outcome and the list sync; a failure is a warning, never the list's. */
export async function readStatistics(deps: SyncDeps, listSyncId: number, segmentId: string, outcome: ListOutcome, log: Logger): Promise<void> {
  try {
    const out = await deps.client.getStatistics(segmentId);
    outcome.statistics = out.body;
    await recordListStatistics(deps.db, listSyncId, out.body);
  } catch (error) {
    // Statistics are for the report; failing to read them does not undo a sync.
    log.warn({ error: oneLine(error) }, 'could not read list statistics');
  }
}

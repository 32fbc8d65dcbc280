import { sql } from 'kysely';
import { ConfigError } from '../core/errors.js';
import type { Db } from '../db/connection.js';
import { assertMigrated } from '../db/migrate.js';
import { CAMPAIGN_LISTS } from '../source/list-bindings.js';
import { segmentsOfCampaigns } from '../source/target-groups.js';

/** The lists a command is narrowed to: `--list` ids and the lists `--campaign` ids feed. */
export interface ListChoice {
  list?: string[];
  campaign?: string[];
}

const MAX_BIGINT = 9_223_372_036_854_775_807n;

/**
 * The segment ids chosen, or undefined for every list. An id that is not a
 * number, a campaign that does not exist, and a list no campaign points at
 * that the job never synced are refused (exit 2) before any run is recorded:
 * such a list is a typo. A list the job synced once and that no campaign
 * points at any more is kept: the run reports it left alone.
 */
export async function chosenLists(db: Db, opts: ListChoice): Promise<string[] | undefined> {
  if (!opts.list && !opts.campaign) return undefined;
  for (const id of opts.list ?? []) assertSegmentId(id);
  // The reads below need the schema; without it the command stops with the schema's own one line.
  await assertMigrated(db);
  const fromCampaigns = opts.campaign ? await segmentsOfCampaigns(db, opts.campaign) : [];
  if (opts.campaign && fromCampaigns.length === 0) throw new ConfigError(`--campaign: no campaign named ${opts.campaign.join(', ')}`);
  const unknown = await unknownLists(db, opts.list ?? []);
  if (unknown.length === 1) throw new ConfigError(`--list: no campaign points at list ${unknown[0]} and it was never synced`);
  if (unknown.length > 1) throw new ConfigError(`--list: no campaign points at lists ${unknown.join(', ')} and they were never synced`);
  return [...new Set([...(opts.list ?? []), ...fromCampaigns])];
}

/** Refuses a `--list` value that is not an audience segment id: a whole number that fits Postgres's bigint. */
export function assertSegmentId(id: string): void {
  if (!/^\d+$/.test(id) || BigInt(id) > MAX_BIGINT) throw new ConfigError(`--list: ${JSON.stringify(id)} is not a numeric audience segment id`);
}

/** The ids among `segmentIds` that no campaign points at and that no list sync, snapshot or ledger of the job holds. */
async function unknownLists(db: Db, segmentIds: readonly string[]): Promise<string[]> {
  if (segmentIds.length === 0) return [];
  const { rows } = await sql<{ segment_id: string }>`
    SELECT id::text AS segment_id FROM unnest(${segmentIds}::bigint[]) AS id
    WHERE NOT EXISTS (SELECT 1 FROM ${CAMPAIGN_LISTS} c WHERE c.audience_segment_id = id)
      AND NOT EXISTS (SELECT 1 FROM audience_sync.list_syncs s WHERE s.audience_segment_id = id)
      AND NOT EXISTS (SELECT 1 FROM audience_sync.lists l WHERE l.audience_segment_id = id)
      AND NOT EXISTS (SELECT 1 FROM audience_sync.list_members m WHERE m.audience_segment_id = id)
    ORDER BY id`.execute(db);
  return rows.map((r) => r.segment_id);
}

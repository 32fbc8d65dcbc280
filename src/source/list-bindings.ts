import { sql } from 'kysely';
import type { Db } from '../db/connection.js';

/**
 * Campaigns that name their list (campaigns.audience_segment_name, with no
 * audience_segment_id) and the job's record of the list each is bound to
 * (list_bindings). The source is never written: the binding lives in the
 * job's own table, and every read of "which list does a campaign feed" goes
 * through CAMPAIGN_LISTS.
 */

/** Campaigns with the list each feeds: its own audience_segment_id, else the list the job bound it to by name. */
export const CAMPAIGN_LISTS = sql`(
  SELECT c.campaign_id, c.name, c.advertiser_id, c.starts_at, c.measurement_ends_at,
         coalesce(c.audience_segment_id, b.audience_segment_id) AS audience_segment_id
  FROM audience_sync.campaigns c
  LEFT JOIN audience_sync.list_bindings b ON b.campaign_id = c.campaign_id AND c.audience_segment_id IS NULL)`;

export interface NamedCampaign {
  campaignId: string;
  advertiserId: string;
  name: string;
}

export interface BindingRow {
  campaignId: string;
  advertiserId: string;
  name: string;
  segmentId: string;
  created: boolean;
  listCreatedAt: string | null;
  boundAt: string;
}

/** Whether the source's campaigns have the audience_segment_name column (a view that predates it does not). */
async function hasNameColumn(db: Db): Promise<boolean> {
  const { rows } = await sql<{ present: boolean }>`
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                   WHERE attrelid = 'audience_sync.campaigns'::regclass AND attname = 'audience_segment_name' AND NOT attisdropped) AS present`.execute(db);
  return rows[0]?.present === true;
}

/** Campaigns that name their list and give no id: the ones a run binds. */
export async function readNamedCampaigns(db: Db): Promise<NamedCampaign[]> {
  if (!(await hasNameColumn(db))) return [];
  const { rows } = await sql<{ campaign_id: string; advertiser_id: string; name: string }>`
    SELECT campaign_id, advertiser_id::text AS advertiser_id, audience_segment_name AS name
    FROM audience_sync.campaigns
    WHERE audience_segment_id IS NULL AND audience_segment_name IS NOT NULL
    ORDER BY campaign_id`.execute(db);
  return rows.map((r) => ({ campaignId: r.campaign_id, advertiserId: r.advertiser_id, name: r.name }));
}

/** Every recorded binding, by campaign. */
export async function readBindings(db: Db): Promise<Map<string, BindingRow>> {
  const rows = await db.selectFrom('audience_sync.list_bindings').selectAll().orderBy('campaign_id').execute();
  return new Map(
    rows.map((r) => [
      r.campaign_id,
      {
        campaignId: r.campaign_id,
        advertiserId: String(r.advertiser_id),
        name: r.segment_name,
        segmentId: String(r.audience_segment_id),
        created: r.created,
        listCreatedAt: r.list_created_at?.toISOString() ?? null,
        boundAt: r.bound_at.toISOString(),
      },
    ]),
  );
}

/** Records the bindings (one statement); a campaign bound again to the same list keeps when it was first bound. */
export async function recordBindings(db: Db, bindings: readonly Omit<BindingRow, 'boundAt'>[]): Promise<void> {
  if (bindings.length === 0) return;
  await sql`
    INSERT INTO audience_sync.list_bindings AS b (campaign_id, advertiser_id, segment_name, audience_segment_id, created, list_created_at)
    SELECT * FROM unnest(${bindings.map((b) => b.campaignId)}::text[], ${bindings.map((b) => b.advertiserId)}::bigint[],
                         ${bindings.map((b) => b.name)}::text[], ${bindings.map((b) => b.segmentId)}::bigint[],
                         ${bindings.map((b) => b.created)}::boolean[], ${bindings.map((b) => b.listCreatedAt)}::timestamptz[])
    ON CONFLICT (campaign_id) DO UPDATE SET
      advertiser_id = excluded.advertiser_id, segment_name = excluded.segment_name, created = excluded.created,
      list_created_at = excluded.list_created_at, audience_segment_id = excluded.audience_segment_id,
      bound_at = CASE WHEN b.audience_segment_id = excluded.audience_segment_id THEN b.bound_at ELSE now() END`.execute(db);
}

/** Drops the bindings of campaigns that no longer name that list under that advertiser (or no longer name one). */
export async function dropStaleBindings(db: Db, current: readonly NamedCampaign[]): Promise<void> {
  await sql`
    DELETE FROM audience_sync.list_bindings b
    WHERE NOT EXISTS (
      SELECT 1 FROM unnest(${current.map((c) => c.campaignId)}::text[], ${current.map((c) => c.advertiserId)}::bigint[], ${current.map((c) => c.name)}::text[])
        AS n(campaign_id, advertiser_id, name)
      WHERE n.campaign_id = b.campaign_id AND n.advertiser_id = b.advertiser_id AND n.name = b.segment_name)`.execute(db);
}

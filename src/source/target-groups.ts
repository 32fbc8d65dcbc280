import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import { campaignActiveAt } from './campaign-activity.js';
import { CAMPAIGN_LISTS } from './list-bindings.js';

/**
 * Reads of the source contract's campaigns: which lists exist, which
 * campaigns feed them and which are active. (Target groups and customers are
 * read by the list snapshot: see snapshot.ts.)
 */

export interface ListTarget {
  segmentId: string;
  /** Every campaign pointing at the list, and those active at the run's instant. */
  campaignIds: string[];
  activeCampaignIds: string[];
  advertiserIds: string[];
  /** Every campaign feeding the list has ended its measurement period. */
  allEnded: boolean;
  /** Campaigns whose measurement period ends before it starts: never active, worth a word to the operator. */
  invertedCampaignIds: string[];
}

/**
 * One row per Criteo list that at least one campaign points at, by id or by a
 * name the job has bound. `unbound` are campaigns that name a list the run
 * could not bind: they feed no list.
 */
export async function findListTargets(db: Db, asOf: Date, segmentIds?: readonly string[], unbound: readonly string[] = []): Promise<ListTarget[]> {
  const filter = segmentIds
    ? sql`WHERE c.audience_segment_id = ANY(${segmentIds.map(String)}::bigint[]) AND c.campaign_id <> ALL(${unbound}::text[])`
    : sql`WHERE c.campaign_id <> ALL(${unbound}::text[])`;
  const { rows } = await sql<{
    segment_id: string;
    campaign_ids: string[];
    active_campaign_ids: string[];
    advertiser_ids: string[];
    all_ended: boolean;
    inverted_campaign_ids: string[];
  }>`
    SELECT c.audience_segment_id::text AS segment_id,
           array_agg(c.campaign_id ORDER BY c.campaign_id) AS campaign_ids,
           coalesce(array_agg(c.campaign_id ORDER BY c.campaign_id) FILTER (WHERE ${campaignActiveAt(asOf)}), '{}') AS active_campaign_ids,
           array_agg(DISTINCT c.advertiser_id::text) AS advertiser_ids,
           bool_and(c.measurement_ends_at <= ${asOf}) AS all_ended,
           coalesce(array_agg(c.campaign_id ORDER BY c.campaign_id) FILTER (WHERE c.measurement_ends_at <= c.starts_at), '{}') AS inverted_campaign_ids
    FROM ${CAMPAIGN_LISTS} c
    ${filter}
    GROUP BY c.audience_segment_id
    ORDER BY c.audience_segment_id`.execute(db);
  return rows.map((r) => ({
    segmentId: r.segment_id,
    campaignIds: r.campaign_ids,
    activeCampaignIds: r.active_campaign_ids,
    advertiserIds: r.advertiser_ids,
    allEnded: r.all_ended,
    invertedCampaignIds: r.inverted_campaign_ids,
  }));
}

/** The lists the given campaigns feed. */
export async function segmentsOfCampaigns(db: Db, campaignIds: readonly string[]): Promise<string[]> {
  const { rows } = await sql<{ segment_id: string }>`
    SELECT DISTINCT audience_segment_id::text AS segment_id FROM ${CAMPAIGN_LISTS} c
    WHERE campaign_id = ANY(${campaignIds}::text[]) AND audience_segment_id IS NOT NULL`.execute(db);
  return rows.map((r) => r.segment_id);
}

export interface FunnelCounts {
  targetGroupSize: number;
  missingCustomers: number;
  withoutEmail: number;
  invalidEmails: number;
  uniqueIdentifiers: number;
}

export interface CampaignFunnelCounts extends Omit<FunnelCounts, 'uniqueIdentifiers'> {
  campaignId: string;
  /** Known for a list's lone campaign; null in a shared list. */
  uniqueIdentifiers: number | null;
}

import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * Reads of the source contract (customers, campaigns, campaign_target_groups)
 * and the identifier cache derived from it. Validation and hashing happen in
 * Postgres (audience_sync.email_identifier), so raw emails never reach the job.
 */

/** Campaigns active at `asOf`: the one definition every query here shares. */
const isActive = (asOf: Date) => sql<boolean>`(c.starts_at <= ${asOf} AND ${asOf} < c.measurement_ends_at)`;

export interface IdentifierCacheRefresh {
  upserted: number;
  deleted: number;
}

/**
 * Brings customer_identifiers in line with customers, touching only the rows
 * whose email changed (by fingerprint), appeared or disappeared. This is what
 * makes a daily plan proportional to churn rather than to the customer base.
 */
export async function refreshIdentifierCache(db: Db): Promise<IdentifierCacheRefresh> {
  const upserted = await sql`
    INSERT INTO audience_sync.customer_identifiers AS ci (customer_id, email_fingerprint, email_state, identifier)
    SELECT customer_id, fingerprint,
           CASE WHEN normalized IS NULL OR normalized = '' THEN 'missing'
                WHEN identifier IS NULL THEN 'invalid'
                ELSE 'valid' END,
           identifier
    FROM (
      SELECT DISTINCT ON (c.customer_id) c.customer_id, f.fingerprint, n.normalized,
             audience_sync.trimmed_email_identifier(n.normalized) AS identifier
      FROM audience_sync.customers c
      CROSS JOIN LATERAL (SELECT hashtextextended(c.email, 0) AS fingerprint) f
      CROSS JOIN LATERAL (SELECT btrim(c.email, E' \t\n\r\f') AS normalized) n
      LEFT JOIN audience_sync.customer_identifiers old ON old.customer_id = c.customer_id
      WHERE c.customer_id IS NOT NULL
        AND (old.customer_id IS NULL OR old.email_fingerprint IS DISTINCT FROM f.fingerprint)
      ORDER BY c.customer_id
    ) changed
    ON CONFLICT (customer_id) DO UPDATE
      SET email_fingerprint = excluded.email_fingerprint,
          email_state = excluded.email_state,
          identifier = excluded.identifier`.execute(db);
  // After the upsert the cache holds every customer; it holds nothing else
  // when the counts agree, so the anti-join runs only on days when customers
  // disappeared (or when a source view repeats a customer id: slower, still right).
  const { rows } = await sql<{ customers: number; cached: number }>`
    SELECT (SELECT count(customer_id) FROM audience_sync.customers)::bigint AS customers,
           (SELECT count(*) FROM audience_sync.customer_identifiers)::bigint AS cached`.execute(db);
  if (rows[0]!.customers === rows[0]!.cached) return { upserted: Number(upserted.numAffectedRows ?? 0), deleted: 0 };
  const deleted = await sql`
    DELETE FROM audience_sync.customer_identifiers ci
    WHERE NOT EXISTS (SELECT 1 FROM audience_sync.customers c WHERE c.customer_id = ci.customer_id)`.execute(db);
  return { upserted: Number(upserted.numAffectedRows ?? 0), deleted: Number(deleted.numAffectedRows ?? 0) };
}

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

/** One row per Criteo list that at least one campaign points at. */
export async function findListTargets(db: Db, asOf: Date, segmentIds?: readonly string[]): Promise<ListTarget[]> {
  const filter = segmentIds ? sql`WHERE c.audience_segment_id = ANY(${segmentIds.map(String)}::bigint[])` : sql``;
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
           coalesce(array_agg(c.campaign_id ORDER BY c.campaign_id) FILTER (WHERE ${isActive(asOf)}), '{}') AS active_campaign_ids,
           array_agg(DISTINCT c.advertiser_id::text) AS advertiser_ids,
           bool_and(c.measurement_ends_at <= ${asOf}) AS all_ended,
           coalesce(array_agg(c.campaign_id ORDER BY c.campaign_id) FILTER (WHERE c.measurement_ends_at <= c.starts_at), '{}') AS inverted_campaign_ids
    FROM audience_sync.campaigns c
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
    SELECT DISTINCT audience_segment_id::text AS segment_id FROM audience_sync.campaigns
    WHERE campaign_id = ANY(${campaignIds}::text[])`.execute(db);
  return rows.map((r) => r.segment_id);
}

export interface Funnel {
  targetGroupSize: number;
  missingCustomers: number;
  withoutEmail: number;
  invalidEmails: number;
  uniqueIdentifiers: number;
}

export interface CampaignFunnel extends Omit<Funnel, 'uniqueIdentifiers'> {
  campaignId: string;
  /** Known for a list's lone campaign; null in a shared list. */
  uniqueIdentifiers: number | null;
}

export interface ListFunnels {
  /** Customers counted once across the list's active campaigns; unique identifiers not yet known (see planList). */
  list: Omit<Funnel, 'uniqueIdentifiers'>;
  campaigns: CampaignFunnel[];
}

/**
 * The funnel of a list shared by several active campaigns: per campaign, and
 * for the list with each customer counted once. (A list fed by one campaign
 * gets its funnel from the plan's own pass: see materializePlan.) A
 * campaign's unique identifiers are left null here: a per-campaign DISTINCT
 * over millions of identifiers would cost more than the whole diff.
 */
export async function countSharedListFunnels(db: Db, segmentId: string, asOf: Date): Promise<ListFunnels> {
  const { rows } = await sql<{ campaign_id: string; tg: number; missing: number; without_email: number; invalid: number }>`
    SELECT tg.campaign_id,
           count(*)::bigint AS tg,
           count(*) FILTER (WHERE ci.customer_id IS NULL)::bigint AS missing,
           count(*) FILTER (WHERE ci.email_state = 'missing')::bigint AS without_email,
           count(*) FILTER (WHERE ci.email_state = 'invalid')::bigint AS invalid
    FROM audience_sync.campaigns c
    JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
    LEFT JOIN audience_sync.customer_identifiers ci ON ci.customer_id = tg.customer_id
    WHERE c.audience_segment_id = ${segmentId}::bigint AND ${isActive(asOf)}
    GROUP BY tg.campaign_id
    ORDER BY tg.campaign_id`.execute(db);
  const campaigns = rows.map((r) => ({
    campaignId: r.campaign_id,
    targetGroupSize: r.tg,
    missingCustomers: r.missing,
    withoutEmail: r.without_email,
    invalidEmails: r.invalid,
    uniqueIdentifiers: null,
  }));
  const { rows: listRows } = await sql<{ tg: number; missing: number; without_email: number; invalid: number }>`
    SELECT count(*)::bigint AS tg,
           count(*) FILTER (WHERE ci.customer_id IS NULL)::bigint AS missing,
           count(*) FILTER (WHERE ci.email_state = 'missing')::bigint AS without_email,
           count(*) FILTER (WHERE ci.email_state = 'invalid')::bigint AS invalid
    FROM (
      SELECT DISTINCT tg.customer_id
      FROM audience_sync.campaigns c
      JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
      WHERE c.audience_segment_id = ${segmentId}::bigint AND ${isActive(asOf)}
    ) t
    LEFT JOIN audience_sync.customer_identifiers ci ON ci.customer_id = t.customer_id`.execute(db);
  const r = listRows[0]!;
  return { list: { targetGroupSize: r.tg, missingCustomers: r.missing, withoutEmail: r.without_email, invalidEmails: r.invalid }, campaigns };
}

export { isActive };

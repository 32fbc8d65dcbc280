import { sql } from 'kysely';
import type { Db } from '../db/connection.js';

/**
 * The demo's sample world, generated in Postgres: a few campaigns (two
 * sharing a list, one ending within a day, one long over) and tens of
 * thousands of customers, some without or with invalid emails.
 */

const DAY = 86_400_000;
export const SAMPLE_CUSTOMERS = 40_000;
export const SAMPLE_SEGMENTS = [
  { id: '9001', advertiserId: '501' },
  { id: '9002', advertiserId: '501' },
  { id: '9003', advertiserId: '502' },
  { id: '9004', advertiserId: '502' },
];

export async function loadSampleData(db: Db, now: Date): Promise<void> {
  await sql`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'cust-' || i,
           CASE WHEN i % 33 = 0 THEN NULL                                          -- about 3% without an email
                WHEN i % 47 = 0 THEN 'customer' || i || '@invalid'                 -- about 2% invalid (no dot in the domain)
                WHEN i % 101 = 0 THEN ' Customer' || (i - 1) || '@Example.com '    -- shares an email with the previous customer
                ELSE 'customer' || i || '@example.com' END
    FROM generate_series(1, ${SAMPLE_CUSTOMERS}::int) i`.execute(db);
  const at = (days: number) => new Date(now.getTime() + days * DAY);
  await db
    .insertInto('audience_sync.campaigns')
    .values([
      { campaign_id: 'spring-sale', name: 'Spring sale', advertiser_id: 501, audience_segment_id: 9001, starts_at: at(-3), measurement_ends_at: at(30) },
      { campaign_id: 'loyalty', name: 'Loyalty members', advertiser_id: 501, audience_segment_id: 9002, starts_at: at(-10), measurement_ends_at: at(60) },
      { campaign_id: 'loyalty-plus', name: 'Loyalty plus', advertiser_id: 501, audience_segment_id: 9002, starts_at: at(-1), measurement_ends_at: at(45) },
      // Its measurement period ends within a day: the next day's run empties its list.
      { campaign_id: 'winter-teaser', name: 'Winter teaser', advertiser_id: 502, audience_segment_id: 9003, starts_at: at(-7), measurement_ends_at: at(0.5) },
      // Already past its measurement period: its list costs no call at all.
      { campaign_id: 'autumn', name: 'Autumn (ended)', advertiser_id: 502, audience_segment_id: 9004, starts_at: at(-60), measurement_ends_at: at(-20) },
    ])
    .execute();
  await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'spring-sale', 'cust-' || i FROM generate_series(1, 25000) i
    UNION ALL SELECT 'loyalty', 'cust-' || i FROM generate_series(20001, 32000) i
    UNION ALL SELECT 'loyalty-plus', 'cust-' || i FROM generate_series(30001, 36000) i
    UNION ALL SELECT 'winter-teaser', 'cust-' || i FROM generate_series(5001, 9000) i
    UNION ALL SELECT 'autumn', 'cust-' || i FROM generate_series(1, 3000) i`.execute(db);
}

/** A day of churn: some leave, some join, some change their email. */
export async function applySampleChurn(db: Db): Promise<void> {
  await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'spring-sale' AND customer_id IN (SELECT 'cust-' || i FROM generate_series(1, 400) i)`.execute(
    db,
  );
  await sql`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'cust-' || i, 'newcomer' || i || '@example.com' FROM generate_series(${SAMPLE_CUSTOMERS + 1}::int, ${SAMPLE_CUSTOMERS + 600}::int) i`.execute(db);
  await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'spring-sale', 'cust-' || i FROM generate_series(${SAMPLE_CUSTOMERS + 1}::int, ${SAMPLE_CUSTOMERS + 600}::int) i`.execute(db);
  await sql`UPDATE audience_sync.customers SET email = 'renamed' || customer_id || '@example.org' WHERE customer_id IN (SELECT 'cust-' || i FROM generate_series(21000, 21199) i)`.execute(
    db,
  );
}

/** True when the source tables already hold campaigns (sample data is never loaded over real data). */
export async function hasCampaigns(db: Db): Promise<boolean> {
  const row = await db.selectFrom('audience_sync.campaigns').select('campaign_id').limit(1).executeTakeFirst();
  return row !== undefined;
}

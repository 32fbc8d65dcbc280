import { sql, type RawBuilder } from 'kysely';
import { probingKeys, type Db } from '../db/connection.js';
import { fingerprint, targetGroupsWithCustomers } from './snapshot-table.js';

/**
 * Whether the snapshot holds exactly the list's target groups as the source
 * has them now, judged by a checksum of each side rather than row by row:
 * the rows counted, and the sum of a 64-bit hash of each row's campaign,
 * customer and email fingerprint (the fingerprint's own weight: see
 * RELIABILITY.md). One parallel aggregate over the target groups joined to
 * customers, which costs about the floor's join (its hash carries the email),
 * and one over the snapshot alone; no second join. A small list looks its
 * customers up by key, as its whole read would (compareWholeTargetGroup).
 */
export async function sourceMatchesSnapshot(tx: Db, segmentId: string, activeCampaignIds: readonly string[]): Promise<boolean> {
  const { rows } = await probingKeys(tx, () =>
    sql<{ matches: boolean }>`
      SELECT s.n = t.n AND s.h IS NOT DISTINCT FROM t.h AS matches
      FROM (SELECT count(*) AS n, sum(${rowHash(sql`tg.campaign_id`, sql`tg.customer_id`, fingerprint)}) AS h
            FROM ${targetGroupsWithCustomers(activeCampaignIds)}) s,
           (SELECT count(*) AS n, sum(${rowHash(sql`t.campaign_id`, sql`t.customer_id`, sql`t.email_fingerprint`)}) AS h
            FROM audience_sync.list_targets t WHERE t.audience_segment_id = ${segmentId}::bigint) t`.execute(tx),
  );
  return rows[0]!.matches;
}

/**
 * A row's term in the checksum: its key and fingerprint (NULL when there is no such customer) mixed by two hashes,
 * each seeding the next, so that no two rows' terms cancel or trade parts (a sum of separate hashes of each column
 * would not see two customers swap emails).
 */
const rowHash = (campaignId: RawBuilder<unknown>, customerId: RawBuilder<unknown>, emailFingerprint: RawBuilder<unknown>) =>
  sql`hashtextextended(${campaignId}, hashtextextended(${customerId}, coalesce(${emailFingerprint}, ${NO_CUSTOMER}::bigint)))`;

/** The fingerprint a row without a customer counts as in the checksum. */
const NO_CUSTOMER = '6148914691236517205';

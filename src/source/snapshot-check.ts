import { sql, type RawBuilder } from 'kysely';
import { connect, probingKeys, probingKeysFromNowOn, type Db, type SessionSettings } from '../db/connection.js';
import { oneLine } from '../core/errors.js';
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
      FROM (${sourceChecksum(activeCampaignIds)}) s, (${snapshotChecksum(segmentId)}) t`.execute(tx),
  );
  return rows[0]!.matches;
}

/** One side of the check: its rows, and the sum of their terms (a numeric, as text: exact). */
export interface Checksum {
  n: number;
  h: string | null;
}

/** The source's side of the check as read beside the plan, or why it could not be (the plan then checks in its transaction). */
export type SideChecksum = { checksum: Checksum } | { failed: string };

/**
 * The source's side of the check, run on a connection of its own from now
 * on, beside the plan's statements: a big list's plan applies the day's
 * changes meanwhile, rather than waiting for a parallel read of its whole
 * target group (snapshotMatches then compares). It reads the source a
 * moment after the plan's snapshot: a write committed since is on both
 * sides (the plan read its key after it) or makes them differ and the list
 * read whole, as a write during the plan's own check would (RELIABILITY.md,
 * point 5). Never rejects.
 */
export function sourceChecksumBeside(databaseUrl: string, settings: SessionSettings, activeCampaignIds: readonly string[]): Promise<SideChecksum> {
  const side = connect(databaseUrl, 1, settings);
  return side.db
    .transaction()
    .execute(async (trx) => {
      // As the plan's statements run (no JIT compiling, index probes priced as cached), and a lock not granted at once
      // is given up within a second: a writer waiting for an exclusive lock on a source table (a TRUNCATE) queues
      // behind the plan's own read of it, the side would queue behind the writer, and the plan waits for the side.
      await probingKeysFromNowOn(trx, (probing) =>
        sql`SELECT ${probing}, set_config('jit', 'off', true), set_config('lock_timeout', ${SIDE_LOCK_TIMEOUT}, true)`.execute(trx),
      );
      const { rows } = await sourceChecksum(activeCampaignIds).execute(trx);
      return { checksum: rows[0]! };
    })
    .catch((error: unknown) => ({ failed: `${(error as { code?: string }).code ?? 'error'}: ${oneLine(error)}` }))
    .finally(() => side.close().catch(() => {}));
}

/** How long the side waits for a lock on the source before it gives the check back to the plan. */
const SIDE_LOCK_TIMEOUT = '1s';

/** Whether the snapshot, as the plan's transaction holds it now, has the source's checksum (sourceChecksumBeside). */
export async function snapshotMatches(tx: Db, segmentId: string, source: Checksum): Promise<boolean> {
  const { rows } = await snapshotChecksum(segmentId).execute(tx);
  return rows[0]!.n === source.n && rows[0]!.h === source.h;
}

const sourceChecksum = (activeCampaignIds: readonly string[]) => sql<Checksum>`
  SELECT count(*) AS n, sum(${rowHash(sql`tg.campaign_id`, sql`tg.customer_id`, fingerprint)})::text AS h
  FROM ${targetGroupsWithCustomers(activeCampaignIds)}`;

const snapshotChecksum = (segmentId: string) => sql<Checksum>`
  SELECT count(*) AS n, sum(${rowHash(sql`t.campaign_id`, sql`t.customer_id`, sql`t.email_fingerprint`)})::text AS h
  FROM audience_sync.list_targets t WHERE t.audience_segment_id = ${segmentId}::bigint`;

/**
 * A row's term in the checksum: its key and fingerprint (NULL when there is no such customer) mixed by two hashes,
 * each seeding the next, so that no two rows' terms cancel or trade parts (a sum of separate hashes of each column
 * would not see two customers swap emails).
 */
const rowHash = (campaignId: RawBuilder<unknown>, customerId: RawBuilder<unknown>, emailFingerprint: RawBuilder<unknown>) =>
  sql`hashtextextended(${campaignId}, hashtextextended(${customerId}, coalesce(${emailFingerprint}, ${NO_CUSTOMER}::bigint)))`;

/** The fingerprint a row without a customer counts as in the checksum. */
const NO_CUSTOMER = '6148914691236517205';

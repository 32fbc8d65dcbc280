import { sql, type Kysely } from 'kysely';

/**
 * Every list's count of customers by state (list_target_counts, scope '')
 * recounted from its snapshot, each customer once in the state of its row
 * with the first campaign, as recountCounters counts them and
 * applyCounterDeltas now keeps them. Before, a plan that read one row of a customer in two of a
 * list's campaigns with an email written after its snapshot of the log
 * could leave the count off by that customer, for good (RELIABILITY.md,
 * point 20). Reads each list's snapshot once: about a second for a million
 * rows.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`DELETE FROM audience_sync.list_target_counts WHERE scope = ''`.execute(db);
  await sql`
    INSERT INTO audience_sync.list_target_counts (audience_segment_id, scope, email_state, n)
    SELECT audience_segment_id, '', email_state, count(*) FROM (
      SELECT DISTINCT ON (audience_segment_id, customer_id) audience_segment_id, email_state FROM audience_sync.list_targets
      ORDER BY audience_segment_id, customer_id, campaign_id
    ) c GROUP BY audience_segment_id, email_state`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

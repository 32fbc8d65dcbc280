import { sql, type Kysely } from 'kysely';

/**
 * The snapshot's primary key carries each row's email state, so that the
 * funnel's count of customers by state (recountCounters) reads each list's
 * customers in order from the key alone, once a list's table is vacuumed,
 * rather than sorting them all (a first snapshot is vacuumed before its
 * plan: see planList). Every list's table has its key built again.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE audience_sync.list_targets DROP CONSTRAINT list_targets_pkey,
      ADD CONSTRAINT list_targets_pkey PRIMARY KEY (audience_segment_id, customer_id, campaign_id) INCLUDE (email_state)`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

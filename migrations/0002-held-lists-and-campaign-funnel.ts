import { sql, type Kysely } from 'kysely';

/**
 * A list sync may be 'held': the mass-removal guard kept its removals back.
 * And the funnel is kept per campaign as well as per list, for the report.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE audience_sync.list_syncs DROP CONSTRAINT list_syncs_status_check`.execute(db);
  await sql`
    ALTER TABLE audience_sync.list_syncs ADD CONSTRAINT list_syncs_status_check
    CHECK (status IN ('planning', 'sending', 'succeeded', 'held', 'failed', 'incomplete', 'skipped'))`.execute(db);
  await sql`ALTER TABLE audience_sync.list_syncs ADD COLUMN held_removals bigint NOT NULL DEFAULT 0`.execute(db);
  await sql`
    CREATE TABLE audience_sync.list_sync_campaigns (
      list_sync_id       bigint NOT NULL REFERENCES audience_sync.list_syncs ON DELETE CASCADE,
      campaign_id        text NOT NULL,
      target_group_size  bigint NOT NULL,
      missing_customers  bigint NOT NULL,
      without_email      bigint NOT NULL,
      invalid_emails     bigint NOT NULL,
      unique_identifiers bigint NOT NULL,
      PRIMARY KEY (list_sync_id, campaign_id)
    )`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

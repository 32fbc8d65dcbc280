import { sql, type Kysely } from 'kysely';

/**
 * Campaigns may name their list instead of giving its id: the source contract
 * gains campaigns.audience_segment_name, and audience_segment_id may be NULL
 * (on a source that is still the job's table; a view keeps its own columns, and
 * one without the name keeps working). The job records each campaign's binding
 * to the list it found or created under the campaign's advertiser in its own
 * table, never in the source.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    DO $do$ BEGIN
      IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'audience_sync.campaigns'::regclass) = 'r' THEN
        ALTER TABLE audience_sync.campaigns
          ADD COLUMN IF NOT EXISTS audience_segment_name text,
          ALTER COLUMN audience_segment_id DROP NOT NULL;
      END IF;
    END $do$`.execute(db);
  await sql`
    CREATE TABLE audience_sync.list_bindings (
      campaign_id         text PRIMARY KEY,
      advertiser_id       bigint NOT NULL,
      segment_name        text NOT NULL,
      audience_segment_id bigint NOT NULL,
      created             boolean NOT NULL,
      list_created_at     timestamptz,
      bound_at            timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

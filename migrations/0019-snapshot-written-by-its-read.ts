import { sql, type Kysely } from 'kysely';

/**
 * A list's first snapshot is the table its whole read writes: one parallel
 * CREATE TABLE AS (see writeNewSnapshot), not a temporary table copied into
 * a new one. Such a table has no constraints, so before it is attached
 * constrain_snapshot_table gives it those of list_targets, read from the
 * catalog (a partition must have them, by name), with the CHECK on the
 * list's id that spares the attach a scan: one ALTER, one pass to validate
 * them all. create_snapshot_table (migration 0016) has no caller left.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION audience_sync.constrain_snapshot_table(segment bigint) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
      parent constant regclass := 'audience_sync.list_targets'::regclass;
      clauses text;
    BEGIN
      SELECT string_agg(clause, ', ') INTO clauses FROM (
        SELECT format('ALTER COLUMN %I SET NOT NULL', attname) AS clause FROM pg_attribute
        WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped AND attnotnull
        UNION ALL
        SELECT format('ADD CONSTRAINT %I %s', conname, pg_get_constraintdef(oid)) FROM pg_constraint
        WHERE conrelid = parent AND contype = 'c'
        UNION ALL
        SELECT format('ADD CHECK (audience_segment_id = %s)', segment)
      ) c;
      EXECUTE format('ALTER TABLE audience_sync.%I %s', 'list_targets_' || segment, clauses);
    END $$`.execute(db);
  await sql`DROP FUNCTION audience_sync.create_snapshot_table(bigint)`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

import { sql, type Kysely } from 'kysely';

/**
 * Each list's snapshot is a table of its own: list_targets is partitioned by
 * list, one unlogged partition per list (list_targets_<segment id>). A first
 * sync loads its list's rows into a new table with no index and attaches it
 * (see fillNewSnapshot), so Postgres builds the table's two indexes by
 * sorting once, instead of inserting millions of keys one by one into
 * indexes shared with every other list. A list's partition stays while the
 * list does: emptying a list deletes its rows, and crash recovery empties an
 * unlogged partition as it emptied the unlogged table (migration 0012).
 *
 * Statements name one list (audience_segment_id = a value), so the planner
 * reads that list's partition alone.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE audience_sync.list_targets RENAME TO list_targets_unpartitioned`.execute(db);
  await sql`ALTER INDEX audience_sync.list_targets_pkey RENAME TO list_targets_unpartitioned_pkey`.execute(db);
  await sql`ALTER INDEX audience_sync.list_targets_identifier_idx RENAME TO list_targets_unpartitioned_identifier_idx`.execute(db);
  await sql`
    CREATE TABLE audience_sync.list_targets (
      audience_segment_id bigint NOT NULL,
      customer_id         text NOT NULL,
      campaign_id         text NOT NULL,
      email_fingerprint   bigint,
      email_state         text NOT NULL CHECK (email_state IN ('no_customer', 'missing', 'invalid', 'valid')),
      identifier          bytea CHECK ((identifier IS NOT NULL) = (email_state = 'valid')),
      PRIMARY KEY (audience_segment_id, customer_id, campaign_id)
    ) PARTITION BY LIST (audience_segment_id)`.execute(db);
  await sql`
    CREATE INDEX list_targets_identifier_idx ON audience_sync.list_targets (audience_segment_id, identifier)
    WHERE identifier IS NOT NULL`.execute(db);
  // A list's new table, with no index; then attached, which builds its indexes. Functions, so that the job passes the
  // list's id as a bound parameter and the DDL is formatted here from a bigint.
  await sql`
    CREATE FUNCTION audience_sync.create_snapshot_table(segment bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      EXECUTE format(
        'CREATE UNLOGGED TABLE audience_sync.%I (LIKE audience_sync.list_targets INCLUDING DEFAULTS INCLUDING CONSTRAINTS, CHECK (audience_segment_id = %s))',
        'list_targets_' || segment, segment);
    END $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.attach_snapshot_table(segment bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      EXECUTE format('ALTER TABLE audience_sync.list_targets ATTACH PARTITION audience_sync.%I FOR VALUES IN (%s)', 'list_targets_' || segment, segment);
    END $$`.execute(db);
  // Each list's rows into its own partition, made as a first sync makes one.
  await sql`
    DO $$
    DECLARE segment bigint;
    BEGIN
      FOR segment IN SELECT DISTINCT audience_segment_id FROM audience_sync.list_targets_unpartitioned LOOP
        PERFORM audience_sync.create_snapshot_table(segment);
        EXECUTE format(
          'INSERT INTO audience_sync.%I SELECT * FROM audience_sync.list_targets_unpartitioned WHERE audience_segment_id = %s',
          'list_targets_' || segment, segment);
        PERFORM audience_sync.attach_snapshot_table(segment);
      END LOOP;
    END $$`.execute(db);
  await sql`DROP TABLE audience_sync.list_targets_unpartitioned`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

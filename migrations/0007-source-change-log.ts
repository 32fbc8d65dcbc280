import { sql, type Kysely } from 'kysely';

/**
 * A change log for the source tables, so a day's plan reads what changed
 * instead of the whole target group.
 *
 * Statement triggers on customers and campaign_target_groups append the keys
 * their writes touched to source_changes, with the writer's transaction id:
 * a customer whose email (or key) changed, a target-group row that came or
 * went, and a marker row (both keys NULL) for a TRUNCATE. The rows are
 * logged set-based from transition tables; an UPDATE that leaves an email as
 * it was logs nothing, so a loader that upserts every row daily logs only
 * the real changes.
 *
 * The triggers are ENABLE ALWAYS, so writes made under
 * session_replication_role = replica (restore and sync tools) are logged
 * too. The functions are SECURITY DEFINER: a loader role needs no grant on
 * the log. A logical-replication apply worker fires no statement trigger,
 * and a source replaced by a view has none: the job then reads the whole
 * target group, as before (see change-log.ts for every such case).
 *
 * lists records how far each list's snapshot has read the log
 * (changes_read_in: the Postgres snapshot its last plan read the source in;
 * every change a transaction visible in it made is in the list's snapshot),
 * a stamp of the source tables' and triggers' catalog rows as of that plan,
 * the campaigns the snapshot holds, when it last read the
 * whole target group and when it must again (until then the log keeps the
 * rows the list has not read).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE audience_sync.source_changes (
      xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
      campaign_id text,
      customer_id text
    )`.execute(db);
  await sql`CREATE INDEX source_changes_xid_idx ON audience_sync.source_changes (xid)`.execute(db);
  // A TRUNCATE's marker row, found without reading the rows around it.
  await sql`CREATE INDEX source_changes_truncated_idx ON audience_sync.source_changes (xid) WHERE customer_id IS NULL`.execute(db);

  // Spelled out, one statement each: the migration holds no SQL built from strings.
  await sql`
    CREATE FUNCTION audience_sync.log_new_customers() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN
      INSERT INTO audience_sync.source_changes (customer_id) SELECT customer_id FROM new_rows;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.log_old_customers() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN
      INSERT INTO audience_sync.source_changes (customer_id) SELECT customer_id FROM old_rows;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.log_changed_customers() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN
      INSERT INTO audience_sync.source_changes (customer_id)
      SELECT customer_id FROM new_rows n FULL JOIN old_rows o USING (customer_id)
      WHERE n.customer_id IS NULL OR o.customer_id IS NULL OR n.email IS DISTINCT FROM o.email;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.log_new_members() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN
      INSERT INTO audience_sync.source_changes (campaign_id, customer_id) SELECT campaign_id, customer_id FROM new_rows;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.log_old_members() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN
      INSERT INTO audience_sync.source_changes (campaign_id, customer_id) SELECT campaign_id, customer_id FROM old_rows;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.log_changed_members() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN
      INSERT INTO audience_sync.source_changes (campaign_id, customer_id)
      SELECT campaign_id, customer_id FROM new_rows n FULL JOIN old_rows o USING (campaign_id, customer_id)
      WHERE n.customer_id IS NULL OR o.customer_id IS NULL;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.log_truncated_source() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN
      INSERT INTO audience_sync.source_changes (campaign_id, customer_id) VALUES (NULL, NULL);
      RETURN NULL; END $$`.execute(db);

  // Only on ordinary tables: a source an operator already replaced by a view gets no log (its lists read whole).
  await sql`
    DO $do$ BEGIN
      IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'audience_sync.customers'::regclass) = 'r' THEN
        CREATE TRIGGER log_insert AFTER INSERT ON audience_sync.customers REFERENCING NEW TABLE AS new_rows
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_new_customers();
        CREATE TRIGGER log_update AFTER UPDATE ON audience_sync.customers REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_changed_customers();
        CREATE TRIGGER log_delete AFTER DELETE ON audience_sync.customers REFERENCING OLD TABLE AS old_rows
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_old_customers();
        CREATE TRIGGER log_truncate AFTER TRUNCATE ON audience_sync.customers
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_truncated_source();
        ALTER TABLE audience_sync.customers
          ENABLE ALWAYS TRIGGER log_insert, ENABLE ALWAYS TRIGGER log_update,
          ENABLE ALWAYS TRIGGER log_delete, ENABLE ALWAYS TRIGGER log_truncate;
      END IF;
    END $do$`.execute(db);
  await sql`
    DO $do$ BEGIN
      IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'audience_sync.campaign_target_groups'::regclass) = 'r' THEN
        CREATE TRIGGER log_insert AFTER INSERT ON audience_sync.campaign_target_groups REFERENCING NEW TABLE AS new_rows
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_new_members();
        CREATE TRIGGER log_update AFTER UPDATE ON audience_sync.campaign_target_groups REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_changed_members();
        CREATE TRIGGER log_delete AFTER DELETE ON audience_sync.campaign_target_groups REFERENCING OLD TABLE AS old_rows
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_old_members();
        CREATE TRIGGER log_truncate AFTER TRUNCATE ON audience_sync.campaign_target_groups
          FOR EACH STATEMENT EXECUTE FUNCTION audience_sync.log_truncated_source();
        ALTER TABLE audience_sync.campaign_target_groups
          ENABLE ALWAYS TRIGGER log_insert, ENABLE ALWAYS TRIGGER log_update,
          ENABLE ALWAYS TRIGGER log_delete, ENABLE ALWAYS TRIGGER log_truncate;
      END IF;
    END $do$`.execute(db);

  // How far the log has been pruned: a list that has not read that far reads whole.
  await sql`CREATE TABLE audience_sync.change_log (pruned_below xid8 NOT NULL)`.execute(db);
  await sql`INSERT INTO audience_sync.change_log VALUES ('0')`.execute(db);

  // NULL changes_read_in: the list has not read the log yet; its next plan reads the whole target group.
  await sql`
    ALTER TABLE audience_sync.lists
      ADD COLUMN changes_read_in pg_snapshot,
      ADD COLUMN source_stamp text,
      ADD COLUMN snapshot_campaigns text[],
      ADD COLUMN whole_read_at timestamptz,
      ADD COLUMN whole_read_due timestamptz`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

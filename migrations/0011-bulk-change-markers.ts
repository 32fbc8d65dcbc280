import { sql, type Kysely } from 'kysely';

/**
 * Bulk writes log one marker row instead of a row per key, so a bulk load
 * costs its writer little more than the load and leaves the job one row to
 * prune.
 *
 * A list reads its whole target group when more than its limit of unread
 * log rows concern it: max(1000, a tenth of its snapshot's rows), counting
 * the customers' rows for every list and a campaign's target-group rows for
 * the lists whose snapshot holds the campaign (see change-log.ts). A
 * statement whose keys for the customers table, or for one campaign, exceed
 * the largest limit of the lists they concern therefore makes every such
 * list read whole however it is logged. Such a statement logs a marker
 * instead: customer_id NULL, bulk_rows the number of keys, campaign_id NULL
 * for the customers table or the campaign's id. A list that finds an unread
 * marker concerning it reads whole, as it would have; no other list's
 * choice changes. change_log_key_limit holds that largest limit, and the
 * triggers ask it only for a statement (or a campaign's share of one) of
 * more than 1000 keys: smaller writes pay a count over their transition
 * table.
 *
 * A TRUNCATE's marker stays as it was (both keys and bulk_rows NULL). The
 * triggers keep their names, ENABLE ALWAYS and SECURITY DEFINER; their
 * functions are replaced, so each list's next plan reads whole once (the
 * source stamp covers the functions).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE audience_sync.source_changes ADD COLUMN bulk_rows bigint`.execute(db);
  // The markers, TRUNCATE's and bulk writes', found without reading the keys around them.
  await sql`ALTER INDEX audience_sync.source_changes_truncated_idx RENAME TO source_changes_markers_idx`.execute(db);
  // Its upkeep is a third of each logged key's cost. A plan reads its window by scanning the log instead: the log holds
  // only the rows some list has not read yet (pruned every run), mostly every list's window.
  await sql`DROP INDEX audience_sync.source_changes_xid_idx`.execute(db);

  // The lists that may read the log (changes_read_in set); for a campaign, those whose snapshot holds it.
  await sql`
    CREATE FUNCTION audience_sync.change_log_key_limit(campaign text) RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp AS $$
      SELECT greatest(1000, max(floor(r.n / 10)))::bigint FROM (
        SELECT sum(k.n) AS n FROM audience_sync.lists l
        JOIN audience_sync.list_target_counts k ON k.audience_segment_id = l.audience_segment_id AND k.scope <> ''
        WHERE l.changes_read_in IS NOT NULL AND (campaign IS NULL OR campaign = ANY (l.snapshot_campaigns))
        GROUP BY l.audience_segment_id) r $$`.execute(db);

  // Spelled out, one statement each: the migration holds no SQL built from strings. No JIT: the transition tables'
  // row counts make the planner expect costs past jit_above_cost from about 100,000 rows, where compiling costs more
  // than it saves (137 ms of an upsert's 589 ms in the trigger at a million rows; the job's own statements run
  // without it too). For customers, `bulk` holds the statement's marker when its keys exceed the limit (the count is
  // tested first, so the limit is read only past 1000 keys), and the keys are logged only when it holds none.
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.log_new_customers() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET jit = off AS $$ BEGIN
      WITH bulk AS (SELECT count(*) AS n FROM new_rows HAVING count(*) > 1000 AND count(*) > audience_sync.change_log_key_limit(NULL))
      INSERT INTO audience_sync.source_changes (customer_id, bulk_rows)
      SELECT NULL, n FROM bulk
      UNION ALL
      SELECT customer_id, NULL FROM new_rows WHERE NOT EXISTS (SELECT FROM bulk);
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.log_old_customers() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET jit = off AS $$ BEGIN
      WITH bulk AS (SELECT count(*) AS n FROM old_rows HAVING count(*) > 1000 AND count(*) > audience_sync.change_log_key_limit(NULL))
      INSERT INTO audience_sync.source_changes (customer_id, bulk_rows)
      SELECT NULL, n FROM bulk
      UNION ALL
      SELECT customer_id, NULL FROM old_rows WHERE NOT EXISTS (SELECT FROM bulk);
      RETURN NULL; END $$`.execute(db);
  // A merge join would sort both sides by the database's collation: a hash join takes a third of its time at 10,000
  // rows and two thirds at a million.
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.log_changed_customers() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET jit = off SET enable_mergejoin = off AS $$ BEGIN
      WITH changed AS (
        SELECT customer_id FROM new_rows n FULL JOIN old_rows o USING (customer_id)
        WHERE n.customer_id IS NULL OR o.customer_id IS NULL OR n.email IS DISTINCT FROM o.email),
      bulk AS (SELECT count(*) AS n FROM changed HAVING count(*) > 1000 AND count(*) > audience_sync.change_log_key_limit(NULL))
      INSERT INTO audience_sync.source_changes (customer_id, bulk_rows)
      SELECT NULL, n FROM bulk
      UNION ALL
      SELECT customer_id, NULL FROM changed WHERE NOT EXISTS (SELECT FROM bulk);
      RETURN NULL; END $$`.execute(db);
  // For target groups, a marker per campaign whose keys exceed its limit, then the keys of the other campaigns' rows,
  // read only when some are left (a bulk load of one campaign reads its rows once, to count them).
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.log_new_members() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET jit = off AS $$
    DECLARE keys bigint; marked text[]; marked_keys bigint;
    BEGIN
      WITH per_campaign AS (SELECT campaign_id, count(*) AS n FROM new_rows GROUP BY campaign_id),
      markers AS (
        INSERT INTO audience_sync.source_changes (campaign_id, bulk_rows)
        SELECT campaign_id, n FROM per_campaign WHERE n > 1000 AND n > audience_sync.change_log_key_limit(campaign_id)
        RETURNING campaign_id, bulk_rows)
      SELECT (SELECT sum(n) FROM per_campaign), array_agg(campaign_id), coalesce(sum(bulk_rows), 0) INTO keys, marked, marked_keys FROM markers;
      IF marked_keys < keys THEN
        INSERT INTO audience_sync.source_changes (campaign_id, customer_id)
        SELECT campaign_id, customer_id FROM new_rows WHERE marked IS NULL OR campaign_id <> ALL (marked);
      END IF;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.log_old_members() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET jit = off AS $$
    DECLARE keys bigint; marked text[]; marked_keys bigint;
    BEGIN
      WITH per_campaign AS (SELECT campaign_id, count(*) AS n FROM old_rows GROUP BY campaign_id),
      markers AS (
        INSERT INTO audience_sync.source_changes (campaign_id, bulk_rows)
        SELECT campaign_id, n FROM per_campaign WHERE n > 1000 AND n > audience_sync.change_log_key_limit(campaign_id)
        RETURNING campaign_id, bulk_rows)
      SELECT (SELECT sum(n) FROM per_campaign), array_agg(campaign_id), coalesce(sum(bulk_rows), 0) INTO keys, marked, marked_keys FROM markers;
      IF marked_keys < keys THEN
        INSERT INTO audience_sync.source_changes (campaign_id, customer_id)
        SELECT campaign_id, customer_id FROM old_rows WHERE marked IS NULL OR campaign_id <> ALL (marked);
      END IF;
      RETURN NULL; END $$`.execute(db);
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.log_changed_members() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET jit = off SET enable_mergejoin = off AS $$ BEGIN
      WITH changed AS (
        SELECT campaign_id, customer_id FROM new_rows n FULL JOIN old_rows o USING (campaign_id, customer_id)
        WHERE n.customer_id IS NULL OR o.customer_id IS NULL),
      bulk AS (
        SELECT campaign_id, count(*) AS n FROM changed GROUP BY campaign_id
        HAVING count(*) > 1000 AND count(*) > audience_sync.change_log_key_limit(campaign_id))
      INSERT INTO audience_sync.source_changes (campaign_id, customer_id, bulk_rows)
      SELECT campaign_id, NULL, n FROM bulk
      UNION ALL
      SELECT campaign_id, customer_id, NULL FROM changed c WHERE NOT EXISTS (SELECT FROM bulk b WHERE b.campaign_id = c.campaign_id);
      RETURN NULL; END $$`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

import { sql, type Kysely } from 'kysely';

/**
 * The day's changes, read from the log once for a run's lists (see
 * src/source/run-changes.ts). The log names customers, not lists: a day that
 * writes ten thousand customers names more than a small list reads key by
 * key, so each such list read its whole target group. A run now maps the
 * logged customers to the lists whose snapshots hold them, in one pass over
 * the log and those snapshots, and each list's plan reads only its own keys.
 *
 * run_change_windows: per run and list, the window mapped (the log rows of
 *   transactions visible in `seen` and not in `read_from`, the list's
 *   changes_read_in as it stood); a plan uses it only while the list's read
 *   of the log is still `read_from`.
 * run_change_keys: the (campaign, customer) keys of that window for the list:
 *   its campaigns' logged rows, and its snapshot's rows of logged customers.
 *
 * Both are unlogged: they are derived from the log and the snapshot within
 * one run, and a plan that finds no window reads the log itself.
 *
 * A statement's customer keys no longer send a list to the whole read by
 * their number alone, only by how many are the list's own, so a write to
 * customers logs a marker (migration 0011) only past a tenth of all the
 * lists' snapshot rows together (and past the largest list's own limit, as
 * before): the run's map reads those snapshots once, and past that, reading
 * each list whole costs about as much. A campaign's rows keep their limit.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE UNLOGGED TABLE audience_sync.run_change_windows (
      run_id bigint NOT NULL,
      audience_segment_id bigint NOT NULL,
      read_from text NOT NULL,
      seen text NOT NULL,
      PRIMARY KEY (run_id, audience_segment_id)
    )`.execute(db);
  await sql`
    CREATE UNLOGGED TABLE audience_sync.run_change_keys (
      run_id bigint NOT NULL,
      audience_segment_id bigint NOT NULL,
      customer_id text NOT NULL,
      campaign_id text NOT NULL,
      PRIMARY KEY (run_id, audience_segment_id, customer_id, campaign_id)
    )`.execute(db);
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.change_log_key_limit(campaign text) RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp AS $$
      SELECT greatest(1000, max(floor(r.n / 10)), CASE WHEN campaign IS NULL THEN floor(sum(r.n) / 10) END)::bigint FROM (
        SELECT sum(k.n) AS n FROM audience_sync.lists l
        JOIN audience_sync.list_target_counts k ON k.audience_segment_id = l.audience_segment_id AND k.scope <> ''
        WHERE l.changes_read_in IS NOT NULL AND (campaign IS NULL OR campaign = ANY (l.snapshot_campaigns))
        GROUP BY l.audience_segment_id) r $$`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

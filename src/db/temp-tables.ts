import { sql } from 'kysely';
import type { Db } from './connection.js';

/**
 * The plan transaction's temporary tables (created ON COMMIT DROP by
 * source/snapshot.ts, but for the kept table of changed rows below), and
 * those of the run's map of the change log (source/run-changes.ts), named
 * once for every statement that creates or reads them.
 */

/** Source rows a list has not read yet, from the change log. */
export const LOGGED_CHANGES = sql.table('pg_temp.logged_changes');
/** The (campaign, customer) keys those rows name for the list's active campaigns. */
export const LOGGED_KEYS = sql.table('pg_temp.logged_keys');
/** The changed target-group rows of this refresh, with the old state and identifier of each snapshot row they replace. */
export const TARGET_CHANGES_NAME = 'pg_temp.target_changes';
export const TARGET_CHANGES = sql.table(TARGET_CHANGES_NAME);
/** Identifiers the changes touch, and whether the snapshot holds each after them. */
export const TOUCHED_IDENTIFIERS = sql.table('pg_temp.touched_identifiers');

/** The run's lists that may be mapped: their read of the log, campaigns and key limit. */
export const RUN_WINDOWS = sql.table('pg_temp.run_windows');
/** The log's key rows unread by any of them. */
export const RUN_LOGGED = sql.table('pg_temp.run_logged');
/** Each list's unread transactions among those rows, with how many customer rows each logged. */
export const RUN_WINDOW_XIDS = sql.table('pg_temp.run_window_xids');

/**
 * The session's kept table of changed rows, for a plan that reads a few keys
 * from the run's map of the log: created once per connection, emptied at
 * every commit (ON COMMIT DELETE ROWS), never analyzed, so that the planner
 * prices it by its size on disk, as it does a new table. A table of the
 * plan's own costs more than reading a few rows: 1.5 ms to create and drop
 * (40 keys), and every other session then reads the catalog's changes; in
 * runs of 500 small lists, Postgres spent 24.0 ms of CPU a list with the kept
 * table against 26.9 ms without (means of nine runs each, docs/BENCHMARKS.md).
 * The columns are those the other reads create (ids are text, as in the
 * snapshot).
 */
export async function keepTargetChanges(tx: Db): Promise<void> {
  await sql`
    CREATE TEMP TABLE IF NOT EXISTS ${TARGET_CHANGES} (
      campaign_id text, customer_id text, known boolean, present boolean, new_fingerprint bigint, new_state text,
      new_identifier bytea, old_state text, old_identifier bytea
    ) ON COMMIT DELETE ROWS`.execute(tx);
}

/** The kept table, if the session has it, makes way for a table of the plan's own (dropped at its commit). */
export async function dropKeptTargetChanges(tx: Db): Promise<void> {
  await sql`DROP TABLE IF EXISTS ${TARGET_CHANGES}`.execute(tx);
}

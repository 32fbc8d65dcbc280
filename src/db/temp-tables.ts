import { sql } from 'kysely';

/**
 * The plan transaction's temporary tables (created ON COMMIT DROP by
 * source/snapshot.ts), and those of the run's map of the change log
 * (source/run-changes.ts), named once for every statement that creates or
 * reads them.
 */

/** Source rows a list has not read yet, from the change log. */
export const LOGGED_CHANGES = sql.table('pg_temp.logged_changes');
/** The (campaign, customer) keys those rows name for the list's active campaigns. */
export const LOGGED_KEYS = sql.table('pg_temp.logged_keys');
/** The changed target-group rows of this refresh, with the old state and identifier of each snapshot row they replace. */
export const TARGET_CHANGES = sql.table('pg_temp.target_changes');
/** Identifiers the changes touch, and whether the snapshot holds each after them. */
export const TOUCHED_IDENTIFIERS = sql.table('pg_temp.touched_identifiers');

/** The run's lists that may be mapped: their read of the log, campaigns and key limit. */
export const RUN_WINDOWS = sql.table('pg_temp.run_windows');
/** The log's key rows unread by any of them. */
export const RUN_LOGGED = sql.table('pg_temp.run_logged');
/** Each list's unread transactions among those rows, with how many customer rows each logged. */
export const RUN_WINDOW_XIDS = sql.table('pg_temp.run_window_xids');

import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../db/connection.js';

/**
 * Whether the change log sees every write to the source tables: their
 * catalog rows and log triggers, as one stamp a plan compares with its
 * list's last (chooseSourceRead), and what is wrong when it cannot.
 */

/** The triggers each logged source table must carry, enabled ALWAYS. */
const LOGGED_TABLES = ['customers', 'campaign_target_groups'];
const LOG_TRIGGERS = ['log_insert', 'log_update', 'log_delete', 'log_truncate'];

/**
 * The source tables' and log triggers' catalog rows, as one stamp; null
 * when the log cannot see every write (see logProblems). Disabling and
 * re-enabling a trigger, replacing its function, or rewriting or swapping a
 * table changes the stamp.
 */
export async function sourceStamp(tx: Db): Promise<string | null> {
  return stampOf(await readSourceCatalog(tx));
}

export function stampOf(catalog: readonly SourceCatalogRow[]): string | null {
  if (logProblems(catalog).length > 0) return null;
  const hash = createHash('md5');
  for (const r of catalog) hash.update([r.relname, r.oid, r.relfilenode, r.tgname, r.tgoid, r.tg_version, r.fn, r.fn_version].join(':') + '|');
  return hash.digest('hex');
}

/** One row per logged source table and log trigger it carries (one with NULL trigger columns when it carries none). */
export interface SourceCatalogRow {
  relname: string;
  relkind: string;
  oid: string;
  relfilenode: string;
  replicated: boolean;
  tgname: string | null;
  tgenabled: string | null;
  tgoid: string | null;
  tg_version: string | null;
  fn: string | null;
  fn_version: string | null;
}

async function readSourceCatalog(db: Db): Promise<SourceCatalogRow[]> {
  const { rows } = await sql<SourceCatalogRow>`${sourceCatalog}`.execute(db);
  return rows;
}

export const sourceCatalog = sql`
  SELECT c.relname, c.relkind, c.oid::text, c.relfilenode::text,
         EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel r WHERE r.srrelid = c.oid) AS replicated,
         t.tgname, t.tgenabled, t.oid::text AS tgoid, t.xmin::text AS tg_version, p.oid::text AS fn, p.xmin::text AS fn_version
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid AND t.tgname = ANY(${LOG_TRIGGERS}::text[])
  LEFT JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
  WHERE s.nspname = 'audience_sync' AND c.relname = ANY(${LOGGED_TABLES}::text[])
  ORDER BY c.relname, t.tgname`;

/**
 * Why the log cannot see every write to the source, if it cannot: a table
 * that is not an ordinary table (a view, or a partitioned table whose
 * partitions can be written directly), a table a subscription replicates
 * into (apply workers fire no statement trigger), a log trigger missing or
 * not enabled ALWAYS. Empty when the log can stand in for the tables.
 */
function logProblems(catalog: readonly SourceCatalogRow[]): string[] {
  const problems: string[] = [];
  for (const table of LOGGED_TABLES) {
    const mine = catalog.filter((r) => r.relname === table);
    if (mine[0]?.relkind !== 'r') {
      problems.push(`${table} is not an ordinary table (a view?)`);
      continue;
    }
    if (mine[0].replicated) problems.push(`${table} is replicated into by a subscription`);
    for (const trigger of LOG_TRIGGERS) {
      const t = mine.find((r) => r.tgname === trigger);
      if (!t) problems.push(`${table} has no trigger ${trigger}`);
      else if (t.tgenabled !== 'A')
        problems.push(`${table}.${trigger} is not enabled ALWAYS (ALTER TABLE audience_sync.${table} ENABLE ALWAYS TRIGGER ${trigger})`);
    }
  }
  return problems;
}

/**
 * One line on whether runs can read the change log, and if not, what to do:
 * for preflight. A source that is a view is fine (every run reads it whole);
 * a trigger left enabled but not ALWAYS (what `ENABLE TRIGGER ALL` after a
 * `pg_restore --disable-triggers` leaves) is named with its fix.
 */
export async function describeChangeLog(db: Db): Promise<string> {
  const problems = logProblems(await readSourceCatalog(db));
  return problems.length === 0
    ? 'in use: daily plans read the keys the source triggers logged'
    : `not in use, every run reads whole target groups: ${problems.join('; ')}`;
}

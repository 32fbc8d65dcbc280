import { sql } from 'kysely';
import type { Db } from '../db/connection.js';

/**
 * The email rule (migration 0009) as preflight sees it, in one line. A plan
 * reads the rule's stamp with the list's row (chooseSourceRead).
 */

/**
 * One line on the email rule (see migration 0009): what it is, and what the
 * server's ICU needed from the pinned table, or why addresses beyond ASCII
 * cannot be judged here. Fails, with the command to run, after an ICU upgrade.
 */
export async function describeEmailRule(db: Db): Promise<string> {
  const { rows } = await sql<{ stamp: string; icu_version: string; corrected: number | null; encoding: string }>`
    SELECT audience_sync.email_rule_stamp() AS stamp, r.icu_version, r.corrected, pg_catalog.getdatabaseencoding() AS encoding
    FROM audience_sync.email_rule r`.execute(db);
  const r = rows[0]!;
  if (r.icu_version === 'none') {
    return `${r.stamp}: this Postgres has no ICU or the database is ${r.encoding}, not UTF8, so every address beyond ASCII counts as invalid`;
  }
  return `${r.stamp}${r.corrected ? ` (${r.corrected} letters newer than this ICU are lowercased by the pinned table)` : ''}`;
}

import { sql } from 'kysely';
import type { Db } from '../db/connection.js';

/**
 * The email rule (migration 0009) as the plan and preflight see it: the
 * stamp a list's verdicts were reached by, and one line for preflight.
 */

/**
 * The email rule this plan judges by, and whether the list's snapshot was
 * judged by another: a new rule (a migration), or a Postgres whose NFC
 * tables or ICU differ (an upgrade). The stamp fails with the command to
 * run when the server's ICU changed since `migrate` calibrated the rule.
 */
export async function readEmailRule(tx: Db, segmentId: string): Promise<{ emailRule: string; rejudge: boolean }> {
  const { rows } = await sql<{ rule: string; rejudge: boolean }>`
    SELECT r.rule, l.email_rule IS DISTINCT FROM r.rule AS rejudge
    FROM (SELECT audience_sync.email_rule_stamp() AS rule) r
    LEFT JOIN audience_sync.lists l ON l.audience_segment_id = ${segmentId}::bigint`.execute(tx);
  return { emailRule: rows[0]!.rule, rejudge: rows[0]!.rejudge };
}

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

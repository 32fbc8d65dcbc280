import { sql, type Kysely } from 'kysely';

/**
 * The lists' snapshots (list_targets) are unlogged: they are derived from the
 * source and can always be read again, so they need not cost the write-ahead
 * log a copy of every target-group row. A first sync of a big list then
 * writes about half the WAL it did, and the daily run that follows it meets
 * fewer checkpoints.
 *
 * A crash or a failover empties an unlogged table. A list whose counters
 * (list_target_counts, logged) say its snapshot has rows, while list_targets
 * holds none, has lost it: its next plan reads the whole target group and
 * diffs it against the whole ledger (logged, the truth of what Criteo holds),
 * as a first sync does. See lockListState and docs/RELIABILITY.md.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE audience_sync.list_targets SET UNLOGGED`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

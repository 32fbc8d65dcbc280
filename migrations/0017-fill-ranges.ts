import { sql, type Kysely } from 'kysely';

/**
 * A list's first fill plans ranges, not rows. Every identifier of the new
 * snapshot is an add, so its plan is the snapshot itself, in identifier
 * order: batch k is the distinct identifiers of the list's snapshot from
 * `first_identifier` to `last_identifier`, `size` of them. The plan writes
 * one row a batch (183 at nine million members) instead of one a member, and
 * each claim reads its range from the snapshot's identifier index (see
 * planFill and claimBatch). Unlogged, as plan_entries: a crash empties both
 * with the snapshot, and a claim that finds its range gone or changed stops
 * the list sync.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE UNLOGGED TABLE audience_sync.plan_ranges (
      list_sync_id     bigint NOT NULL,
      batch_no         integer NOT NULL,
      first_identifier bytea NOT NULL,
      last_identifier  bytea NOT NULL,
      size             integer NOT NULL CHECK (size > 0),
      PRIMARY KEY (list_sync_id, batch_no)
    )`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

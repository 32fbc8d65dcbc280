import { sql, type Kysely } from 'kysely';

/**
 * Batches are read from plan_entries by keyset (identifier > last, in order)
 * rather than through a long-lived cursor, which never returns from close()
 * on a connection Postgres has dropped. The plan is inserted in identifier
 * order, so this index is built by appending.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX audience_sync.plan_entries_list_sync_idx`.execute(db);
  await sql`CREATE INDEX plan_entries_keyset_idx ON audience_sync.plan_entries (list_sync_id, operation, identifier)`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

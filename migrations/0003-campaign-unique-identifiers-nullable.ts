import { sql, type Kysely } from 'kysely';

/** A campaign of a shared list has no unique-identifier count of its own (counting it would cost more than the diff). */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE audience_sync.list_sync_campaigns ALTER COLUMN unique_identifiers DROP NOT NULL`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

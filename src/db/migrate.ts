import { sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import { migrations } from '../../migrations/index.js';
import type { Db } from './connection.js';
import { lockSchemaCreation } from './locks.js';
import { SchemaError } from '../core/errors.js';

const migrationTables = { migrationTableSchema: 'audience_sync', migrationTableName: 'migrations', migrationLockTableName: 'migrations_lock' };

/** The job's migrator: its migrations and its tables, in the audience_sync schema (a test also steps it to a given migration). */
export function migrator(db: Db): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
    ...migrationTables,
  });
}

/**
 * Creates or upgrades the schema. Kysely's Migrator holds an advisory lock for
 * the whole pass, so two processes starting at once apply each migration once.
 */
export async function migrateToLatest(db: Db): Promise<string[]> {
  // Two `CREATE SCHEMA IF NOT EXISTS` at once can both miss the schema and one then fails: the lock makes them take turns.
  await db.transaction().execute(async (tx) => {
    await lockSchemaCreation(tx);
    await sql`CREATE SCHEMA IF NOT EXISTS audience_sync`.execute(tx);
  });
  const { error, results } = await migrator(db).migrateToLatest();
  // Kysely types the failure as unknown; what a migration or pg throws is an Error, rethrown as is.
  if (error) throw error instanceof Error ? error : new Error('a migration failed', { cause: error });
  // The email rule's case mapping, fitted to the server's ICU again if it changed (an OS or Postgres upgrade): see migration 0009.
  await sql`SELECT audience_sync.calibrate_email_rule()`.execute(db);
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Fails fast, with the command to run, when the schema is missing or behind. */
export async function assertMigrated(db: Db): Promise<void> {
  let pending: string[];
  try {
    const all = await migrator(db).getMigrations();
    pending = all.filter((m) => !m.executedAt).map((m) => m.name);
  } catch {
    pending = Object.keys(migrations);
  }
  if (pending.length > 0) {
    throw new SchemaError(`the database schema is not up to date (${pending.length} migration(s) pending): run \`audience-sync migrate\``);
  }
  // Fails, with the command to run, when the server's ICU changed since the email rule was fitted to it.
  await sql`SELECT audience_sync.email_rule_stamp()`.execute(db).catch((error: unknown) => {
    throw new SchemaError((error as Error).message, { cause: error });
  });
}

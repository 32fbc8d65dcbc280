import { sql, type RawBuilder } from 'kysely';
import type pg from 'pg';
import type { Db } from './connection.js';

/**
 * Every advisory lock the job takes. Each has a class (the first key of
 * Postgres's two-key form), so its locks never collide with anyone else's,
 * and is keyed by the thing it guards.
 */

/** A run is alive: held for the run's whole life on a dedicated connection. */
const RUN_LOCK_CLASS = 0x41_53_01; // "AS" 1
/** A list is being synced: one run at a time writes to a list. */
export const LIST_LOCK_CLASS = 0x41_53_02; // "AS" 2
/** The source change log: plans hold it shared until they commit; pruning needs it alone. */
export const CHANGE_LOG_LOCK_CLASS = 0x41_53_03; // "AS" 3

/** Creating the job's schema: one process at a time. */
const SCHEMA_LOCK_CLASS = 0x41_53_04; // "AS" 4

/**
 * Granting a slot of a Criteo app's shared rate budget, keyed by hashtext of
 * the client key: taken inside audience_sync.take_rate_slots (migration 0010),
 * which holds it for its one statement. Named here so no other lock takes it.
 */
export const RATE_BUDGET_LOCK_CLASS = 0x41_53_0a; // "AS" 10

/** Holds the schema-creation lock for the transaction. */
export async function lockSchemaCreation(tx: Db): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_CLASS}::int, 0)`.execute(tx);
}

/**
 * Records a run and marks it alive until `client`'s connection closes (a
 * dead process lets the lock go with its connection), in one statement: no
 * other process sees the run's row without its lock, and so none can take
 * it for a dead run's (closeAbandonedRuns). `options`: the run row's JSON.
 */
export async function startRunHoldingItsLock(client: pg.PoolClient, trigger: string, asOf: Date, options: Record<string, unknown>): Promise<number> {
  const { rows } = await client.query<{ run_id: number }>(
    `WITH run AS (INSERT INTO audience_sync.runs (trigger, as_of, options) VALUES ($1, $2, $3::jsonb) RETURNING run_id)
     SELECT run_id, pg_advisory_lock($4::int, run_id::int) FROM run`,
    [trigger, asOf, JSON.stringify(options), RUN_LOCK_CLASS],
  );
  return rows[0]!.run_id;
}

/** Takes the list's lock on `client` if it is free; held until the connection is released. */
export async function tryListLock(client: pg.PoolClient, segmentId: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS ok', [LIST_LOCK_CLASS, Number(segmentId) | 0]);
  return rows[0]?.ok === true;
}

/**
 * Lets the list's lock go and hands its connection back to the pool, warm
 * for the next list; a connection whose unlock fails is closed instead,
 * which lets the lock go with it.
 */
export async function releaseListLock(client: pg.PoolClient, segmentId: string, held: boolean): Promise<void> {
  if (!held) return client.release();
  try {
    const { rows } = await client.query<{ ok: boolean }>('SELECT pg_advisory_unlock($1::int, $2::int) AS ok', [LIST_LOCK_CLASS, Number(segmentId) | 0]);
    client.release(rows[0]?.ok === true ? undefined : true);
  } catch {
    client.release(true);
  }
}

/** SQL: true, and the run's lock taken for this transaction, when the run `runId` names has no live process. */
export const runLockFree = (runId: ReturnType<typeof sql.ref>) => sql<boolean>`pg_try_advisory_xact_lock(${RUN_LOCK_CLASS}::int, ${runId}::int)`;

/**
 * Holds the change log's lock shared for the plan's transaction, and returns the snapshot it reads the source as of;
 * `settings`: set_config expressions for the rest of the transaction, made in the same statement.
 */
export async function lockChangeLogShared(tx: Db, settings: readonly RawBuilder<string>[] = []): Promise<string> {
  const { rows } = await sql<{ seen: string }>`
    SELECT pg_advisory_xact_lock_shared(${CHANGE_LOG_LOCK_CLASS}::int, 0), pg_current_snapshot()::text AS seen
    ${settings.length > 0 ? sql`, ${sql.join(settings)}` : sql``}`.execute(tx);
  return rows[0]!.seen;
}

/** Takes the change log's lock alone for this transaction, if no plan holds it. */
export async function tryLockChangeLogAlone(tx: Db): Promise<boolean> {
  const { rows } = await sql<{ locked: boolean }>`
    SELECT pg_try_advisory_xact_lock(${CHANGE_LOG_LOCK_CLASS}::int, 0) AS locked`.execute(tx);
  return rows[0]!.locked;
}

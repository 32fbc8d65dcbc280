import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { prepareRepeatedStatements } from './prepared.js';
import type { Database } from './schema.js';
import { databaseUrlParts, type Config } from '../core/config.js';

export type Db = Kysely<Database>;

// bigint counts come back as JS numbers: every count here is far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface DbHandle {
  db: Db;
  /** The statements' pool, db's. */
  pool: pg.Pool;
  /**
   * Connections that hold an advisory lock for a whole run or list (run.ts,
   * list.ts), a pool apart: however many locks a process holds (LIST_CONCURRENCY
   * lists, a console's resyncs), they never take the connections the plans'
   * statements need, and a lock wait never keeps a statement waiting.
   */
  locks: pg.Pool;
  close(): Promise<void>;
}

/** How the job's sessions run: their work_mem (the server's when unset), and whether they name their repeated statements (prepared.ts). */
export interface SessionSettings {
  workMem?: string | undefined;
  preparedStatements?: boolean;
}

/** The job's session settings, as configured (PG_WORK_MEM, PG_PREPARED_STATEMENTS). */
export function sessionSettingsOf(config: Pick<Config, 'pgWorkMem' | 'pgPreparedStatements'>): SessionSettings {
  return { workMem: config.pgWorkMem, preparedStatements: config.pgPreparedStatements };
}

/** Connections the pool keeps for statements, shared by everything the process does at once. */
export const STATEMENT_CONNECTIONS = 16;

/**
 * The statements' connections a process needs to sync `listConcurrency`
 * lists at once: one for each list's plan, whose transaction holds one for
 * the whole plan, and four more for the short statements around them; at
 * least STATEMENT_CONNECTIONS.
 */
export function connectionsFor(listConcurrency: number): number {
  return Math.max(STATEMENT_CONNECTIONS, listConcurrency + 4);
}

/** The most advisory locks a process holds at once (DbHandle.locks): LIST_CONCURRENCY lists and the run, or a console's resyncs. */
const LOCK_CONNECTIONS = 64;

export function connect(databaseUrl: string, maxConnections = STATEMENT_CONNECTIONS, { workMem, preparedStatements = true }: SessionSettings = {}): DbHandle {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: maxConnections,
    application_name: 'audience-sync',
    options: sessionOptions({ workMem, preparedStatements }),
    // A dead database must surface as an error, not a hang.
    connectionTimeoutMillis: 10_000,
  });
  // An idle client losing its connection (a restarted Postgres) must not crash the process.
  pool.on('error', () => {});
  // pg also emits 'error' on a checked-out client whose server went away; the query in flight rejects
  // with it anyway, so without a listener the event would only crash the process.
  pool.on('connect', (client) => {
    client.on('error', () => {});
    if (preparedStatements) prepareRepeatedStatements(client);
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const locks = new pg.Pool({ connectionString: databaseUrl, max: LOCK_CONNECTIONS, application_name: 'audience-sync lock', connectionTimeoutMillis: 10_000 });
  locks.on('error', () => {});
  locks.on('connect', (client) => client.on('error', () => {}));
  return {
    db,
    pool,
    locks,
    close: async () => {
      await db.destroy();
      await locks.end();
    },
  };
}

/** Session settings, for this job's connections only; named statements are planned for each execution (prepared.ts). */
function sessionOptions({ workMem, preparedStatements }: SessionSettings): string | undefined {
  const settings = [...(workMem ? [`work_mem=${workMem}`] : []), ...(preparedStatements ? ['plan_cache_mode=force_custom_plan'] : [])];
  return settings.length > 0 ? settings.map((setting) => `-c ${setting}`).join(' ') : undefined;
}

/** Checks the connection answers; the error names the host, never the password. */
export async function ping(db: Db): Promise<void> {
  await sql`SELECT 1`.execute(db);
}

/**
 * Where the URL connects, `host:port/database`, for messages: never its user
 * or password. A URL whose parts are not where they seem (an unescaped `@`,
 * `/`, `?` or `#` in its password) may hold part of the password in its host
 * or path, so it is described by no part at all.
 */
export function describeDatabaseUrl(url: string): string {
  const parts = databaseUrlParts(url);
  return parts ? `${parts.host}:${parts.port}${parts.path}` : 'the configured database';
}

/**
 * Runs statements that look a few thousand keys up in tables of millions.
 * The planner's default random_page_cost (4) prices an index probe as an
 * uncached disk read, and then scans whole tables instead; a daily job's
 * tables are cached, where a probe costs about a sequential page. Set for
 * the transaction, reset after (an error rolls the setting back with it),
 * unless the transaction probes from now on (probingKeysFromNowOn).
 */
export async function probingKeys<T>(tx: Db, run: () => Promise<T>): Promise<T> {
  if (probingTransactions.has(tx)) return run();
  await sql`SET LOCAL random_page_cost = 1.1`.execute(tx);
  const result = await run();
  await sql`RESET random_page_cost`.execute(tx);
  return result;
}

/** Transactions whose every statement, until probingNoMore, looks keys up. */
const probingTransactions = new WeakSet<Db>();

/** SQL: the pricing probingKeys sets, as an expression for a statement of the transaction's own to carry. */
const PROBING_SETTING = sql<string>`set_config('random_page_cost', '1.1', true)`;

/**
 * Prices index probes as probingKeys does for the rest of the transaction:
 * one setting for a plan, whose statements mostly handle the day's few
 * keys, instead of one around each. `carry` runs a statement of the
 * caller's that sets it with its own work (the plan's snapshot, say), so
 * the setting costs no statement of its own.
 */
export async function probingKeysFromNowOn<T>(tx: Db, carry: (setting: typeof PROBING_SETTING) => Promise<T>): Promise<T> {
  const result = await carry(PROBING_SETTING);
  probingTransactions.add(tx);
  return result;
}

/**
 * Runs `attempt` under a savepoint and keeps what it did only if it returns
 * true; otherwise it is undone, the transaction's settings with it, and the
 * pricing of probes is as it was before (probingKeysFromNowOn).
 */
export async function keptIf(tx: Db, attempt: () => Promise<boolean>): Promise<boolean> {
  const probing = probingTransactions.has(tx);
  await sql`SAVEPOINT attempt`.execute(tx);
  if (await attempt()) {
    await sql`RELEASE SAVEPOINT attempt`.execute(tx);
    return true;
  }
  await sql`ROLLBACK TO SAVEPOINT attempt`.execute(tx);
  if (probing) probingTransactions.add(tx);
  else probingTransactions.delete(tx);
  return false;
}

/** Back to the default pricing (and parallel tuple cost: see compareWholeTargetGroup), before a statement that may read a whole list. */
export async function probingNoMore(tx: Db): Promise<void> {
  if (!probingTransactions.delete(tx)) return;
  await sql`RESET random_page_cost; RESET parallel_tuple_cost`.execute(tx);
}

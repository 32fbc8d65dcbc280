import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../src/core/config.js';
import { CriteoClient } from '../src/criteo/client.js';
import type { RateLimiter } from '../src/criteo/rate-limiter.js';
import { connect, type DbHandle } from '../src/db/connection.js';
import { silentLogger, type Logger } from '../src/core/logger.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { startSandbox, type Sandbox, type SandboxOptions } from '../src/sandbox/server.js';
import { runSync, type RunSummary, type SyncOptions } from '../src/sync/run.js';
import { referenceIdentifier } from './drills/reference.js';

/** The independent Node implementation of the identifier recipe, for checking the SQL one. */
export { referenceIdentifier };

/**
 * A database of its own for one test file, created from the shared server and dropped after.
 * `options` are CREATE DATABASE options (e.g. a locale), written as given: test code only.
 */
export async function createTestDatabase(label: string, options = ''): Promise<{ url: string; drop: () => Promise<void> }> {
  const admin = inject('adminDatabaseUrl');
  const name = `as_test_${label.replace(/\W+/g, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name} ${options}`).finally(() => client.end());
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      if (process.env.KEEP_TEST_DATABASES) return;
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export const CLIENT_ID = 'test-client';
export const CLIENT_SECRET = 'test-secret-do-not-log';

export interface World {
  databaseUrl: string;
  database: DbHandle;
  sandbox: Sandbox;
  env: Record<string, string>;
  config: Config;
  /**
   * One sync pass with a fresh client (as a new process would have). `hooks`
   * may hand the client a limiter of its own (e.g. a shorter window), a
   * logger to capture the client's and the run's log lines, and the run
   * connections other than the world's own.
   */
  run(options?: Partial<SyncOptions>, env?: Record<string, string>, hooks?: RunHooks): Promise<RunSummary>;
  close(): Promise<void>;
}

export interface RunHooks {
  limiter?: RateLimiter;
  log?: Logger;
  /** The run's statements go to `db`, its locks' connections come from `locks`. */
  database?: Pick<DbHandle, 'db' | 'locks'>;
}

/** A migrated database (unless `migrate` is false: an empty one) and a sandbox on loopback, wired like a deployment. */
export async function createWorld(
  label: string,
  sandboxOptions: SandboxOptions = {},
  extraEnv: Record<string, string> = {},
  { migrate = true }: { migrate?: boolean } = {},
): Promise<World> {
  const { url, drop } = await createTestDatabase(label);
  const database = connect(url);
  if (migrate) await migrateToLatest(database.db);
  const sandbox = await startSandbox({
    clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, advertiserIds: '*' }],
    // No sandbox rate limit unless a test is about rate limits.
    rateLimitPerMinute: 0,
    ...sandboxOptions,
  });
  const env: Record<string, string> = {
    DATABASE_URL: url,
    CRITEO_API_URL: sandbox.url,
    CRITEO_CLIENT_ID: CLIENT_ID,
    CRITEO_CLIENT_SECRET: CLIENT_SECRET,
    CRITEO_MAX_CALLS_PER_MINUTE: '100000',
    CRITEO_RETRY_BASE_MS: '5',
    LOCK_WAIT_SECONDS: '2',
    ...extraEnv,
  };
  const config = loadConfig(env);
  return {
    databaseUrl: url,
    database,
    sandbox,
    env,
    config,
    async run(options = {}, moreEnv = {}, hooks = {}) {
      const cfg = loadConfig({ ...env, ...moreEnv });
      const log = hooks.log ?? testLogger();
      const client = new CriteoClient(cfg.criteo, log, hooks.limiter);
      try {
        const { db, locks } = hooks.database ?? database;
        return await runSync({ db, locks, client, config: cfg, log }, { trigger: 'test', ...options });
      } finally {
        await client.close();
      }
    },
    async close() {
      await sandbox.close();
      await database.close();
      await drop();
    },
  };
}

function testLogger(): Logger {
  return silentLogger;
}

// --- Source data -------------------------------------------------------------

export interface CampaignSeed {
  id: string;
  segmentId: string;
  advertiserId?: string;
  startsAt?: Date;
  endsAt?: Date;
}

const DAY = 86_400_000;

export async function seedCampaigns(db: DbHandle['db'], campaigns: CampaignSeed[]): Promise<void> {
  await db
    .insertInto('audience_sync.campaigns')
    .values(
      campaigns.map((c) => ({
        campaign_id: c.id,
        name: `Campaign ${c.id}`,
        advertiser_id: c.advertiserId ?? '1',
        audience_segment_id: c.segmentId,
        starts_at: c.startsAt ?? new Date(Date.now() - DAY),
        measurement_ends_at: c.endsAt ?? new Date(Date.now() + 30 * DAY),
      })),
    )
    .execute();
}

/** Customers c{from}..c{to-1} with emails user{i}@example.com, generated in Postgres. */
export async function seedCustomers(db: DbHandle['db'], from: number, to: number, domain = 'example.com'): Promise<void> {
  await sql`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'c' || i, 'User' || i || '@' || ${domain} FROM generate_series(${from}::int, ${to - 1}::int) i
    ON CONFLICT (customer_id) DO UPDATE SET email = excluded.email`.execute(db);
}

export async function seedTargetGroup(db: DbHandle['db'], campaignId: string, from: number, to: number): Promise<void> {
  await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT ${campaignId}, 'c' || i FROM generate_series(${from}::int, ${to - 1}::int) i
    ON CONFLICT DO NOTHING`.execute(db);
}

/** One campaign (`prefix` + the list id) for each list, feeding it ten customers of its own. */
export async function seedListsOfTen(db: DbHandle['db'], segmentIds: readonly string[], prefix: string): Promise<void> {
  await seedCampaigns(
    db,
    segmentIds.map((segmentId) => ({ id: `${prefix}${segmentId}`, segmentId })),
  );
  await seedCustomers(db, 0, 10 * segmentIds.length);
  for (const [i, segmentId] of segmentIds.entries()) await seedTargetGroup(db, `${prefix}${segmentId}`, i * 10, i * 10 + 10);
}

/** What the job should hold for a list: computed independently of the job's own SQL, in Node. */
export async function expectedIdentifiers(db: DbHandle['db'], segmentId: string, at = new Date()): Promise<Set<string>> {
  const { rows } = await sql<{ email: string | null }>`
    SELECT cu.email FROM audience_sync.campaigns c
    JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
    JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
    WHERE c.audience_segment_id = ${segmentId}::bigint AND c.starts_at <= ${at} AND ${at} < c.measurement_ends_at`.execute(db);
  const out = new Set<string>();
  for (const { email } of rows) {
    const id = referenceIdentifier(email);
    if (id) out.add(id);
  }
  return out;
}

export async function ledgerOf(db: DbHandle['db'], segmentId: string): Promise<Set<string>> {
  const { rows } = await sql<{ id: string }>`
    SELECT encode(identifier, 'hex') AS id FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`.execute(db);
  return new Set(rows.map((r) => r.id));
}

export function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/** sandbox == desired == ledger, as sizes for a readable failure message. */
export async function convergence(world: World, segmentId: string) {
  const desired = await expectedIdentifiers(world.database.db, segmentId);
  const ledger = await ledgerOf(world.database.db, segmentId);
  const criteo = world.sandbox.members(segmentId);
  return {
    desired: desired.size,
    ledger: ledger.size,
    criteo: criteo.size,
    exact: sameSet(desired, ledger) && sameSet(desired, criteo),
  };
}

export function patchCalls(world: World) {
  return world.sandbox.calls.filter((c) => c.operation === 'patch');
}

// --- The CLI as a real process -------------------------------------------------

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `audience-sync <args>` as its own process (asynchronously: the in-process sandbox must keep answering). */
export function startCli(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => {
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
  return { child, done, output: () => ({ stdout, stderr }) };
}

export function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return startCli(args, env).done;
}

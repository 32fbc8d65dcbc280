import { cpus } from 'node:os';
import pg from 'pg';
import { connect } from '../src/db/connection.js';
import { migrateToLatest } from '../src/db/migrate.js';

/** The bench's own database: created fresh for each run, migrated, described, dropped. */

/**
 * Drops and recreates the bench database; returns its URL. Every session on
 * it reports each statement's CPU time (log_executor_stats, sent back to the
 * client as a LOG notice: see bench/job-runner.ts), unless `cpuProbe` is
 * false; with `explain`, also auto_explain's plans of statements over 200 ms.
 */
export async function freshDatabase(adminUrl: string, name: string, explain = false, { cpuProbe = true }: { cpuProbe?: boolean } = {}): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`--database: ${name} is not a plain identifier`);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  const settings: [string, string][] = [
    ...(cpuProbe
      ? ([
          ['log_executor_stats', 'on'],
          ['client_min_messages', 'log'],
        ] as [string, string][])
      : []),
    ...(explain
      ? ([
          ['session_preload_libraries', 'auto_explain'],
          ['auto_explain.log_min_duration', '200'],
          ['auto_explain.log_analyze', 'on'],
          ['auto_explain.log_buffers', 'on'],
          ['auto_explain.log_level', 'info'],
        ] as [string, string][])
      : []),
  ];
  for (const [setting, value] of settings) await admin.query(`ALTER DATABASE ${name} SET ${setting} = '${value}'`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}

export async function migrate(url: string): Promise<void> {
  const handle = connect(url);
  try {
    await migrateToLatest(handle.db);
  } finally {
    await handle.close();
  }
}

export async function tableSizesMb(client: pg.Client): Promise<Record<string, number>> {
  const { rows } = await client.query<{ name: string; mb: string }>(`
    SELECT c.relname AS name, round(pg_total_relation_size(c.oid) / 1048576.0, 1) AS mb
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'audience_sync' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC`);
  return Object.fromEntries(rows.map((r) => [r.name, Number(r.mb)]));
}

export async function settings(client: pg.Client): Promise<Record<string, string>> {
  const names = [
    'server_version',
    'shared_buffers',
    'work_mem',
    'maintenance_work_mem',
    'max_wal_size',
    'max_parallel_workers_per_gather',
    'synchronous_commit',
    'jit',
  ];
  const { rows } = await client.query<{ name: string; setting: string }>(
    `SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY($1)`,
    [names],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
}

/** Where and when a bench ran: the machine, Node, Postgres's settings, and the load average sampled along the way. */
export interface RunMachine {
  startedAt: string;
  finishedAt: string;
  node: string;
  cpus: number;
  cpuModel: string;
  loadavg: number[][];
  postgres: Record<string, string>;
}

/** The RunMachine of a bench that started at `startedAt` and sampled `load` (os.loadavg()) along the way; finished now. */
export function runMachine(startedAt: Date, load: readonly number[][], postgres: Record<string, string>): RunMachine {
  return {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '',
    loadavg: load.map((l) => l.map((x) => Math.round(x * 100) / 100)),
    postgres,
  };
}

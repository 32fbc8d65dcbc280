import { loadavg } from 'node:os';
import pg from 'pg';
import { dropDatabase, freshDatabase, migrate, runMachine, settings, type RunMachine } from './database.js';
import type { Target } from './report.js';

/**
 * `--trigger-cost`: what the change-log triggers cost the writers of the
 * source tables. In a scratch database, the same writes are timed with the
 * triggers disabled and enabled, in rounds that alternate (disabled,
 * enabled, disabled, …), each round starting from empty tables (TRUNCATE,
 * VACUUM) so that both sides write into the same table state, and each
 * write right after a CHECKPOINT (see runRound). A write of 1 % runs three
 * times a round, on three slices of the rows. Each timed write runs in
 * a session of its own, as a loader's statement would (a trigger function's
 * plans are cached per session, planned for the first call's rows). The
 * medians and their ratio, per write, are judged against the targets of
 * issue 16.
 *
 * The database holds a list whose snapshot has read the log and holds the N
 * target-group rows (as after a first sync): the thresholds the triggers
 * apply are then those of a deployment with one list of N rows, so a bulk
 * load logs a marker and a day's writes (1 %) log their keys.
 */

/** One side of a write: each round's time, and its backend's CPU time, with their medians. */
export interface Timings {
  ms: number[];
  cpuMs: number[];
  medianMs: number;
  medianCpuMs: number;
}

export interface WriteTiming {
  name: string;
  /** The target ratio enabled / disabled; null: reported only. */
  limit: number | null;
  disabled: Timings;
  enabled: Timings;
  /** Median enabled / median disabled: wall time (judged) and backend CPU time (the contention-free view). */
  ratio: number;
  cpuRatio: number;
  /** Rows the write added to source_changes, triggers enabled (the last enabled round). */
  logRows: number;
}

export interface TriggerCostResult {
  mode: 'trigger-cost';
  meta: {
    customers: number;
    pairs: number;
    source: string;
  } & RunMachine;
  writes: WriteTiming[];
  /** source_changes rows a first bulk load (N customers, N target-group rows) into empty tables leaves, triggers enabled. */
  firstLoadLogRows: number;
  /** The DELETE that prunes them (as a run's pruning does), first enabled round. */
  firstLoadPruneMs: number;
  targets: Target[];
}

interface Write {
  name: (n: number) => string;
  limit: number | null;
  /** $1 is N; for a write of 1 % repeated in a round, $2 shifts the slice of rows it writes. */
  sql: string;
  /** Each round times a bulk write once, a write of 1 % on three slices of the rows. */
  repeat: 1 | 3;
}

const fmt = (n: number) => n.toLocaleString('en');

/** In the order a round runs them. */
const WRITES: Write[] = [
  {
    name: (n) => `INSERT ${fmt(n)} customers`,
    limit: 1.3,
    sql: `INSERT INTO audience_sync.customers SELECT 'C' || i, 'user' || i || '@example.com' FROM generate_series(1, $1::int) i`,
    repeat: 1,
  },
  {
    name: (n) => `INSERT ${fmt(n)} target-group rows`,
    limit: 1.3,
    sql: `INSERT INTO audience_sync.campaign_target_groups SELECT 'k', 'C' || i FROM generate_series(1, $1::int) i`,
    repeat: 1,
  },
  {
    // A statement over every row, judged as a bulk load is.
    name: (n) => `upsert all ${fmt(n)} customers, nothing changed`,
    limit: 1.3,
    sql: `INSERT INTO audience_sync.customers SELECT 'C' || i, 'user' || i || '@example.com' FROM generate_series(1, $1::int) i
          ON CONFLICT (customer_id) DO UPDATE SET email = excluded.email`,
    repeat: 1,
  },
  {
    name: () => 'UPDATE 1 % of the emails',
    limit: 1.1,
    sql: `UPDATE audience_sync.customers SET email = 'moved' || customer_id || '@example.org'
          WHERE customer_id IN (SELECT 'C' || i FROM generate_series(1 + $2::int, $1::int, 100) i)`,
    repeat: 3,
  },
  {
    name: () => 'DELETE 1 % of the target-group rows',
    limit: 1.1,
    sql: `DELETE FROM audience_sync.campaign_target_groups WHERE customer_id IN (SELECT 'C' || i FROM generate_series(2 + $2::int, $1::int, 100) i)`,
    repeat: 3,
  },
];

const TABLES = ['customers', 'campaign_target_groups'];
const TRIGGERS = ['log_insert', 'log_update', 'log_delete', 'log_truncate'];

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * One statement in a session of its own; only the statement is timed. Its
 * backend's CPU time (log_executor_stats, set on the database: see
 * freshDatabase) is the contention-free view, as in the sync bench.
 */
async function timed(url: string, text: string, params: unknown[]): Promise<{ ms: number; cpuMs: number }> {
  const client = new pg.Client({ connectionString: url, application_name: 'audience-sync-bench' });
  let cpuMs = 0;
  client.on('notice', (notice) => {
    const m = notice.message === 'EXECUTOR STATISTICS' ? /([\d.]+) s user, ([\d.]+) s system/.exec(notice.detail ?? '') : null;
    if (m) cpuMs += (Number(m[1]) + Number(m[2])) * 1000;
  });
  await client.connect();
  try {
    await client.query('SELECT 1');
    cpuMs = 0;
    const t = performance.now();
    await client.query(text, params);
    return { ms: performance.now() - t, cpuMs };
  } finally {
    await client.end();
  }
}

async function setTriggers(client: pg.Client, enabled: boolean): Promise<void> {
  for (const table of TABLES) {
    const clause = TRIGGERS.map((t) => `${enabled ? 'ENABLE ALWAYS' : 'DISABLE'} TRIGGER ${t}`).join(', ');
    await client.query(`ALTER TABLE audience_sync.${table} ${clause}`);
  }
}

async function logRows(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM audience_sync.source_changes');
  return Number(rows[0]!.n);
}

/** A list whose snapshot has read the log and holds the N rows of campaign k: the triggers' thresholds of one N-row list. */
async function seedListState(client: pg.Client, customers: number): Promise<void> {
  await client.query(`
    INSERT INTO audience_sync.lists (audience_segment_id, changes_read_in, snapshot_campaigns, whole_read_at, whole_read_due)
    VALUES (1001, pg_current_snapshot(), '{k}', now(), now() + interval '7 days')`);
  await client.query(`INSERT INTO audience_sync.list_target_counts VALUES (1001, 'k', 'valid', $1), (1001, '', 'valid', $1)`, [customers]);
}

interface Round {
  /** Per write, each time it ran in the round. */
  ms: number[][];
  cpuMs: number[][];
  logRows: number[];
  firstLoad?: { rows: number; pruneMs: number };
}

async function vacuum(client: pg.Client): Promise<void> {
  await client.query('VACUUM (ANALYZE) audience_sync.customers, audience_sync.campaign_target_groups, audience_sync.source_changes');
}

/**
 * One round: empty tables, then each write in turn, vacuumed between the
 * bulk loads, the upsert and the rest. Each write starts right after a
 * CHECKPOINT, as a day's write does (a checkpoint comes at least every
 * checkpoint_timeout, so a day's write is each page's first since one and
 * logs the whole page, full_page_writes): none pays for the last one's dirty
 * buffers, and the repeated writes of 1 % are alike.
 */
async function runRound(client: pg.Client, url: string, customers: number, enabled: boolean, first: boolean): Promise<Round> {
  await setTriggers(client, enabled);
  await client.query('TRUNCATE audience_sync.customers, audience_sync.campaign_target_groups');
  // After, so that the TRUNCATE's own markers are gone too: the first load starts from an empty log.
  await client.query('TRUNCATE audience_sync.source_changes');
  await vacuum(client);
  const round: Round = { ms: [], cpuMs: [], logRows: [] };
  for (const [i, write] of WRITES.entries()) {
    if (i === 2 || i === 3) await vacuum(client);
    const before = await logRows(client);
    round.ms.push([]);
    round.cpuMs.push([]);
    for (let k = 0; k < write.repeat; k++) {
      await client.query('CHECKPOINT');
      const { ms, cpuMs } = await timed(url, write.sql, write.repeat > 1 ? [customers, 10 * k] : [customers]);
      round.ms[i]!.push(ms);
      round.cpuMs[i]!.push(cpuMs);
    }
    round.logRows.push(((await logRows(client)) - before) / write.repeat);
    if (i === 1 && enabled && first) {
      const rows = await logRows(client);
      const t = performance.now();
      await client.query('DELETE FROM audience_sync.source_changes WHERE xid < pg_snapshot_xmin(pg_current_snapshot())');
      round.firstLoad = { rows, pruneMs: performance.now() - t };
    }
  }
  return round;
}

function judge(writes: readonly WriteTiming[], firstLoadLogRows: number): Target[] {
  const targets: Target[] = writes.map((w) => ({
    name: `${w.name} ≤ ${w.limit?.toFixed(1) ?? '–'}×`,
    value: `${w.ratio.toFixed(2)}×`,
    limit: w.limit === null ? '–' : `${w.limit.toFixed(2)}×`,
    pass: w.limit === null ? null : w.ratio <= w.limit,
  }));
  // Nothing proportional to the load: one marker per statement (per campaign for target groups), not a row per key.
  targets.push({
    name: 'source_changes rows the first bulk load leaves (2 statements)',
    value: fmt(firstLoadLogRows),
    limit: '≤ 2',
    pass: firstLoadLogRows <= 2,
  });
  return targets;
}

export async function runTriggerCost(opts: {
  adminUrl: string;
  database: string;
  customers: number;
  pairs: number;
  source: string;
  keep: boolean;
  log: (s: string) => void;
}): Promise<TriggerCostResult> {
  const { customers, pairs } = opts;
  if (!Number.isInteger(customers) || customers < 10_000) throw new Error('--customers: a whole number of at least 10000');
  if (!Number.isInteger(pairs) || pairs < 3) throw new Error('--pairs: a whole number of at least 3');
  const startedAt = new Date();
  const load = [loadavg()];
  const url = await freshDatabase(opts.adminUrl, opts.database);
  await migrate(url);
  const client = new pg.Client({ connectionString: url, application_name: 'audience-sync-bench' });
  await client.connect();
  try {
    const pgSettings = await settings(client);
    await seedListState(client, customers);
    const rounds: { enabled: Round[]; disabled: Round[] } = { enabled: [], disabled: [] };
    for (let i = 0; i < 2 * pairs; i++) {
      const enabled = i % 2 === 1;
      opts.log(`round ${i + 1} of ${2 * pairs}: triggers ${enabled ? 'enabled' : 'disabled'}`);
      const round = await runRound(client, url, customers, enabled, i === 1);
      (enabled ? rounds.enabled : rounds.disabled).push(round);
      opts.log(`  ${round.ms.map((ms) => ms.map((x) => `${(x / 1000).toFixed(2)} s`).join(' ')).join(', ')}`);
    }
    load.push(loadavg());
    const side = (of: Round[], i: number): Timings => {
      const [ms, cpuMs] = [of.flatMap((r) => r.ms[i]!), of.flatMap((r) => r.cpuMs[i]!)];
      return { ms, cpuMs, medianMs: median(ms), medianCpuMs: median(cpuMs) };
    };
    const writes = WRITES.map((w, i): WriteTiming => {
      const [disabled, enabled] = [side(rounds.disabled, i), side(rounds.enabled, i)];
      const ratio = enabled.medianMs / disabled.medianMs;
      const cpuRatio = enabled.medianCpuMs / disabled.medianCpuMs;
      return { name: w.name(customers), limit: w.limit, disabled, enabled, ratio, cpuRatio, logRows: rounds.enabled.at(-1)!.logRows[i]! };
    });
    const firstLoad = rounds.enabled[0]!.firstLoad!;
    return {
      mode: 'trigger-cost',
      meta: {
        customers,
        pairs,
        source: opts.source,
        ...runMachine(startedAt, load, pgSettings),
      },
      writes,
      firstLoadLogRows: firstLoad.rows,
      firstLoadPruneMs: firstLoad.pruneMs,
      targets: judge(writes, firstLoad.rows),
    };
  } finally {
    await client.end();
    if (opts.keep) opts.log(`kept database ${opts.database}`);
    else await dropDatabase(opts.adminUrl, opts.database);
  }
}

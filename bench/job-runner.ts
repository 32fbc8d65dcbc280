/**
 * The job under test, in a process of its own so that its peak RSS is its own.
 *
 * It is wired exactly as `audience-sync run` is (withApp: config from the
 * environment, pool, logger on stderr, Criteo client) and runs runSync, with
 * one addition: a second Kysely instance over the same pool reports each
 * statement's duration (Kysely's `log` hook), and the process samples its
 * own memory. Both go, one JSON line each, to the file named by
 * BENCH_EVENTS_FILE, written synchronously in chunks of at most 64 kB: a
 * write per statement cost the job's process a tenth of a 500-list run's
 * time, and a chunk is nothing beside its memory.
 *
 * The bench database is set (ALTER DATABASE) to run every session with
 * log_executor_stats and client_min_messages = log: Postgres then sends each
 * statement's backend CPU time (getrusage) back as a notice, recorded here, so
 * that a busy machine shows in wall time but not in the CPU figures. With
 * --explain it also loads auto_explain, whose plans come back as INFO notices.
 *
 * BENCH_IDLE=1 loads, connects, takes a token and stops: the fixed part of the RSS.
 * BENCH_LISTS=ID,ID syncs only those lists (as `resync --list` does): the
 * rate check's two processes each sync a list of their own.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { Kysely, PostgresDialect, type LogEvent } from 'kysely';
import type pg from 'pg';
import { withApp } from '../src/cli/app.js';
import type { Db } from '../src/db/connection.js';
import type { Database } from '../src/db/schema.js';
import { runSync } from '../src/sync/run.js';

const eventsPath = process.env.BENCH_EVENTS_FILE;
if (!eventsPath) throw new Error('job-runner: BENCH_EVENTS_FILE is not set');
const events = openSync(eventsPath, 'a');
const now = () => performance.timeOrigin + performance.now();
let pending = '';
const flush = () => {
  if (pending) writeSync(events, pending);
  pending = '';
};
const emit = (event: Record<string, unknown>) => {
  pending += `${JSON.stringify(event)}\n`;
  if (pending.length >= 64 * 1024) flush();
};
const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim().slice(0, 800);

/** "! 0.123 s user, 0.045 s system, 0.170 s elapsed" from Postgres's ShowUsage. */
function parseUsage(detail: string): { userMs: number; systemMs: number; elapsedMs: number } | undefined {
  const m = /([\d.]+) s user, ([\d.]+) s system, ([\d.]+) s elapsed/.exec(detail);
  if (!m) return undefined;
  return { userMs: Number(m[1]) * 1000, systemMs: Number(m[2]) * 1000, elapsedMs: Number(m[3]) * 1000 };
}

/**
 * Records the notices of every pooled connection. Which statement a notice
 * belongs to: node-postgres keeps the running query on the client (an
 * internal field). A statement whose portal stores its result (INSERT …
 * RETURNING) reports twice, a cursor once per fetch: each report carries the
 * query's identity and the analysis keeps the larger of repeated reports.
 */
function recordNotices(pool: pg.Pool): void {
  const listening = new WeakSet<object>();
  const queryIds = new WeakMap<object, number>();
  let nextQueryId = 1;
  pool.on('acquire', (client) => {
    if (listening.has(client)) return;
    listening.add(client);
    client.on('notice', (n) => {
      if (n.message === 'EXECUTOR STATISTICS') {
        const usage = parseUsage(n.detail ?? '');
        const active = (client as unknown as { _activeQuery?: { text?: string; read?: unknown } })._activeQuery;
        if (!usage || !active) return;
        let qid = queryIds.get(active);
        if (qid === undefined) queryIds.set(active, (qid = nextQueryId++));
        emit({ ev: 'cpu', t: now(), qid, cursor: typeof active.read === 'function', ...usage, sql: oneLine(active.text ?? '') });
      } else if (n.severity === 'INFO' && n.message?.includes('plan:')) {
        emit({ ev: 'explain', t: now(), text: n.message });
      }
    });
  });
}

/** VmHWM from /proc/self/status (Linux), or undefined elsewhere. */
function highWaterKb(): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

const sampleMemory = () => {
  const m = process.memoryUsage();
  emit({ ev: 'rss', t: now(), rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });
};
const sampler = setInterval(sampleMemory, Number(process.env.BENCH_SAMPLE_MS ?? 200));

let exitCode = 0;
try {
  await withApp({ database: true, criteo: true }, async (app) => {
    recordNotices(app.database.pool);
    // Same pool, same settings as the job's own; only the statement log is added. Not destroyed
    // here: withApp ends the pool.
    const db: Db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: app.database.pool }),
      log(event: LogEvent) {
        const end = now();
        emit({
          ev: 'query',
          start: end - event.queryDurationMillis,
          ms: event.queryDurationMillis,
          stream: event.level === 'query' ? event.isStream === true : false,
          error: event.level === 'error',
          sql: oneLine(event.query.sql),
        });
      },
    });
    emit({ ev: 'start', t: now() });
    if (process.env.BENCH_IDLE === '1') {
      await app.client.accessToken();
      emit({ ev: 'end', t: now() });
      return;
    }
    const segmentIds = process.env.BENCH_LISTS ? process.env.BENCH_LISTS.split(',') : undefined;
    const summary = await runSync(
      { db, locks: app.database.locks, client: app.client, config: app.config, log: app.log },
      { trigger: 'bench', ...(segmentIds ? { segmentIds } : {}) },
    );
    emit({ ev: 'end', t: now() });
    sampleMemory();
    emit({ ev: 'summary', summary });
    exitCode = summary.status === 'succeeded' ? 0 : 1;
  });
} catch (error) {
  emit({ ev: 'failed', t: now(), error: error instanceof Error ? error.message : String(error) });
  exitCode = 1;
} finally {
  clearInterval(sampler);
  // The most this process ever held resident, in kilobytes: VmHWM, the high-water mark of this program's
  // own memory. ru_maxrss (kept as rusageKb) also counts the address space the process had before its exec,
  // a fork of the bench process, so it can report the parent's size instead of the job's.
  emit({ ev: 'maxrss', kb: highWaterKb() ?? process.resourceUsage().maxRSS, rusageKb: process.resourceUsage().maxRSS });
  flush();
  closeSync(events);
}
process.exitCode = exitCode;

import { readFileSync } from 'node:fs';

/**
 * Turns one job run's record (bench/job-runner.ts events, and the job's own
 * pino log on stderr) into phases:
 *
 *   plan   wall time from the start of runSync to the last 'list planned'
 *          line: identifier cache, funnels, ledger count, the diff.
 *   send   time with at least one Criteo request in flight (union of the
 *          'criteo call' intervals, token requests excluded).
 *   ledger time with at least one ledger write in flight: the write-ahead
 *          batch row, and the confirmation transaction (BEGIN, list_members,
 *          batch and list-sync updates, COMMIT), as union and as sum.
 *   local  wall time minus the time the job only waited for Criteo (a
 *          request in flight and no statement running): its own work.
 *
 * Statements are grouped by kind (verb and table) with count, total and
 * longest duration, so a slow one is named even if the job's SQL changes.
 */

export interface Interval {
  start: number;
  end: number;
}

/** Total length of the union of intervals. */
export function unionLength(intervals: readonly Interval[]): number {
  return merge(intervals).reduce((sum, i) => sum + (i.end - i.start), 0);
}

export function merge(intervals: readonly Interval[]): Interval[] {
  const sorted = [...intervals].filter((i) => i.end > i.start).sort((a, b) => a.start - b.start);
  const out: Interval[] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last && i.start <= last.end) last.end = Math.max(last.end, i.end);
    else out.push({ ...i });
  }
  return out;
}

/** Length of (a minus b), both as unions. */
export function differenceLength(a: readonly Interval[], b: readonly Interval[]): number {
  const mb = merge(b);
  let total = 0;
  for (const x of merge(a)) {
    let covered = 0;
    for (const y of mb) covered += Math.max(0, Math.min(x.end, y.end) - Math.max(x.start, y.start));
    total += x.end - x.start - covered;
  }
  return total;
}

interface QueryEvent {
  ev: 'query';
  start: number;
  ms: number;
  stream: boolean;
  error: boolean;
  sql: string;
}

interface LogLine {
  time: number;
  msg: string;
  list?: string;
  operation?: string;
  op?: string;
  durationMs?: number;
  waitMs?: number;
  status?: number | string;
  [key: string]: unknown;
}

export interface StatementKind {
  kind: string;
  count: number;
  totalMs: number;
  maxMs: number;
  /** Statements of this kind that ran during the plan phase. */
  planMs: number;
  /** Backend CPU time (user + system), from log_executor_stats. */
  cpuMs: number;
}

export interface RunPhases {
  ok: boolean;
  error: string | null;
  wallMs: number;
  planMs: number;
  /** When each list's plan was done, ms after the start. */
  listPlannedAtMs: Record<string, number>;
  /** Finding the changed rows: the whole read (the snapshot pass) or the change log's keys looked up. */
  sourceReadMs: number;
  /** Per list: 'changes' (from the change log) or 'whole', as its 'list planned' line says. */
  sourceRead: Record<string, string>;
  sendBusyMs: number;
  sendWallMs: number;
  ledgerBusyMs: number;
  ledgerSumMs: number;
  dbBusyMs: number;
  /** Backend CPU time of the plan phase's statements, and of the ledger writes. */
  planCpuMs: number;
  ledgerCpuMs: number;
  localMs: number;
  peakRssMb: number;
  /** Largest RSS sampled in each phase, MB. */
  rssByPhase: { plan: number; send: number };
  jobCalls: Record<string, number>;
  criteoCallMs: { count: number; totalMs: number; maxMs: number; meanMs: number; waitMs: number };
  statements: StatementKind[];
  summary: RunSummaryLike | null;
  explains: string[];
}

export interface ListOutcomeLike {
  segmentId: string;
  action: string;
  status: string;
  toAdd: number;
  toRemove: number;
  added: number;
  removed: number;
  emptied: boolean;
  ledgerBefore: number | null;
  sourceRead?: string;
  funnel: { targetGroupSize: number; missingCustomers: number; withoutEmail: number; invalidEmails: number; uniqueIdentifiers: number } | null;
}

export interface RunSummaryLike {
  status: string;
  lists: ListOutcomeLike[];
}

const LEDGER_TABLES = new Set(['batches', 'list_members', 'list_syncs']);

/** The job's statements we know by shape; anything else is named by verb and tables. */
const KNOWN: [RegExp, string][] = [
  [/GROUP BY c\.audience_segment_id/i, 'SELECT list targets'],
  [/^SELECT count\(\*\)(::bigint)? AS n FROM audience_sync\.list_members/i, 'SELECT ledger count'],
];

/** "INSERT plan_entries", "SELECT customers+customer_identifiers", "begin"… from a statement's text. */
export function statementKind(sqlText: string): string {
  const s = sqlText.trim();
  const created = /^create\s+temp\s+table\s+(?:"?pg_temp"?\.)?"?(\w+)/i.exec(s);
  if (created) return `CREATE ${created[1]}`;
  const verb = /^(with\b.*?\)\s*)?(select|insert|update|delete|begin|commit|rollback)/is.exec(s);
  if (!verb) return s.slice(0, 30);
  const v = (verb[2] ?? '').toUpperCase();
  if (v === 'BEGIN' || v === 'COMMIT' || v === 'ROLLBACK') return v.toLowerCase();
  // A statement that writes is named by its write (a CTE that inserts is an INSERT).
  const write = /\b(insert\s+into|update|delete\s+from)\s+"?audience_sync"?\."?(\w+)/i.exec(s);
  if (write) return `${(write[1] ?? '').split(/\s+/)[0]!.toUpperCase()} ${write[2]}`;
  for (const [pattern, name] of KNOWN) if (pattern.test(s)) return name;
  const tables = [...new Set([...s.matchAll(/audience_sync"?\."?(\w+)/gi)].map((m) => m[1]))].sort();
  return `${v} ${tables.join('+') || '?'}`;
}

function isLedgerWrite(kind: string): boolean {
  if (kind === 'begin' || kind === 'commit') return true;
  const [verb, table] = kind.split(' ');
  return verb !== 'SELECT' && verb !== 'STREAM' && LEDGER_TABLES.has(table ?? '');
}

export function analyseRun(eventsFile: string, stderrFile: string): RunPhases {
  const events = readFileSync(eventsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const logs: LogLine[] = [];
  for (const line of readFileSync(stderrFile, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      /* not a log line */
    }
  }
  const start = Number(events.find((e) => e['ev'] === 'start')?.['t'] ?? NaN);
  const endEvent = events.find((e) => e['ev'] === 'end' || e['ev'] === 'failed');
  const end = Number(endEvent?.['t'] ?? NaN);
  const failed = events.find((e) => e['ev'] === 'failed');
  const summary = (events.find((e) => e['ev'] === 'summary')?.['summary'] ?? null) as RunSummaryLike | null;
  const maxRssKb = Number(events.find((e) => e['ev'] === 'maxrss')?.['kb'] ?? 0);

  const planned = logs.filter((l) => l.msg === 'list planned');
  const planEnd = planned.length > 0 ? Math.max(...planned.map((l) => l.time)) : start;
  const listPlannedAtMs: Record<string, number> = {};
  for (const l of planned) listPlannedAtMs[String(l.list)] = l.time - start;

  const calls = logs.filter((l) => l.msg === 'criteo call' && l.operation !== 'token');
  const callIntervals = calls.map((l) => ({ start: l.time - (l.durationMs ?? 0), end: l.time }));
  const jobCalls: Record<string, number> = {};
  for (const l of logs.filter((x) => x.msg === 'criteo call')) {
    const key = l.operation === 'patch' ? `patch-${l.op}` : String(l.operation);
    jobCalls[key] = (jobCalls[key] ?? 0) + 1;
  }

  const queries = events.filter((e) => e['ev'] === 'query') as unknown as QueryEvent[];
  const kinds = new Map<string, StatementKind>();
  const dbIntervals: Interval[] = [];
  const ledgerIntervals: Interval[] = [];
  let ledgerSum = 0;
  for (const q of queries) {
    const kind = q.stream ? `STREAM ${statementKind(q.sql).split(' ')[1] ?? ''}` : statementKind(q.sql);
    const k = kinds.get(kind) ?? { kind, count: 0, totalMs: 0, maxMs: 0, planMs: 0, cpuMs: 0 };
    k.count++;
    k.totalMs += q.ms;
    k.maxMs = Math.max(k.maxMs, q.ms);
    if (q.start < planEnd) k.planMs += Math.min(q.start + q.ms, planEnd) - q.start;
    kinds.set(kind, k);
    // A cursor stays open while the job sends: it is not database time.
    if (!q.stream) dbIntervals.push({ start: q.start, end: q.start + q.ms });
    if (!q.stream && q.start >= planEnd && isLedgerWrite(kind)) {
      ledgerIntervals.push({ start: q.start, end: q.start + q.ms });
      ledgerSum += q.ms;
    }
  }

  // Per query: a cursor's fetches add up; a statement's repeated reports do not.
  const perQuery = new Map<number, { t: number; cpu: number; sql: string }>();
  for (const c of events.filter((e) => e['ev'] === 'cpu') as unknown as {
    t: number;
    qid: number;
    cursor: boolean;
    userMs: number;
    systemMs: number;
    sql: string;
  }[]) {
    const cpu = c.userMs + c.systemMs;
    const seen = perQuery.get(c.qid);
    if (!seen) perQuery.set(c.qid, { t: c.t, cpu, sql: c.sql });
    else perQuery.set(c.qid, { t: Math.max(seen.t, c.t), cpu: c.cursor ? seen.cpu + cpu : Math.max(seen.cpu, cpu), sql: c.sql });
  }
  let planCpu = 0;
  let ledgerCpu = 0;
  for (const c of perQuery.values()) {
    const kind = statementKind(c.sql);
    const k = kinds.get(kind) ?? kinds.get(`STREAM ${kind.split(' ')[1] ?? ''}`);
    if (k) k.cpuMs += c.cpu;
    if (c.t <= planEnd) planCpu += c.cpu;
    else if (isLedgerWrite(kind)) ledgerCpu += c.cpu;
  }

  const rss = events.filter((e) => e['ev'] === 'rss') as { t: number; rss: number }[];
  const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
  const maxIn = (from: number, to: number) => mb(Math.max(0, ...rss.filter((r) => r.t >= from && r.t <= to).map((r) => r.rss)));
  const waitOnly = differenceLength(callIntervals, dbIntervals);
  const callMs = calls.map((l) => l.durationMs ?? 0);
  const firstCall = callIntervals.length ? Math.min(...callIntervals.map((i) => i.start)) : planEnd;

  return {
    ok: !failed && summary?.status === 'succeeded',
    error: failed ? String(failed['error']) : summary && summary.status !== 'succeeded' ? `run ${summary.status}` : null,
    wallMs: end - start,
    planMs: planEnd - start,
    listPlannedAtMs,
    sourceReadMs: ['CREATE target_changes', 'CREATE logged_changes', 'CREATE logged_keys'].reduce((a, k) => a + (kinds.get(k)?.totalMs ?? 0), 0),
    sourceRead: Object.fromEntries(planned.map((l) => [String(l.list), String(l.sourceRead)])),
    sendBusyMs: unionLength(callIntervals),
    sendWallMs: end - Math.min(planEnd, firstCall),
    ledgerBusyMs: unionLength(ledgerIntervals),
    ledgerSumMs: ledgerSum,
    dbBusyMs: unionLength(dbIntervals),
    planCpuMs: planCpu,
    ledgerCpuMs: ledgerCpu,
    localMs: end - start - waitOnly,
    peakRssMb: Math.round((maxRssKb / 1024) * 10) / 10,
    rssByPhase: { plan: maxIn(start, planEnd), send: maxIn(planEnd, end) },
    jobCalls,
    criteoCallMs: {
      count: callMs.length,
      totalMs: callMs.reduce((a, b) => a + b, 0),
      maxMs: Math.max(0, ...callMs),
      meanMs: callMs.length ? callMs.reduce((a, b) => a + b, 0) / callMs.length : 0,
      waitMs: calls.reduce((a, l) => a + (l.waitMs ?? 0), 0),
    },
    statements: [...kinds.values()].sort((a, b) => b.totalMs - a.totalMs),
    summary,
    explains: events.filter((e) => e['ev'] === 'explain').map((e) => String(e['text'])),
  };
}

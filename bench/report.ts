import type { RunMachine } from './database.js';
import type { ChurnShape } from './generate.js';
import type { RunPhases } from './phases.js';
import type { RateResult } from './rate-check.js';
import type { ReferenceTiming } from './references.js';
import type { TriggerCostResult } from './trigger-cost.js';

/** The JSON a sync bench writes, and the table it prints. */

export interface ApiCalls {
  observed: Record<string, number>;
  minimum: Record<string, number>;
  observedTotal: number;
  minimumTotal: number;
  exact: boolean;
  identifiersSent: number;
  /** Identifiers PATCHed to the big list (the send rate's numerator). */
  bigListIdentifiers: number;
  /** First PATCH arrival to last PATCH answer of the big list, at the sandbox. */
  patchSpanMs: number;
  /** Sum of the sandbox's own time answering the big list's PATCHes (arrival to answer). */
  sandboxBusyMs: number;
}

export interface Target {
  name: string;
  value: string;
  limit: string;
  /** null: not applicable at this size, or needs another run. */
  pass: boolean | null;
}

export interface BenchResult {
  mode: 'sync';
  meta: {
    customers: number;
    churn: number;
    /** The share of customers whose address is beyond ASCII. */
    international?: number;
    explain: boolean;
    /** Digest of src/ and migrations/ at the time of the run. */
    source: string;
    jobFrom: string;
    /** The job process's NODE_OPTIONS and MALLOC_MMAP_THRESHOLD_ (empty: unset); absent in older results. */
    jobEnv?: { nodeOptions: string; mallocMmapThreshold: string };
  } & RunMachine;
  data: {
    generateMs: number;
    vacuumMs: number;
    churnMs: number;
    dayVacuumMs: number;
    churnShape: ChurnShape;
    tableSizesMb: Record<string, number>;
    funnel: unknown;
  };
  /** Peak RSS of the job process loaded, connected and holding a token, doing nothing. */
  idleRssMb: number;
  initial: RunPhases & { apiCalls: ApiCalls };
  daily: RunPhases & { apiCalls: ApiCalls };
  /** A second day's sync, due for the weekly safety net: the log's changes, then the whole target group checked (absent in older results). */
  checkedDay?: RunPhases & { apiCalls: ApiCalls };
  /** A third day's sync reading the whole target group, as for a view (SOURCE_WHOLE_READ_DAYS=0). */
  wholeDay: RunPhases & { apiCalls: ApiCalls };
  references: { floor: ReferenceTiming; floorSerial: ReferenceTiming; naive: ReferenceTiming };
  sandbox: { ceiling: { identifiersPerSecond: number; callsPerSecond: number; meanCallMs: number; wallMs: number; rounds?: number[] }; peakRssMb: number };
  checks: Record<string, number | boolean>;
  targets: Target[];
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const x = (r: number) => `${r.toFixed(2)}×`;

/** Identifiers per second the job sent while its PATCHes ran, over what the sandbox alone takes. */
export function sendEfficiency(r: BenchResult): number {
  const c = r.initial.apiCalls;
  const jobRate = c.patchSpanMs > 0 ? (c.bigListIdentifiers / c.patchSpanMs) * 1000 : NaN;
  return jobRate / r.sandbox.ceiling.identifiersPerSecond;
}

export function judge(r: BenchResult, other: BenchResult | undefined): Target[] {
  const { floor, naive } = r.references;
  const big = r.meta.customers >= 10_000_000;
  const peak = Math.max(r.initial.peakRssMb, r.daily.peakRssMb);
  const targets: Target[] = [
    { name: 'daily plan ≤ 0.5 × naive', value: x(r.daily.planMs / naive.ms), limit: '0.50×', pass: r.daily.planMs <= 0.5 * naive.ms },
    { name: 'daily plan ≤ 3 × floor', value: x(r.daily.planMs / floor.ms), limit: '3.00×', pass: r.daily.planMs <= 3 * floor.ms },
    {
      name: 'daily plan CPU / naive CPU (contention-free view)',
      value: naive.parallel ? 'naive ran parallel: n/a' : x(r.daily.planCpuMs / naive.cpuMs),
      limit: '0.50×',
      pass: null,
    },
    {
      name: 'daily plan CPU / serial floor CPU (contention-free view)',
      value: x(r.daily.planCpuMs / r.references.floorSerial.cpuMs),
      limit: '3.00×',
      pass: null,
    },
    ...(r.checkedDay
      ? [
          {
            name: 'weekly check day (SOURCE_WHOLE_READ_DAYS due): plan ≤ 2 × floor',
            value: x(r.checkedDay.planMs / floor.ms),
            limit: '2.00×',
            pass: r.checkedDay.planMs <= 2 * floor.ms,
          },
        ]
      : []),
    {
      name: 'whole-read day (a view, --full, SOURCE_WHOLE_READ_DAYS=0): plan ≤ 2 × floor',
      value: x(r.wholeDay.planMs / floor.ms),
      limit: '2.00×',
      pass: r.wholeDay.planMs <= 2 * floor.ms,
    },
    { name: 'initial sync: local work ≤ 1.0 × naive', value: x(r.initial.localMs / naive.ms), limit: '1.00×', pass: r.initial.localMs <= naive.ms },
    { name: 'whole-read day: plan / naive (reported)', value: x(r.wholeDay.planMs / naive.ms), limit: '–', pass: null },
    { name: 'initial plan / naive (reported)', value: x(r.initial.planMs / naive.ms), limit: '–', pass: null },
    { name: 'initial plan / floor (reported)', value: x(r.initial.planMs / floor.ms), limit: '–', pass: null },
    { name: 'job peak RSS ≤ 256 MB (at 10M)', value: `${peak} MB`, limit: '256 MB', pass: big ? peak <= 256 : peak <= 256 ? true : null },
  ];
  if (!other) {
    targets.push({ name: 'peak RSS at 10M ≤ 1.3 × at 1M', value: 'needs a 1M and a 10M run of the same job source', limit: '1.30×', pass: null });
  } else {
    const [small, large] = other.meta.customers < r.meta.customers ? [other, r] : [r, other];
    const a = Math.max(small.initial.peakRssMb, small.daily.peakRssMb);
    const b = Math.max(large.initial.peakRssMb, large.daily.peakRssMb);
    targets.push({
      name: `peak RSS at ${large.meta.customers / 1e6}M ≤ 1.3 × at ${small.meta.customers / 1e6}M`,
      value: `${x(b / a)} (${b} / ${a} MB, other run ${other.meta.startedAt})`,
      limit: '1.30×',
      pass: b / a <= 1.3,
    });
  }
  targets.push(
    {
      name: 'API calls = minimum (initial)',
      value: `${r.initial.apiCalls.observedTotal} / ${r.initial.apiCalls.minimumTotal}`,
      limit: 'equal',
      pass: r.initial.apiCalls.exact,
    },
    {
      name: 'API calls = minimum (daily)',
      value: `${r.daily.apiCalls.observedTotal} / ${r.daily.apiCalls.minimumTotal}`,
      limit: 'equal',
      pass: r.daily.apiCalls.exact,
    },
    {
      name: 'unlimited send: job throughput / sandbox ceiling (initial)',
      value: `${(sendEfficiency(r) * 100).toFixed(0)} %`,
      limit: '≥ 80 %',
      pass: sendEfficiency(r) >= 0.8,
    },
    {
      name: 'daily sync local work < 30 s (at 10M)',
      value: s(r.daily.localMs),
      limit: '30 s',
      pass: big ? r.daily.localMs < 30_000 : r.daily.localMs < 30_000 ? true : null,
    },
    {
      name: 'converged (ledger = sandbox = naive desired; diff = naive diff)',
      value: String(r.checks['converged']),
      limit: 'true',
      pass: r.checks['converged'] === true,
    },
    ...(r.checkedDay
      ? [
          {
            name: 'converged after the weekly check day (ledger = sandbox)',
            value: String(r.checks['checkedDayConverged']),
            limit: 'true',
            pass: r.checks['checkedDayConverged'] === true,
          },
        ]
      : []),
    {
      name: 'converged after the whole-read day (ledger = sandbox)',
      value: String(r.checks['wholeDayConverged']),
      limit: 'true',
      pass: r.checks['wholeDayConverged'] === true,
    },
  );
  return targets;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

function runRows(r: BenchResult): string[][] {
  const rows: string[][] = [['', 'initial', 'daily', 'daily, checked', 'daily, read whole']];
  const both = (label: string, f: (p: BenchResult['initial']) => string) =>
    rows.push([label, f(r.initial), f(r.daily), r.checkedDay ? f(r.checkedDay) : '–', r.wholeDay ? f(r.wholeDay) : '–']);
  both('wall', (p) => s(p.wallMs));
  both('plan (start → last list planned)', (p) => s(p.planMs));
  both("  its statements' backend CPU", (p) => s(p.planCpuMs));
  both('  of which finding the changed rows', (p) => `${s(p.sourceReadMs)} (${Object.values(p.sourceRead).join(', ') || '–'})`);
  both('send: a Criteo call in flight', (p) => s(p.sendBusyMs));
  both('ledger writes (union / sum / CPU)', (p) => `${s(p.ledgerBusyMs)} / ${s(p.ledgerSumMs)} / ${s(p.ledgerCpuMs)}`);
  both('local work (wall − waiting on Criteo only)', (p) => s(p.localMs));
  both('adds / removes (big list)', (p) => {
    const l = p.summary?.lists.find((x) => x.segmentId === '1001');
    return `${l?.toAdd ?? '?'} / ${l?.toRemove ?? '?'}`;
  });
  both('API calls observed / minimum', (p) => `${p.apiCalls.observedTotal} / ${p.apiCalls.minimumTotal}`);
  both('identifiers sent', (p) => String(p.apiCalls.identifiersSent));
  both(`peak RSS (plan / send phase samples; idle ${r.idleRssMb})`, (p) => `${p.peakRssMb} MB (${p.rssByPhase.plan} / ${p.rssByPhase.send})`);
  return rows;
}

function statementRows(r: BenchResult): string[][] {
  const rows: string[][] = [['statement kind', 'initial n', 'initial total', 'initial CPU', 'initial max', 'daily n', 'daily total', 'daily CPU', 'daily max']];
  const kinds = new Set([...r.initial.statements, ...r.daily.statements].filter((k) => k.totalMs >= 50).map((k) => k.kind));
  for (const kind of kinds) {
    const a = r.initial.statements.find((k) => k.kind === kind);
    const b = r.daily.statements.find((k) => k.kind === kind);
    rows.push([
      kind,
      String(a?.count ?? 0),
      s(a?.totalMs ?? 0),
      s(a?.cpuMs ?? 0),
      s(a?.maxMs ?? 0),
      String(b?.count ?? 0),
      s(b?.totalMs ?? 0),
      s(b?.cpuMs ?? 0),
      s(b?.maxMs ?? 0),
    ]);
  }
  return rows;
}

function targetRows(targets: readonly Target[]): string[][] {
  return [['target', 'value', 'limit', 'pass'], ...targets.map((t) => [t.name, t.value, t.limit, t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'FAIL'])];
}

/** The trigger-cost mode: per write, the medians with the triggers disabled and enabled, their ratio and the log rows it left. */
function formatTriggerCost(r: TriggerCostResult): string {
  const m = r.meta;
  // Milliseconds under a second: a write of 1 % takes a tenth of one at a million rows.
  const t = (ms: number) => (ms < 1000 ? `${ms.toFixed(0)} ms` : s(ms));
  const range = (xs: readonly number[]) => `${t(Math.min(...xs))} – ${t(Math.max(...xs))}`;
  return [
    `trigger cost: ${m.customers.toLocaleString('en')} customers, ${m.pairs} pairs of rounds (disabled, enabled, …), ${m.cpus} × ${m.cpuModel}, Postgres ${m.postgres['server_version']}, source ${m.source}`,
    '',
    table([
      ['write', 'disabled', 'enabled', 'ratio', 'CPU: disabled', 'enabled', 'ratio', 'log rows', 'range disabled / enabled'],
      ...r.writes.map((w) => [
        w.name,
        t(w.disabled.medianMs),
        t(w.enabled.medianMs),
        x(w.ratio),
        t(w.disabled.medianCpuMs),
        t(w.enabled.medianCpuMs),
        x(w.cpuRatio),
        w.logRows.toLocaleString('en'),
        `${range(w.disabled.ms)} / ${range(w.enabled.ms)}`,
      ]),
    ]),
    "(medians of every round's times, a write of 1 % three times a round; CPU: the backend's, the contention-free view)",
    '',
    `first bulk load into empty tables: ${r.firstLoadLogRows.toLocaleString('en')} source_changes rows, pruned in ${s(r.firstLoadPruneMs)}`,
    '',
    table(targetRows(r.targets)),
    `load average (1/5/15 min) at start, end: ${m.loadavg.map((l) => l.join('/')).join('; ')}`,
  ].join('\n');
}

export function formatReport(r: BenchResult | RateResult | TriggerCostResult): string {
  if (r.mode === 'trigger-cost') return formatTriggerCost(r);
  if (r.mode === 'rate') {
    return [
      `rate check: ${r.calls} calls over ${s(r.busyMs)} from ${r.meta.processes} process(es) (${r.callsPerProcess.join(' + ')} on their lists), job limit ${r.meta.jobLimit}/min, sandbox ${r.meta.sandboxLimit}/min, batch ${r.meta.batchSize}`,
      `calls per 60 s window while queued: min ${r.perWindow.min}, max ${r.perWindow.max}, mean ${r.perWindow.mean.toFixed(1)} over ${r.perWindow.windows} windows (the fewest in the one from ${s(r.perWindow.minAtMs)}); in the last minute, with fewer than ${r.meta.jobLimit} calls left, min ${r.perWindow.lastMinute.min} over ${r.perWindow.lastMinute.windows} windows`,
      `calls per minute from the first call: ${r.perMinuteBuckets.join(', ')}`,
      `429 answers: ${r.rejected429}`,
      '',
      table(targetRows(r.targets)),
    ].join('\n');
  }
  const m = r.meta;
  return [
    `audience-sync bench: ${m.customers.toLocaleString('en')} customers, churn ${m.churn}, ${m.cpus} × ${m.cpuModel}, Postgres ${m.postgres['server_version']}, job ${m.jobFrom}, source ${m.source}${m.explain ? ' (auto_explain on: timings inflated)' : ''}`,
    `data: generated in ${s(r.data.generateMs)} (+ VACUUM ANALYZE ${s(r.data.vacuumMs)}); churn ${s(r.data.churnMs)}: ${r.data.churnShape.leave} leave, ${r.data.churnShape.join} join, ${r.data.churnShape.emailChanges} change email`,
    `references on the daily state: floor ${s(r.references.floor.ms)}${r.references.floor.parallel ? ' (parallel)' : ''}, serial ${s(r.references.floorSerial.ms)} (CPU ${s(r.references.floorSerial.cpuMs)}); naive ${s(r.references.naive.ms)}${r.references.naive.parallel ? ' (parallel)' : ` (CPU ${s(r.references.naive.cpuMs)})`} (adds ${r.references.naive.rows['adds']}, removes ${r.references.naive.rows['removes']}, desired ${r.references.naive.rows['desired']})`,
    `sandbox alone: ${Math.round(r.sandbox.ceiling.identifiersPerSecond).toLocaleString('en')} identifiers/s (${r.sandbox.ceiling.meanCallMs.toFixed(0)} ms per PATCH of the job's batch sizes at concurrency 4${r.sandbox.ceiling.rounds ? `; median of ${r.sandbox.ceiling.rounds.map((x) => x.toLocaleString('en')).join(', ')}` : ''}); its peak RSS ${r.sandbox.peakRssMb} MB`,
    '',
    table(runRows(r)),
    '',
    table(statementRows(r)),
    '',
    table(targetRows(r.targets)),
    `load average (1/5/15 min) at start, after initial, after references, after daily, end: ${m.loadavg.map((l) => l.join('/')).join('; ')}`,
  ].join('\n');
}

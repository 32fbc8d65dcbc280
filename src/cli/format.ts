import type { CoverageRow } from '../report/build.js';
import type { RunDetail, RunRow } from '../report/history.js';
import type { Check } from '../sync/preflight.js';
import type { PlanSummary, RunSummary } from '../sync/run.js';

/** Plain-text tables for the terminal. */

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

const n = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toLocaleString('en-US'));
const pct = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${(v * 100).toFixed(1)}%`);

export function formatRunSummary(s: RunSummary): string {
  const head = `run ${s.runId} (${s.trigger}) ${s.status} in ${(s.durationMs / 1000).toFixed(1)}s${s.error ? `: ${s.error}` : ''}`;
  const rows = s.lists.map((l) => [
    l.segmentId,
    l.action,
    l.status,
    n(l.funnel?.targetGroupSize),
    n(l.funnel?.uniqueIdentifiers),
    n(l.toAdd),
    n(l.added),
    n(l.toRemove),
    n(l.removed),
    l.emptied ? 'yes' : l.heldRemovals > 0 ? `held ${n(l.heldRemovals)}` : '',
    l.reason ?? '',
  ]);
  return `${head}\n${table(['list', 'action', 'status', 'target group', 'identifiers', 'to add', 'added', 'to remove', 'removed', 'emptied/held', 'note'], rows)}`;
}

export function formatCoverage(rows: CoverageRow[]): string {
  return table(
    ['list', 'campaigns', 'target group', 'valid emails', 'identifiers', 'synced', 'in Criteo', 'matched', 'match rate', 'coverage', 'last run'],
    rows.map((r) => [
      r.segmentId,
      r.campaignIds.join(','),
      n(r.targetGroupSize),
      n(r.validEmails),
      n(r.uniqueIdentifiers),
      n(r.synced),
      n(r.criteoIdentifiers),
      n(r.matched),
      pct(r.matchRate),
      pct(r.coverage),
      `${r.lastRunId} ${r.lastStatus}`,
    ]),
  );
}

export function formatPlan(p: PlanSummary): string {
  const rows = p.lists.map((l) => [
    l.segmentId,
    l.action,
    l.activeCampaignIds.join(',') || '-',
    n(l.funnel?.uniqueIdentifiers),
    n(l.ledgerBefore),
    n(l.toAdd),
    n(l.toRemove),
    l.heldRemovals > 0 ? `HELD ${n(l.heldRemovals)}` : '',
    l.note ?? '',
  ]);
  return `plan as of ${p.asOf}\n${table(['list', 'action', 'active campaigns', 'desired', 'ledger', 'adds', 'removes', 'held', 'note'], rows)}`;
}

export function formatChecks(checks: Check[]): string {
  return checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`).join('\n');
}

export function formatRuns(rows: RunRow[]): string {
  return table(
    ['run', 'trigger', 'status', 'started', 'lists', 'not converged', 'added', 'removed', 'error'],
    rows.map((r) => [
      r.runId,
      r.trigger,
      r.status,
      r.startedAt.replace('T', ' ').slice(0, 19),
      r.lists,
      r.listsFailed,
      n(r.added),
      n(r.removed),
      r.error ?? '',
    ]),
  );
}

export function formatRunDetail(d: RunDetail): string {
  const parts = [`run ${d.run.runId} (${d.run.trigger}) ${d.run.status}, started ${d.run.startedAt}${d.run.error ? `: ${d.run.error}` : ''}`];
  for (const l of d.lists) {
    parts.push(
      `\nlist ${l.segmentId} ${l.action} ${l.status}: target group ${n(l.targetGroupSize)}, identifiers ${n(l.uniqueIdentifiers)}, ledger before ${n(l.ledgerBefore)}, added ${n(l.added)}/${n(l.toAdd)}, removed ${n(l.removed)}/${n(l.toRemove)}${l.heldRemovals ? `, held ${n(l.heldRemovals)}` : ''}${l.reason ? ` (${l.reason})` : ''}${l.traceId ? ` traceId ${l.traceId}` : ''}`,
    );
    if (l.batches.length > 0) {
      parts.push(
        table(
          ['batch', 'operation', 'size', 'status', 'http', 'valid', 'invalid', 'attempts', 'waited ms', 'ms', 'error', 'traceId'],
          l.batches.map((b) => [
            b.seq,
            b.operation,
            n(b.size),
            b.status,
            b.httpStatus ?? '-',
            n(b.nbValid),
            n(b.nbInvalid),
            b.attempts,
            b.waitedMs,
            b.durationMs ?? '-',
            b.errorCode ?? '',
            b.traceId ?? '',
          ]),
        ),
      );
    }
  }
  return parts.join('\n');
}

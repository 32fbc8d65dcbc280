import type { CoverageRow } from './report.js';
import type { RunSummary } from './sync.js';

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
    l.emptied ? 'yes' : '',
    l.reason ?? '',
  ]);
  return `${head}\n${table(['list', 'action', 'status', 'target group', 'identifiers', 'to add', 'added', 'to remove', 'removed', 'emptied', 'note'], rows)}`;
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

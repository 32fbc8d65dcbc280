import { formatCount, formatPercent, textTable } from '../core/format.js';
import type { RunDetail, RunRow } from '../report/history.js';
import type { CoverageRow } from '../report/types.js';
import type { Check } from '../sync/preflight.js';
import type { PlanSummary, RunSummary } from '../sync/run.js';

/** What the commands print on the terminal: plain-text tables, one function per command. */

export function formatRunSummary(s: RunSummary): string {
  const head = `run ${s.runId} (${s.trigger}) ${s.status} in ${(s.durationMs / 1000).toFixed(1)}s${s.error ? `: ${s.error}` : ''}`;
  const rows = s.lists.map((l) => [
    l.segmentId,
    l.action,
    l.status,
    formatCount(l.funnel?.targetGroupSize),
    formatCount(l.funnel?.uniqueIdentifiers),
    formatCount(l.toAdd),
    formatCount(l.added),
    formatCount(l.toRemove),
    formatCount(l.removed),
    l.emptied ? 'yes' : l.heldRemovals > 0 ? `held ${formatCount(l.heldRemovals)}` : '',
    l.reason ?? '',
  ]);
  return `${head}\n${textTable(['list', 'action', 'status', 'target group', 'identifiers', 'to add', 'added', 'to remove', 'removed', 'emptied/held', 'note'], rows)}`;
}

export function formatCoverage(rows: CoverageRow[]): string {
  return textTable(
    ['list', 'campaigns', 'target group', 'valid emails', 'identifiers', 'synced', 'in Criteo', 'matched', 'match rate', 'coverage', 'last run'],
    rows.map((r) => [
      r.segmentId,
      r.campaignIds.join(','),
      formatCount(r.targetGroupSize),
      formatCount(r.validEmails),
      formatCount(r.uniqueIdentifiers),
      formatCount(r.synced),
      formatCount(r.criteoIdentifiers),
      formatCount(r.matched),
      formatPercent(r.matchRate),
      formatPercent(r.coverage),
      `${r.lastRunId} ${r.lastStatus}`,
    ]),
  );
}

export function formatPlan(p: PlanSummary): string {
  const rows = p.lists.map((l) => [
    l.segmentId,
    l.action,
    l.activeCampaignIds.join(',') || '-',
    formatCount(l.funnel?.uniqueIdentifiers),
    formatCount(l.ledgerBefore),
    formatCount(l.toAdd),
    formatCount(l.toRemove),
    l.heldRemovals > 0 ? `HELD ${formatCount(l.heldRemovals)}` : '',
    l.note ?? '',
  ]);
  return `plan as of ${p.asOf}\n${textTable(['list', 'action', 'active campaigns', 'desired', 'ledger', 'adds', 'removes', 'held', 'note'], rows)}`;
}

export function formatChecks(checks: Check[]): string {
  return checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`).join('\n');
}

export function formatRuns(rows: RunRow[]): string {
  return textTable(
    ['run', 'trigger', 'status', 'started', 'lists', 'not converged', 'added', 'removed', 'error'],
    rows.map((r) => [
      r.runId,
      r.trigger,
      r.status,
      r.startedAt.replace('T', ' ').slice(0, 19),
      r.lists,
      r.listsFailed,
      formatCount(r.added),
      formatCount(r.removed),
      r.error ?? '',
    ]),
  );
}

export function formatRunDetail(d: RunDetail): string {
  const parts = [`run ${d.run.runId} (${d.run.trigger}) ${d.run.status}, started ${d.run.startedAt}${d.run.error ? `: ${d.run.error}` : ''}`];
  for (const l of d.lists) {
    parts.push(
      `\nlist ${l.segmentId} ${l.action} ${l.status}: target group ${formatCount(l.targetGroupSize)}, identifiers ${formatCount(l.uniqueIdentifiers)}, ledger before ${formatCount(l.ledgerBefore)}, added ${formatCount(l.added)}/${formatCount(l.toAdd)}, removed ${formatCount(l.removed)}/${formatCount(l.toRemove)}${l.heldRemovals ? `, held ${formatCount(l.heldRemovals)}` : ''}${l.reason ? ` (${l.reason})` : ''}${l.traceId ? ` traceId ${l.traceId}` : ''}`,
    );
    if (l.batches.length > 0) {
      parts.push(
        textTable(
          ['batch', 'operation', 'size', 'status', 'http', 'valid', 'invalid', 'attempts', 'waited ms', 'ms', 'error', 'traceId'],
          l.batches.map((b) => [
            b.seq,
            b.operation,
            formatCount(b.size),
            b.status,
            b.httpStatus ?? '-',
            formatCount(b.nbValid),
            formatCount(b.nbInvalid),
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

import { formatCount, formatPercent, textTable } from '../core/format.js';
import type { RunDetail, RunRow } from '../report/history.js';
import type { CoverageRow } from '../report/types.js';
import type { Check } from '../sync/preflight.js';
import type { ListBinding, PlanSummary, RunSummary } from '../sync/types.js';

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
    [l.reason, l.newlyValidEmails ? `${formatCount(l.newlyValidEmails)} newly valid emails (email rule)` : null].filter(Boolean).join('; '),
  ]);
  const table = textTable(['list', 'action', 'status', 'target group', 'identifiers', 'to add', 'added', 'to remove', 'removed', 'emptied/held', 'note'], rows);
  return [head, ...formatBindings(s.bindings), table].join('\n');
}

/** One line per campaign that names its list: the list it was bound to, or why it has none. */
function formatBindings(bindings: readonly ListBinding[]): string[] {
  return bindings.map((b) => {
    const named = `campaign ${b.campaignId} names list ${JSON.stringify(b.name)} of advertiser ${b.advertiserId}`;
    if (b.state === 'failed') return `${named}: not bound: ${b.reason ?? ''}`;
    if (b.state === 'to create') return `${named}: a run would create it`;
    const fresh =
      b.listCreatedAt && Date.now() - Date.parse(b.listCreatedAt) < 24 * 3_600_000 ? ' (created less than 24 hours ago: Criteo may not serve it yet)' : '';
    return `${named}: list ${b.segmentId}, ${b.state}${fresh}`;
  });
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
  return [
    `plan as of ${p.asOf}`,
    ...formatBindings(p.bindings),
    textTable(['list', 'action', 'active campaigns', 'desired', 'ledger', 'adds', 'removes', 'held', 'note'], rows),
  ].join('\n');
}

export function formatChecks(checks: Check[]): string {
  // A warning passes (the exit code stays 0) but asks for action: WARN, not ok.
  return checks.map((c) => `${!c.ok ? 'FAIL' : c.warning ? 'WARN' : 'ok  '}  ${c.name}: ${c.detail}`).join('\n');
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
  for (const b of d.bindings) {
    parts.push(
      `campaign ${b.campaignId} names list ${JSON.stringify(b.name)}: bound to list ${b.segmentId} (${b.created ? 'created' : 'found'} by the job) since ${b.boundAt}`,
    );
  }
  for (const l of d.lists) {
    parts.push(
      `\nlist ${l.segmentId} ${l.action} ${l.status}: target group ${formatCount(l.targetGroupSize)}, identifiers ${formatCount(l.uniqueIdentifiers)}, ledger before ${formatCount(l.ledgerBefore)}, added ${formatCount(l.added)}/${formatCount(l.toAdd)}, removed ${formatCount(l.removed)}/${formatCount(l.toRemove)}${l.heldRemovals ? `, held ${formatCount(l.heldRemovals)}` : ''}${l.newlyValidEmails ? `, newly valid emails ${formatCount(l.newlyValidEmails)} (email rule)` : ''}${l.reason ? ` (${l.reason})` : ''}${l.traceId ? ` traceId ${l.traceId}` : ''}`,
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

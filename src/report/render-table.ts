import { formatCount, formatPercent, formatUtc, textTable, utcMinute } from '../core/format.js';
import type { CoverageReport, LatestFunnel, ListReport } from './types.js';

/** The report for a terminal: warnings first, then per list its funnel, its campaigns and its runs. */

/** `v` as a share of `base`; empty when either is not known. */
const of = (v: number | null | undefined, base: number | null | undefined) => (v === null || v === undefined || !base ? '' : formatPercent(v / base));

export function formatReportTable(report: CoverageReport): string {
  const parts = [
    `Match coverage: runs since ${formatUtc(report.since)}, as of ${formatUtc(report.generatedAt)}${report.filter.campaignId ? `, campaign ${report.filter.campaignId}` : ''}${report.filter.segmentId ? `, list ${report.filter.segmentId}` : ''}`,
    "Criteo's counts are approximate and lag up to about a day: each is shown with when it was read.",
  ];
  if (report.warnings.length === 0) parts.push('\nNo warnings.');
  else {
    parts.push(`\nWARNINGS (${report.warnings.length})`);
    for (const w of report.warnings) parts.push(`  ! ${w.code}: ${w.message}\n    what to do: ${w.action}`);
  }
  for (const list of report.lists) parts.push('', formatList(list));
  return parts.join('\n');
}

function formatList(list: ListReport): string {
  const campaigns = list.campaigns.map((c) => `${c.campaignId}${c.active ? '' : ' (ended or not started)'}`).join(', ') || 'none';
  const head = `== List ${list.segmentId} (advertiser ${list.advertiserIds.join(', ') || '-'}), campaigns: ${campaigns}`;
  if (!list.latest) return `${head}\nno finished sync in range`;
  return [head, formatFunnel(list.latest), formatCampaigns(list.latest), formatRuns(list)].filter(Boolean).join('\n\n');
}

function formatFunnel(l: LatestFunnel): string {
  const f = l.funnel;
  const base = f?.targetGroup;
  const read = l.criteo ? `Criteo, read ${formatUtc(l.criteo.readAt)} (run ${l.criteo.runId})` : 'Criteo: not read yet';
  const rows: string[][] = [
    ['target-group customers', formatCount(f?.targetGroup), of(f?.targetGroup, base), `run ${l.runId}`],
    ['  with an email', formatCount(f?.withEmail), of(f?.withEmail, base), ''],
    ['  with a valid email', formatCount(f?.validEmail), of(f?.validEmail, base), ''],
    ['  unique identifiers', formatCount(f?.uniqueIdentifiers), of(f?.uniqueIdentifiers, base), 'one per distinct email'],
    ['  synced (our ledger)', formatCount(l.synced), of(l.synced, base), 'confirmed by Criteo'],
    ['  identifiers in Criteo', formatCount(l.criteo?.identifiers), of(l.criteo?.identifiers, base), read],
    ['  matched by Criteo', formatCount(l.criteo?.matched), of(l.criteo?.matched, base), read],
  ];
  const status = `latest sync: run ${l.runId} ${l.action} ${l.status}, finished ${formatUtc(l.finishedAt)}${f ? '' : ' (no campaign active: nothing planned)'}`;
  return [
    status,
    textTable(['funnel', 'count', '% of target group', 'source'], rows),
    `match rate (matched ÷ identifiers in Criteo): ${formatPercent(l.matchRate)}    coverage (matched ÷ target-group customers): ${formatPercent(l.coverage)}`,
  ].join('\n');
}

function formatCampaigns(l: LatestFunnel): string {
  if (l.campaigns.length === 0) return '';
  return [
    "per campaign (its own funnel; synced, Criteo and rates are the whole list's, above)",
    textTable(
      ['campaign', 'target-group customers', 'with an email', 'with a valid email', 'unique identifiers'],
      l.campaigns.map((c) => [
        c.campaignId,
        formatCount(c.funnel.targetGroup),
        formatCount(c.funnel.withEmail),
        formatCount(c.funnel.validEmail),
        formatCount(c.funnel.uniqueIdentifiers),
      ]),
    ),
  ].join('\n');
}

function formatRuns(list: ListReport): string {
  return [
    'runs (oldest first; Criteo columns empty when the run changed nothing and did not read them)',
    textTable(
      [
        'run',
        'started (UTC)',
        'status',
        'target group',
        'identifiers',
        'added',
        'removed',
        'synced',
        'in Criteo',
        'matched',
        'match rate',
        'coverage',
        'Criteo read (UTC)',
        'rejected by Criteo',
      ],
      list.runs.map((r) => [
        r.runId,
        utcMinute(r.runStartedAt),
        `${r.action === 'empty' ? 'empty ' : ''}${r.status}`,
        formatCount(r.funnel?.targetGroup),
        formatCount(r.funnel?.uniqueIdentifiers),
        formatCount(r.added),
        formatCount(r.removed),
        formatCount(r.synced),
        formatCount(r.criteo?.identifiers),
        formatCount(r.criteo?.matched),
        formatPercent(r.matchRate),
        formatPercent(r.coverage),
        r.criteo ? utcMinute(r.criteo.readAt) : '-',
        r.batches.length ? `${formatCount(r.criteoInvalid)} of ${formatCount(r.criteoInvalid + r.criteoValid)}` : '-',
      ]),
    ),
  ].join('\n');
}

import { table } from '../cli/format.js';
import type { CoverageReport, LatestFunnel, ListReport } from './build.js';
import { stamp } from './warnings.js';

/** The report for a terminal: warnings first, then per list its funnel, its campaigns and its runs. */

const n = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toLocaleString('en-US'));
const pct = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${(v * 100).toFixed(1)}%`);
const of = (v: number | null | undefined, base: number | null | undefined) => (v === null || v === undefined || !base ? '' : pct(v / base));
const when = (iso: string | null | undefined) => (iso ? stamp(iso) : '-');

export function formatReportTable(report: CoverageReport): string {
  const parts = [
    `Match coverage: runs since ${when(report.since)}, as of ${when(report.generatedAt)}${report.filter.campaignId ? `, campaign ${report.filter.campaignId}` : ''}${report.filter.segmentId ? `, list ${report.filter.segmentId}` : ''}`,
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
  const read = l.criteo ? `Criteo, read ${when(l.criteo.readAt)} (run ${l.criteo.runId})` : 'Criteo: not read yet';
  const rows: string[][] = [
    ['target-group customers', n(f?.targetGroup), of(f?.targetGroup, base), `run ${l.runId}`],
    ['  with an email', n(f?.withEmail), of(f?.withEmail, base), ''],
    ['  with a valid email', n(f?.validEmail), of(f?.validEmail, base), ''],
    ['  unique identifiers', n(f?.uniqueIdentifiers), of(f?.uniqueIdentifiers, base), 'one per distinct email'],
    ['  synced (our ledger)', n(l.synced), of(l.synced, base), 'confirmed by Criteo'],
    ['  identifiers in Criteo', n(l.criteo?.identifiers), of(l.criteo?.identifiers, base), read],
    ['  matched by Criteo', n(l.criteo?.matched), of(l.criteo?.matched, base), read],
  ];
  const status = `latest sync: run ${l.runId} ${l.action} ${l.status}, finished ${when(l.finishedAt)}${f ? '' : ' (no campaign active: nothing planned)'}`;
  return [
    status,
    table(['funnel', 'count', '% of target group', 'source'], rows),
    `match rate (matched ÷ identifiers in Criteo): ${pct(l.matchRate)}    coverage (matched ÷ target-group customers): ${pct(l.coverage)}`,
  ].join('\n');
}

function formatCampaigns(l: LatestFunnel): string {
  if (l.campaigns.length === 0) return '';
  return [
    "per campaign (its own funnel; synced, Criteo and rates are the whole list's, above)",
    table(
      ['campaign', 'target-group customers', 'with an email', 'with a valid email', 'unique identifiers'],
      l.campaigns.map((c) => [c.campaignId, n(c.funnel.targetGroup), n(c.funnel.withEmail), n(c.funnel.validEmail), n(c.funnel.uniqueIdentifiers)]),
    ),
  ].join('\n');
}

function formatRuns(list: ListReport): string {
  return [
    'runs (oldest first; Criteo columns empty when the run changed nothing and did not read them)',
    table(
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
        r.runStartedAt.slice(0, 16).replace('T', ' '),
        `${r.action === 'empty' ? 'empty ' : ''}${r.status}`,
        n(r.funnel?.targetGroup),
        n(r.funnel?.uniqueIdentifiers),
        n(r.added),
        n(r.removed),
        n(r.synced),
        n(r.criteo?.identifiers),
        n(r.criteo?.matched),
        pct(r.matchRate),
        pct(r.coverage),
        r.criteo ? r.criteo.readAt.slice(0, 16).replace('T', ' ') : '-',
        r.batches.length ? `${n(r.criteoInvalid)} of ${n(r.criteoInvalid + r.criteoValid)}` : '-',
      ]),
    ),
  ].join('\n');
}

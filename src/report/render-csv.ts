import { stringify } from 'csv-stringify/sync';
import type { CoverageReport, Funnel, ListRun } from './types.js';

/**
 * The report as CSV, for spreadsheets and tools: one row per list per run,
 * then one per campaign of that list sync. The funnel columns are the row's
 * own (list or campaign); the `list_*` and `criteo_*` columns are always the
 * whole list's, since Criteo only knows lists. Rates are fractions (0–1);
 * empty cells mean "not known" (never zero).
 */

export const CSV_COLUMNS = [
  'row_type',
  'segment_id',
  'campaign_id',
  'campaign_name',
  'run_id',
  'run_started_at',
  'list_sync_finished_at',
  'list_sync_status',
  'action',
  'target_group_customers',
  'missing_customers',
  'without_email',
  'with_email',
  'invalid_emails',
  'with_valid_email',
  'unique_identifiers',
  'list_added',
  'list_removed',
  'list_synced_ledger',
  'list_criteo_identifiers',
  'list_criteo_matched',
  'list_match_rate',
  'list_coverage',
  'criteo_read_at',
  'criteo_batches',
  'criteo_valid_identifiers',
  'criteo_invalid_identifiers',
  'criteo_sample_invalid',
] as const;

type Cell = string | number | null;

export function reportToCsv(report: CoverageReport): string {
  const rows: Cell[][] = [];
  for (const list of report.lists) {
    for (const run of list.runs) {
      rows.push(row('list', list.segmentId, null, null, run, run.funnel));
      for (const c of run.campaigns) rows.push(row('campaign', list.segmentId, c.campaignId, c.name, run, c.funnel));
    }
  }
  return stringify(rows, { header: true, columns: [...CSV_COLUMNS], cast: { number: (v) => String(v) } });
}

function row(type: 'list' | 'campaign', segmentId: string, campaignId: string | null, name: string | null, run: ListRun, f: Funnel | null): Cell[] {
  return [
    type,
    segmentId,
    campaignId,
    name,
    run.runId,
    run.runStartedAt,
    run.finishedAt,
    run.status,
    run.action,
    f?.targetGroup ?? null,
    f?.missingCustomers ?? null,
    f?.withoutEmail ?? null,
    f?.withEmail ?? null,
    f?.invalidEmails ?? null,
    f?.validEmail ?? null,
    f?.uniqueIdentifiers ?? null,
    run.added,
    run.removed,
    run.synced,
    run.criteo?.identifiers ?? null,
    run.criteo?.matched ?? null,
    run.matchRate,
    run.coverage,
    run.criteo?.readAt ?? null,
    run.batches.length,
    run.criteoValid,
    run.criteoInvalid,
    [...new Set(run.batches.flatMap((b) => b.sampleInvalid))].join(' | ') || null,
  ];
}

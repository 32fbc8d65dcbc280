import type { Db } from '../db/connection.js';
import { ConfigError } from '../core/errors.js';
import {
  readBatches,
  readCampaignFunnels,
  readLatestStatistics,
  readListSyncs,
  readListsInScope,
  type BatchRow,
  type CampaignFunnelRow,
  type CampaignInfo,
  type ListSyncRow,
  type StatisticsReadingRow,
} from './queries.js';
import { findWarnings, type Warning } from './warnings.js';

/**
 * Match coverage, per list and per campaign, per run: how much of a target
 * group reaches Criteo and matches there, and how that moves run by run.
 *
 *   target-group customers → with an email → with a valid email → unique
 *   identifiers → synced (our ledger) → identifiers in Criteo → matched
 *
 * The first four are ours, counted when the run planned the list. "Synced" is
 * what Criteo confirmed receiving. The last two are Criteo's statistics:
 * approximate, lagging up to a day, and stamped with when they were read.
 * Rates are fractions (0–1): match rate = matched ÷ identifiers in Criteo,
 * coverage = matched ÷ target-group customers. The renderers (table, JSON,
 * CSV, HTML) all print this one structure.
 */

export const REPORT_THRESHOLDS = {
  /** Criteo's count may differ from the ledger by this share before it is drift. */
  driftRatio: 0.1,
  /** Criteo processes an update within about this many hours. */
  settleHours: 24,
  /** An active list without a successful sync for longer is stale. */
  staleHours: 36,
  /** Invalid emails among customers with an email above this share point upstream. */
  invalidEmailShare: 0.2,
} as const;

export const DEFAULT_REPORT_DAYS = 30;

export interface ReportOptions {
  segmentId?: string | undefined;
  campaignId?: string | undefined;
  /** Runs started at or after this instant; default 30 days before `now`. */
  since?: Date | undefined;
  /** The instant the report is judged at (staleness, active campaigns); default now. */
  now?: Date | undefined;
  /** LOW_MATCH_RATE. */
  lowMatchRate: number;
}

/** Our side of the funnel: customers, then identifiers. */
export interface Funnel {
  /** Target-group customers (a customer in two campaigns of a list counts once for the list). */
  targetGroup: number;
  missingCustomers: number;
  withoutEmail: number;
  invalidEmails: number;
  /** Customers with an email: target group − missing customers − without an email. */
  withEmail: number;
  /** Customers with a valid email: with an email − invalid emails. */
  validEmail: number;
  /** Distinct SHA-256 identifiers of the valid emails (customers sharing an email count once). */
  uniqueIdentifiers: number;
}

/** Criteo's statistics of a list, as read once. */
export interface CriteoReading {
  identifiers: number | null;
  matched: number | null;
  readAt: string;
  /** The run that read them. */
  runId: number;
}

export interface BatchAnswer {
  seq: number;
  operation: 'add' | 'remove' | 'delete';
  size: number;
  status: string;
  /** Criteo's nbValidIdentifiers / nbInvalidIdentifiers (null: no answer). */
  nbValid: number | null;
  nbInvalid: number | null;
  /** Criteo's sampleInvalidIdentifiers, masked (maskSample): a prefix and the length of each. */
  sampleInvalid: string[];
}

export interface CampaignFunnel {
  campaignId: string;
  name: string | null;
  funnel: Funnel;
}

/** One list sync: one point of a list's trend. */
export interface ListRun {
  runId: number;
  listSyncId: number;
  trigger: string;
  runStartedAt: string;
  finishedAt: string | null;
  status: string;
  action: 'sync' | 'empty';
  reason: string | null;
  /** Null when nothing was planned (the list was being emptied, or the sync failed first). */
  funnel: Funnel | null;
  campaigns: CampaignFunnel[];
  ledgerBefore: number | null;
  added: number;
  removed: number;
  heldRemovals: number;
  /** Identifiers in the ledger after this list sync (what Criteo confirmed it holds). */
  synced: number;
  /** Criteo's statistics read right after this list sync; null when it changed nothing or the read failed. */
  criteo: CriteoReading | null;
  matchRate: number | null;
  coverage: number | null;
  batches: BatchAnswer[];
  criteoInvalid: number;
  criteoValid: number;
}

/** A list as it stands: the latest list sync's funnel with the latest Criteo reading. */
export interface LatestFunnel {
  runId: number;
  status: string;
  action: 'sync' | 'empty';
  finishedAt: string | null;
  funnel: Funnel | null;
  synced: number;
  criteo: CriteoReading | null;
  matchRate: number | null;
  coverage: number | null;
  /** Per campaign: its own funnel; synced, Criteo and rates are the whole list's. */
  campaigns: CampaignFunnel[];
}

export interface ListReport {
  segmentId: string;
  advertiserIds: string[];
  campaigns: (CampaignInfo & { active: boolean })[];
  /** At least one campaign is in its active period at the report's instant. */
  active: boolean;
  lastSuccessAt: string | null;
  latest: LatestFunnel | null;
  /** Oldest first, the runs in range. */
  runs: ListRun[];
  warnings: Warning[];
}

export interface CoverageReport {
  generatedAt: string;
  since: string;
  filter: { segmentId: string | null; campaignId: string | null };
  thresholds: typeof REPORT_THRESHOLDS & { lowMatchRate: number };
  lists: ListReport[];
  warnings: Warning[];
}

export type { Warning } from './warnings.js';

export async function buildCoverageReport(db: Db, options: ReportOptions): Promise<CoverageReport> {
  const now = options.now ?? new Date();
  const since = options.since ?? new Date(now.getTime() - DEFAULT_REPORT_DAYS * 86_400_000);
  const thresholds = { ...REPORT_THRESHOLDS, lowMatchRate: options.lowMatchRate };
  const scope = await readListsInScope(db, { segmentId: options.segmentId, campaignId: options.campaignId });
  if (options.campaignId && scope.length === 0) throw new ConfigError(`--campaign: no campaign named ${options.campaignId}`);
  if (options.segmentId && scope.length === 0) throw new ConfigError(`--list: no campaign or run knows list ${options.segmentId}`);

  const segmentIds = scope.map((l) => l.segmentId);
  const syncs = await readListSyncs(db, segmentIds, since);
  const ids = syncs.map((s) => s.list_sync_id);
  const [batches, campaignFunnels, readings] = await Promise.all([
    readBatches(db, ids),
    readCampaignFunnels(db, ids),
    readLatestStatistics(db, segmentIds, REPORT_THRESHOLDS.settleHours),
  ]);

  const lists = scope.map((l): ListReport => {
    const campaigns = l.campaigns.map((c) => ({ ...c, active: Date.parse(c.startsAt) <= now.getTime() && now.getTime() < Date.parse(c.measurementEndsAt) }));
    const runs = syncs.filter((s) => s.segment_id === l.segmentId).map((s) => toListRun(s, l.ledgerNow, batches, campaignFunnels, options.campaignId));
    const reading = readings.find((r) => r.segment_id === l.segmentId);
    const report: ListReport = {
      segmentId: l.segmentId,
      advertiserIds: [...new Set(campaigns.map((c) => c.advertiserId))],
      campaigns: options.campaignId ? campaigns.filter((c) => c.campaignId === options.campaignId) : campaigns,
      active: campaigns.some((c) => c.active),
      lastSuccessAt: l.lastSuccessAt?.toISOString() ?? null,
      latest: latestFunnel(runs, reading),
      runs,
      warnings: [],
    };
    report.warnings = findWarnings(report, { now, thresholds, reading, lastAttempt: l.lastAttempt, allCampaigns: campaigns });
    return report;
  });
  return {
    generatedAt: now.toISOString(),
    since: since.toISOString(),
    filter: { segmentId: options.segmentId ?? null, campaignId: options.campaignId ?? null },
    thresholds,
    lists,
    warnings: lists.flatMap((l) => l.warnings),
  };
}

function toListRun(
  s: ListSyncRow,
  ledgerNow: number,
  batches: readonly BatchRow[],
  campaignFunnels: readonly CampaignFunnelRow[],
  onlyCampaign: string | undefined,
): ListRun {
  const funnel =
    s.target_group_size === null
      ? null
      : funnelOf({
          target_group_size: s.target_group_size,
          missing_customers: s.missing_customers ?? 0,
          without_email: s.without_email ?? 0,
          invalid_emails: s.invalid_emails ?? 0,
          unique_identifiers: s.unique_identifiers ?? 0,
        });
  const synced = s.ledger_after ?? ledgerNow;
  const criteo = s.stats_read_at
    ? { identifiers: s.stats_identifiers, matched: s.stats_matches, readAt: s.stats_read_at.toISOString(), runId: s.run_id }
    : null;
  const answers = batches
    .filter((b) => b.list_sync_id === s.list_sync_id)
    .map((b) => ({
      seq: b.seq,
      operation: b.operation,
      size: b.size,
      status: b.status,
      nbValid: b.nb_valid,
      nbInvalid: b.nb_invalid,
      sampleInvalid: (b.sample_invalid ?? []).map(maskSample),
    }));
  return {
    runId: s.run_id,
    listSyncId: s.list_sync_id,
    trigger: s.trigger,
    runStartedAt: s.run_started_at.toISOString(),
    finishedAt: s.finished_at?.toISOString() ?? null,
    status: s.status,
    action: s.action,
    reason: s.reason,
    funnel,
    campaigns: campaignFunnels
      .filter((c) => c.list_sync_id === s.list_sync_id && (!onlyCampaign || c.campaign_id === onlyCampaign))
      .map((c) => ({ campaignId: c.campaign_id, name: c.name, funnel: funnelOf(c) })),
    ledgerBefore: s.ledger_before,
    added: s.added,
    removed: s.removed,
    heldRemovals: s.held_removals,
    synced,
    criteo,
    matchRate: matchRate(criteo),
    coverage: coverage(criteo, funnel),
    batches: answers,
    criteoInvalid: answers.reduce((n, b) => n + (b.nbInvalid ?? 0), 0),
    criteoValid: answers.reduce((n, b) => n + (b.nbValid ?? 0), 0),
  };
}

function funnelOf(r: Pick<CampaignFunnelRow, 'target_group_size' | 'missing_customers' | 'without_email' | 'invalid_emails' | 'unique_identifiers'>): Funnel {
  const withEmail = r.target_group_size - r.missing_customers - r.without_email;
  return {
    targetGroup: r.target_group_size,
    missingCustomers: r.missing_customers,
    withoutEmail: r.without_email,
    invalidEmails: r.invalid_emails,
    withEmail,
    validEmail: withEmail - r.invalid_emails,
    uniqueIdentifiers: r.unique_identifiers,
  };
}

/** The latest list sync in range, with the latest statistics ever read for the list. */
function latestFunnel(runs: readonly ListRun[], reading: StatisticsReadingRow | undefined): LatestFunnel | null {
  const last = runs.at(-1);
  if (!last) return null;
  const criteo = reading
    ? { identifiers: reading.stats_identifiers, matched: reading.stats_matches, readAt: reading.stats_read_at.toISOString(), runId: reading.run_id }
    : null;
  return {
    runId: last.runId,
    status: last.status,
    action: last.action,
    finishedAt: last.finishedAt,
    funnel: last.funnel,
    synced: last.synced,
    criteo,
    matchRate: matchRate(criteo),
    coverage: coverage(criteo, last.funnel),
    campaigns: last.campaigns,
  };
}

/**
 * A report never carries a whole identifier or anything like an email, even
 * from Criteo's sample of what it rejected: a hash prefix tells a double hash
 * or a truncation; the whole value stays in the batches table.
 */
export function maskSample(value: string): string {
  if (value.includes('@')) return `[email-like, ${value.length} chars]`;
  return value.length > 12 ? `${value.slice(0, 12)}…(${value.length})` : value;
}

/** Derived from the two counts: Criteo's own matchRate is 0–1 or 0–100, unconfirmed. */
export function matchRate(c: CriteoReading | null): number | null {
  return c && c.identifiers && c.matched !== null ? c.matched / c.identifiers : null;
}

export function coverage(c: CriteoReading | null, funnel: Funnel | null): number | null {
  return c && c.matched !== null && funnel && funnel.targetGroup > 0 ? c.matched / funnel.targetGroup : null;
}

// --- The one-line-per-list view of `coverage` ------------------------------------

export interface CoverageRow {
  segmentId: string;
  campaignIds: string[];
  lastRunId: number;
  lastStatus: string;
  lastSyncAt: string | null;
  targetGroupSize: number | null;
  validEmails: number | null;
  uniqueIdentifiers: number | null;
  synced: number;
  criteoIdentifiers: number | null;
  matched: number | null;
  matchRate: number | null;
  coverage: number | null;
  statsReadAt: string | null;
}

/** Each list's latest funnel, one row each (the `coverage` command). */
export function coverageRows(report: CoverageReport): CoverageRow[] {
  return report.lists.flatMap((l) =>
    l.latest
      ? [
          {
            segmentId: l.segmentId,
            campaignIds: l.campaigns.map((c) => c.campaignId),
            lastRunId: l.latest.runId,
            lastStatus: l.latest.status,
            lastSyncAt: l.latest.finishedAt,
            targetGroupSize: l.latest.funnel?.targetGroup ?? null,
            validEmails: l.latest.funnel?.validEmail ?? null,
            uniqueIdentifiers: l.latest.funnel?.uniqueIdentifiers ?? null,
            synced: l.latest.synced,
            criteoIdentifiers: l.latest.criteo?.identifiers ?? null,
            matched: l.latest.criteo?.matched ?? null,
            matchRate: l.latest.matchRate,
            coverage: l.latest.coverage,
            statsReadAt: l.latest.criteo?.readAt ?? null,
          },
        ]
      : [],
  );
}

/** Kept for callers of the earlier API: the latest funnel of every (or the chosen) list. */
export async function coverageByList(db: Db, filter: { segmentIds?: readonly string[]; lowMatchRate?: number } = {}): Promise<CoverageRow[]> {
  const report = await buildCoverageReport(db, { lowMatchRate: filter.lowMatchRate ?? 0.3, since: new Date(0) });
  const rows = coverageRows(report);
  return filter.segmentIds ? rows.filter((r) => filter.segmentIds!.includes(r.segmentId)) : rows;
}

import type { Db } from '../db/connection.js';
import { ConfigError } from '../core/errors.js';
import { campaignPhase } from '../source/campaign-activity.js';
import {
  readBatches,
  readCampaignFunnels,
  readLatestStatistics,
  readListSyncs,
  readListsInScope,
  type BatchRow,
  type CampaignFunnelRow,
  type CampaignInfo,
  type ListInScopeRow,
  type ListSyncRow,
  type StatisticsReadingRow,
} from './queries.js';
import type {
  BatchAnswer,
  CoverageReport,
  CoverageRow,
  CriteoReading,
  Funnel,
  LatestFunnel,
  ListReport,
  ListRun,
  ReportCampaign,
  ReportOptions,
  ReportThresholds,
} from './types.js';
import { findWarnings } from './warnings.js';

/**
 * Builds the coverage report (types.ts) from the audit trail: one read of
 * each kind for every list in scope, then each list's runs, latest funnel and
 * warnings, all judged at the report's one instant.
 */

const REPORT_THRESHOLDS = {
  driftRatio: 0.1,
  settleHours: 24,
  staleHours: 36,
  invalidEmailShare: 0.2,
} as const satisfies Omit<ReportThresholds, 'lowMatchRate'>;

const DEFAULT_REPORT_DAYS = 30;

export async function buildCoverageReport(db: Db, options: ReportOptions): Promise<CoverageReport> {
  const now = options.now ?? new Date();
  const since = options.since ?? new Date(now.getTime() - DEFAULT_REPORT_DAYS * 86_400_000);
  const thresholds: ReportThresholds = { ...REPORT_THRESHOLDS, lowMatchRate: options.lowMatchRate };
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
  const trail: AuditTrail = { syncs, batches, campaignFunnels, readings };
  const lists = scope.map((l) => listReport(l, trail, { now, thresholds, onlyCampaign: options.campaignId }));
  return {
    generatedAt: now.toISOString(),
    since: since.toISOString(),
    filter: { segmentId: options.segmentId ?? null, campaignId: options.campaignId ?? null },
    thresholds,
    lists,
    warnings: lists.flatMap((l) => l.warnings),
  };
}

/** What the report read of every list in scope. */
interface AuditTrail {
  syncs: readonly ListSyncRow[];
  batches: readonly BatchRow[];
  campaignFunnels: readonly CampaignFunnelRow[];
  readings: readonly StatisticsReadingRow[];
}

function listReport(l: ListInScopeRow, trail: AuditTrail, at: { now: Date; thresholds: ReportThresholds; onlyCampaign: string | undefined }): ListReport {
  const campaigns = l.campaigns.map((c) => reportCampaign(c, at.now));
  const runs = trail.syncs
    .filter((s) => s.segment_id === l.segmentId)
    .map((s) => toListRun(s, l.ledgerNow, trail.batches, trail.campaignFunnels, at.onlyCampaign));
  const reading = trail.readings.find((r) => r.segment_id === l.segmentId);
  const report: ListReport = {
    segmentId: l.segmentId,
    advertiserIds: [...new Set(campaigns.map((c) => c.advertiserId))],
    campaigns: at.onlyCampaign ? campaigns.filter((c) => c.campaignId === at.onlyCampaign) : campaigns,
    active: campaigns.some((c) => c.active),
    lastSuccessAt: l.lastSuccessAt?.toISOString() ?? null,
    latest: latestFunnel(runs, reading),
    runs,
    warnings: [],
  };
  report.warnings = findWarnings(report, {
    now: at.now,
    thresholds: at.thresholds,
    reading,
    lastAttempt: l.lastAttempt,
    allCampaigns: campaigns,
    createdByJobAt: l.createdByJobAt,
  });
  return report;
}

/** A campaign with its phase at the report's instant, by the job's one definition of "active". */
function reportCampaign(c: CampaignInfo, now: Date): ReportCampaign {
  const phase = campaignPhase(c, now);
  return {
    campaignId: c.campaignId,
    name: c.name,
    advertiserId: c.advertiserId,
    startsAt: c.startsAt,
    measurementEndsAt: c.measurementEndsAt,
    active: phase === 'active',
    phase,
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
  const criteo: CriteoReading | null = s.stats_read_at
    ? { identifiers: s.stats_identifiers, matched: s.stats_matches, readAt: s.stats_read_at.toISOString(), runId: s.run_id }
    : null;
  const answers = batches
    .filter((b) => b.list_sync_id === s.list_sync_id)
    .toSorted((a, b) => a.seq - b.seq)
    .map(batchAnswer);
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
    newlyValidEmails: s.newly_valid_emails,
    synced: s.ledger_after ?? ledgerNow,
    criteo,
    matchRate: matchRate(criteo),
    coverage: coverage(criteo, funnel),
    batches: answers,
    criteoInvalid: answers.reduce((n, b) => n + (b.nbInvalid ?? 0), 0),
    criteoValid: answers.reduce((n, b) => n + (b.nbValid ?? 0), 0),
  };
}

function batchAnswer(b: BatchRow): BatchAnswer {
  return {
    seq: b.seq,
    operation: b.operation,
    size: b.size,
    status: b.status,
    nbValid: b.nb_valid,
    nbInvalid: b.nb_invalid,
    sampleInvalid: (b.sample_invalid ?? []).map(maskSample),
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
  const criteo: CriteoReading | null = reading
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
function maskSample(value: string): string {
  if (value.includes('@')) return `[email-like, ${value.length} chars]`;
  return value.length > 12 ? `${value.slice(0, 12)}…(${value.length})` : value;
}

/** Derived from the two counts: Criteo's own matchRate is 0–1 or 0–100, unconfirmed. */
function matchRate(c: CriteoReading | null): number | null {
  return c && c.identifiers && c.matched !== null ? c.matched / c.identifiers : null;
}

function coverage(c: CriteoReading | null, funnel: Funnel | null): number | null {
  return c && c.matched !== null && funnel && funnel.targetGroup > 0 ? c.matched / funnel.targetGroup : null;
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

/**
 * What `audience-sync coverage` prints: a row per list from its latest sync,
 * over every run (since the epoch), judged now, optionally narrowed to some lists.
 */
export async function coverageByList(db: Db, filter: { segmentIds?: readonly string[]; lowMatchRate?: number } = {}): Promise<CoverageRow[]> {
  const report = await buildCoverageReport(db, { lowMatchRate: filter.lowMatchRate ?? 0.3, since: new Date(0) });
  const rows = coverageRows(report);
  return filter.segmentIds ? rows.filter((r) => filter.segmentIds!.includes(r.segmentId)) : rows;
}

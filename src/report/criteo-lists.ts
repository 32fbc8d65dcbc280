import { stringify } from 'csv-stringify/sync';
import { formatCount, formatUtc, textTable } from '../core/format.js';
import type { CriteoClient, ListStatistics } from '../criteo/client.js';
import type { Db } from '../db/connection.js';
import { campaignPhase, type CampaignPhase } from '../source/campaign-activity.js';
import { readLatestStatistics, readListsInScope, type ListInScopeRow } from './queries.js';

/**
 * `audience-sync lists`: every contact list the credentials can see, joined
 * with what the job knows of it (the campaigns feeding it, its ledger, its
 * last sync, Criteo's last statistics), and every list a campaign points at
 * that Criteo's search does not return, with the likely reason.
 */

export interface CriteoListRow {
  segmentId: string;
  /** Null for a list Criteo's search did not return. */
  name: string | null;
  advertiserId: string | null;
  createdAt: string | null;
  updatedAt: string | null;
  /** Why the list is listed although the search did not return it; null when it did. */
  notFound: string | null;
  campaigns: { campaignId: string; advertiserId: string; phase: CampaignPhase }[];
  ledgerSize: number;
  lastSync: { status: string; finishedAt: string | null } | null;
  statistics: { identifiers: number | null; matches: number | null; readAt: string | null } | null;
}

export interface CriteoListsOptions {
  advertiserIds?: readonly string[];
  /** Read every visible list's statistics from Criteo now (one call a list, within the rate limit). */
  refresh?: boolean;
  onRefreshed?: (done: number, total: number) => void;
  asOf?: Date;
}

const NOT_FOUND =
  "not returned by Criteo's search: the list does not exist, or its advertiser has not granted this app access (check the advertiser in Criteo)";

export async function listCriteoLists(db: Db, client: CriteoClient, options: CriteoListsOptions = {}): Promise<CriteoListRow[]> {
  const asOf = options.asOf ?? new Date();
  const [segments, known] = await Promise.all([
    client.searchSegments({ types: ['ContactList'], ...(options.advertiserIds ? { advertiserIds: options.advertiserIds } : {}) }),
    readListsInScope(db, {}),
  ]);
  const knownById = new Map(known.map((k) => [k.segmentId, k]));
  const visible = new Set(segments.map((s) => s.id));
  const wanted = (k: ListInScopeRow) =>
    k.campaigns.length > 0 && (!options.advertiserIds || k.campaigns.some((c) => options.advertiserIds!.includes(c.advertiserId)));
  const missing = known.filter((k) => !visible.has(k.segmentId) && wanted(k));
  const ids = [...segments.map((s) => s.id), ...missing.map((k) => k.segmentId)];
  const readings = new Map((await readLatestStatistics(db, ids, 24)).map((r) => [r.segment_id, r]));
  const rows: CriteoListRow[] = [
    ...segments.map((s) => ({
      segmentId: s.id,
      name: s.name,
      advertiserId: s.advertiserId,
      createdAt: s.createdAt,
      updatedAt: s.updatedAt,
      notFound: null,
      ...jobSide(knownById.get(s.id), asOf),
    })),
    ...missing.map((k) => ({
      segmentId: k.segmentId,
      name: null,
      advertiserId: null,
      createdAt: null,
      updatedAt: null,
      notFound: NOT_FOUND,
      ...jobSide(k, asOf),
    })),
  ].sort((a, b) => Number(a.segmentId) - Number(b.segmentId));
  for (const row of rows) {
    const r = readings.get(row.segmentId);
    row.statistics = r ? { identifiers: r.stats_identifiers, matches: r.stats_matches, readAt: r.stats_read_at.toISOString() } : null;
  }
  if (options.refresh) await refreshStatistics(client, rows, options.onRefreshed);
  return rows;
}

function jobSide(known: ListInScopeRow | undefined, asOf: Date): Pick<CriteoListRow, 'campaigns' | 'ledgerSize' | 'lastSync' | 'statistics'> {
  return {
    campaigns: (known?.campaigns ?? []).map((c) => ({ campaignId: c.campaignId, advertiserId: c.advertiserId, phase: campaignPhase(c, asOf) })),
    ledgerSize: known?.ledgerNow ?? 0,
    lastSync: known?.lastAttempt ? { status: known.lastAttempt.status, finishedAt: known.lastAttempt.finishedAt } : null,
    statistics: null,
  };
}

/** Criteo's statistics of every list it returned, read now, one after the other (the client keeps within the rate limit). */
async function refreshStatistics(client: CriteoClient, rows: CriteoListRow[], onRefreshed?: (done: number, total: number) => void): Promise<void> {
  const visible = rows.filter((r) => r.notFound === null);
  let done = 0;
  for (const row of visible) {
    const stats: ListStatistics = (await client.getStatistics(row.segmentId)).body;
    row.statistics = { identifiers: stats.numberOfIdentifiers, matches: stats.numberOfMatches, readAt: new Date().toISOString() };
    onRefreshed?.(++done, visible.length);
  }
}

const campaignsText = (row: CriteoListRow) => row.campaigns.map((c) => `${c.campaignId} (${c.phase})`).join(', ');

export const CRITEO_LIST_COLUMNS = [
  'list',
  'name',
  'advertiser',
  'created',
  'updated',
  'campaigns',
  'ledger',
  'last_sync',
  'last_sync_at',
  'criteo_identifiers',
  'criteo_matches',
  'statistics_read_at',
  'not_found',
] as const;

function cells(row: CriteoListRow): (string | number)[] {
  return [
    row.segmentId,
    row.name ?? '',
    row.advertiserId ?? '',
    row.createdAt ?? '',
    row.updatedAt ?? '',
    campaignsText(row),
    row.ledgerSize,
    row.lastSync?.status ?? '',
    row.lastSync?.finishedAt ?? '',
    row.statistics?.identifiers ?? '',
    row.statistics?.matches ?? '',
    row.statistics?.readAt ?? '',
    row.notFound ?? '',
  ];
}

export function criteoListsCsv(rows: readonly CriteoListRow[]): string {
  return stringify([[...CRITEO_LIST_COLUMNS], ...rows.map(cells)]);
}

export function criteoListsTable(rows: readonly CriteoListRow[]): string {
  const headers = ['list', 'name', 'advertiser', 'created', 'campaigns', 'ledger', 'last sync', 'in Criteo', 'matched', 'read'];
  const body = rows.map((r) => [
    r.segmentId,
    r.name ?? '(not found)',
    r.advertiserId ?? '-',
    formatUtc(r.createdAt),
    campaignsText(r) || '-',
    formatCount(r.ledgerSize),
    r.lastSync ? `${r.lastSync.status} ${formatUtc(r.lastSync.finishedAt)}` : '-',
    formatCount(r.statistics?.identifiers ?? null),
    formatCount(r.statistics?.matches ?? null),
    formatUtc(r.statistics?.readAt ?? null),
  ]);
  const notes = rows.filter((r) => r.notFound).map((r) => `list ${r.segmentId}: ${r.notFound}`);
  return [textTable(headers, body), ...notes].join('\n');
}

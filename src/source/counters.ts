import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import type { CampaignFunnelCounts, FunnelCounts } from './target-groups.js';

/**
 * The funnel counters of lists' snapshots (list_target_counts and
 * lists.identifiers), as statements return them, and the report's funnels
 * made from them. snapshot.ts keeps them in step with the snapshot.
 */

export interface SnapshotCounts {
  identifiers: number;
  /** scope '' is the list (customers counted once); other scopes are campaign ids. */
  byScope: Map<string, Record<'no_customer' | 'missing' | 'invalid' | 'valid', number>>;
}

/** A list's count of identifiers and one of its counters (none: NULL scope), as statements return them. */
export interface CounterRow {
  segment: string;
  identifiers: number;
  scope: string | null;
  email_state: 'no_customer' | 'missing' | 'invalid' | 'valid' | null;
  n: number | null;
}

/** The funnel counters of several lists, in one statement. */
export async function readCountersOf(tx: Db, segmentIds: readonly string[]): Promise<Map<string, SnapshotCounts>> {
  const { rows } = await sql<CounterRow>`
    SELECT l.audience_segment_id::text AS segment, l.identifiers, k.scope, k.email_state, k.n
    FROM audience_sync.lists l LEFT JOIN audience_sync.list_target_counts k USING (audience_segment_id)
    WHERE l.audience_segment_id = ANY(${segmentIds}::bigint[])`.execute(tx);
  return countersFrom(rows, segmentIds);
}

/** Counter rows by list; a list in `segmentIds` without rows counts nothing. */
export function countersFrom(rows: readonly CounterRow[], segmentIds: readonly string[] = []): Map<string, SnapshotCounts> {
  const out = new Map<string, SnapshotCounts>(segmentIds.map((id) => [id, { identifiers: 0, byScope: new Map() }]));
  for (const r of rows) {
    if (!out.has(r.segment)) out.set(r.segment, { identifiers: 0, byScope: new Map() });
    const list = out.get(r.segment)!;
    list.identifiers = Number(r.identifiers);
    if (r.scope === null || r.email_state === null) continue;
    const counts = list.byScope.get(r.scope) ?? { no_customer: 0, missing: 0, invalid: 0, valid: 0 };
    counts[r.email_state] = Number(r.n);
    list.byScope.set(r.scope, counts);
  }
  return out;
}

/** The report's funnels from a list's counters: the list's (customers counted once) and each active campaign's. */
export function funnelsOf(counts: SnapshotCounts, activeCampaignIds: readonly string[]): { funnel: FunnelCounts; campaignFunnels: CampaignFunnelCounts[] } {
  const stages = (scope: string) => {
    const c = counts.byScope.get(scope) ?? { no_customer: 0, missing: 0, invalid: 0, valid: 0 };
    return {
      targetGroupSize: c.no_customer + c.missing + c.invalid + c.valid,
      missingCustomers: c.no_customer,
      withoutEmail: c.missing,
      invalidEmails: c.invalid,
    };
  };
  // A campaign's own distinct identifiers are known only when it feeds the list alone.
  const lone = activeCampaignIds.length === 1;
  return {
    funnel: { ...stages(''), uniqueIdentifiers: counts.identifiers },
    campaignFunnels: activeCampaignIds.map((campaignId) => ({ campaignId, ...stages(campaignId), uniqueIdentifiers: lone ? counts.identifiers : null })),
  };
}

import { sql, type RawBuilder } from 'kysely';

/**
 * When a campaign feeds its list: from `starts_at` (inclusive) to
 * `measurement_ends_at` (exclusive). The one definition of "active" that the
 * plan, preflight and the report share, in SQL and in TypeScript.
 */

export type CampaignPhase = 'not started' | 'active' | 'ended';

/** SQL: the campaign row aliased `c` is active at `asOf`. */
export function campaignActiveAt(asOf: Date): RawBuilder<boolean> {
  return sql<boolean>`(c.starts_at <= ${asOf} AND ${asOf} < c.measurement_ends_at)`;
}

/** Where a campaign stands at `asOf`; dates as ISO strings or Dates. */
export function campaignPhase(campaign: { startsAt: string | Date; measurementEndsAt: string | Date }, asOf: Date): CampaignPhase {
  const at = asOf.getTime();
  if (at < new Date(campaign.startsAt).getTime()) return 'not started';
  return at < new Date(campaign.measurementEndsAt).getTime() ? 'active' : 'ended';
}

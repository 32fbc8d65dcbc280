import { formatCount, formatPercent, formatUtc } from '../core/format.js';
import type { ListInScopeRow, StatisticsReadingRow } from './queries.js';
import type { Funnel, ListReport, ReportCampaign, ReportThresholds, Warning } from './types.js';

/**
 * What a CSM should act on, each with the action to take. Judged from the
 * report's figures alone, at the report's instant.
 */

interface Context {
  now: Date;
  thresholds: ReportThresholds;
  reading: StatisticsReadingRow | undefined;
  lastAttempt: ListInScopeRow['lastAttempt'];
  /** Every campaign of the list, even when the report is narrowed to one. */
  allCampaigns: readonly ReportCampaign[];
  /** When Criteo created the list, if the job created it for a campaign that names it. */
  createdByJobAt: string | null;
}

const HOUR = 3_600_000;

export function findWarnings(list: ListReport, ctx: Context): Warning[] {
  return [...newList(list, ctx), ...stale(list, ctx), ...lowMatchRate(list, ctx), ...drift(list, ctx), ...invalidEmails(list, ctx), ...criteoRejected(list)];
}

/** A list the job created less than a day ago: Criteo serves a new list about 24 hours after it is created. */
function newList(list: ListReport, ctx: Context): Warning[] {
  if (!ctx.createdByJobAt) return [];
  const hours = (ctx.now.getTime() - Date.parse(ctx.createdByJobAt)) / HOUR;
  if (hours >= 24) return [];
  return [
    {
      code: 'new_list',
      segmentId: list.segmentId,
      campaignId: null,
      message: `List ${list.segmentId} was created ${formatUtc(ctx.createdByJobAt)} for a campaign that names it: Criteo may not serve it until about 24 hours after that.`,
      action: "Nothing to do: its members are sent already; expect Criteo's statistics and matches from about a day after creation.",
    },
  ];
}

/** An active list with no successful sync for over 36 hours (counted from when it became active). */
function stale(list: ListReport, ctx: Context): Warning[] {
  const active = ctx.allCampaigns.filter((c) => c.active);
  if (active.length === 0) return [];
  const activeSince = Math.min(...active.map((c) => Date.parse(c.startsAt)));
  const lastSuccess = list.lastSuccessAt ? Date.parse(list.lastSuccessAt) : null;
  const from = Math.max(activeSince, lastSuccess ?? -Infinity);
  const hours = (ctx.now.getTime() - from) / HOUR;
  if (hours <= ctx.thresholds.staleHours) return [];
  const attempt = ctx.lastAttempt
    ? ` The latest attempt, run ${ctx.lastAttempt.runId}, ended ${ctx.lastAttempt.status}${ctx.lastAttempt.reason ? `: ${ctx.lastAttempt.reason}` : ''}.`
    : ' No run has attempted it.';
  return [
    {
      code: 'stale',
      segmentId: list.segmentId,
      campaignId: null,
      message: `List ${list.segmentId} is active but ${lastSuccess === null ? 'has never been synced successfully' : `was last synced successfully ${formatUtc(list.lastSuccessAt)}`}: ${Math.floor(hours)} hours without a successful sync (limit ${ctx.thresholds.staleHours}).${attempt}`,
      action: ctx.lastAttempt
        ? `Read \`audience-sync runs show ${ctx.lastAttempt.runId}\`, fix the cause, then run \`audience-sync resync --list ${list.segmentId}\`. Check the daily schedule is running.`
        : `Check the daily schedule is running, then run \`audience-sync resync --list ${list.segmentId}\`.`,
    },
  ];
}

function lowMatchRate(list: ListReport, ctx: Context): Warning[] {
  const latest = list.latest;
  if (!latest?.criteo || latest.matchRate === null || latest.matchRate >= ctx.thresholds.lowMatchRate) return [];
  const { criteo } = latest;
  const settling =
    latest.finishedAt && Date.parse(criteo.readAt) - Date.parse(latest.finishedAt) < ctx.thresholds.settleHours * HOUR
      ? ' Criteo was read less than a day after the last change: the rate may still rise as Criteo processes it.'
      : '';
  return [
    {
      code: 'low_match_rate',
      segmentId: list.segmentId,
      campaignId: null,
      message: `Match rate of list ${list.segmentId} is ${formatPercent(latest.matchRate)} (${num(criteo.matched)} matched of ${num(criteo.identifiers)} identifiers in Criteo, read ${formatUtc(criteo.readAt)}), under LOW_MATCH_RATE ${formatPercent(ctx.thresholds.lowMatchRate)}.${settling}`,
      action:
        "Check Criteo's rejected identifiers for this list (a hashing problem shows there), that the target group holds real customer emails (not placeholders or test addresses), and that the advertiser's audience is one Criteo can know; then wait a day for the next reading.",
    },
  ];
}

/**
 * Criteo's identifier count against the ledger, a day after a sync: the
 * count may reflect the ledger as it was a day before the reading, or any
 * state since (updates being processed); beyond 10% of that range, it drifted.
 */
function drift(list: ListReport, ctx: Context): Warning[] {
  const r = ctx.reading;
  if (!r || r.stats_identifiers === null || !r.settled) return [];
  const ledgers = [r.settled.ledger, ...r.recent_ledgers];
  const lo = Math.min(...ledgers);
  const hi = Math.max(...ledgers);
  const count = r.stats_identifiers;
  const tolerance = ctx.thresholds.driftRatio;
  const under = count < lo * (1 - tolerance);
  const over = count > hi * (1 + tolerance) && !(hi === 0 && count === 0);
  if (!under && !over) return [];
  const ref = under ? lo : hi;
  const off = ref === 0 ? null : Math.abs(count - ref) / ref;
  return [
    {
      code: 'drift',
      segmentId: list.segmentId,
      campaignId: null,
      message: `Criteo counts ${num(count)} identifiers in list ${list.segmentId} (read ${formatUtc(r.stats_read_at.toISOString())}), ${off === null ? 'while' : `${formatPercent(off)} ${under ? 'fewer' : 'more'} than`} the ${num(ref)} our ledger held after the sync of ${formatUtc(r.settled.finishedAt)} and since: the list drifted from what this job sent (over ${formatPercent(tolerance)}).`,
      action: `Run \`audience-sync resync --list ${list.segmentId} --full\` to re-send every wanted identifier and remove every other one; if it recurs, look for another tool writing to this list.`,
    },
  ];
}

/** Over 20% of the customers with an email have an invalid one: a data-quality problem upstream. */
function invalidEmails(list: ListReport, ctx: Context): Warning[] {
  const latest = list.latest;
  if (!latest?.funnel) return [];
  // Per campaign when the list's funnel is kept per campaign: it names the source to fix.
  const subjects: { campaignId: string | null; f: Funnel }[] =
    latest.campaigns.length > 0 ? latest.campaigns.map((c) => ({ campaignId: c.campaignId, f: c.funnel })) : [{ campaignId: null, f: latest.funnel }];
  return subjects.flatMap(({ campaignId, f }) => {
    if (f.withEmail === 0) return [];
    const share = f.invalidEmails / f.withEmail;
    if (share <= ctx.thresholds.invalidEmailShare) return [];
    const who = campaignId ? `campaign ${campaignId} (list ${list.segmentId})` : `list ${list.segmentId}`;
    return [
      {
        code: 'invalid_emails' as const,
        segmentId: list.segmentId,
        campaignId,
        message: `${formatPercent(share)} of the customers with an email in ${who} have an invalid one (${num(f.invalidEmails)} of ${num(f.withEmail)}, run ${latest.runId}), over ${formatPercent(ctx.thresholds.invalidEmailShare)}.`,
        action:
          'A data-quality problem upstream: ask the team filling the customers table to check how emails are captured and exported (truncation, placeholders, wrong column); the job cannot send an invalid email.',
      },
    ];
  });
}

/** Criteo rejected identifiers we sent as malformed: every one we send is a SHA-256, so the recipe broke. */
function criteoRejected(list: ListReport): Warning[] {
  const last = list.runs.at(-1);
  if (!last || last.criteoInvalid === 0) return [];
  const sample = [...new Set(last.batches.flatMap((b) => b.sampleInvalid))].slice(0, 3);
  return [
    {
      code: 'criteo_rejected_identifiers',
      segmentId: list.segmentId,
      campaignId: null,
      message: `Criteo rejected ${num(last.criteoInvalid)} of the ${num(last.criteoInvalid + last.criteoValid)} identifiers sent to list ${list.segmentId} in run ${last.runId} as malformed${sample.length ? ` (sample: ${sample.join(', ')})` : ''}.`,
      action: `Every identifier sent should be a lowercase SHA-256: stop the schedule, look at the batches of \`audience-sync runs show ${last.runId}\` and check the identifier recipe (audience_sync.email_identifier) against the whole sample kept in audience_sync.batches.sample_invalid, then \`audience-sync resync --list ${list.segmentId} --full\`.`,
    },
  ];
}

/** A count in a message: "unknown" where Criteo gave none. */
const num = (v: number | null) => formatCount(v, 'unknown');

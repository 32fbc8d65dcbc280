import type { CampaignPhase } from '../source/campaign-activity.js';
import type { CampaignInfo } from './queries.js';

/**
 * The coverage report's data: what build.ts assembles, warnings.ts judges and
 * every renderer (table, JSON, CSV, HTML) prints. `report --format json`
 * prints a CoverageReport as it is, so each field here is a field of the JSON.
 *
 * Match coverage, per list and per campaign, per run: how much of a target
 * group reaches Criteo and matches there, and how that moves run by run.
 *
 *   target-group customers → with an email → with a valid email → unique
 *   identifiers → synced (our ledger) → identifiers in Criteo → matched
 *
 * The first four are ours, counted when the run planned the list. "Synced" is
 * what Criteo confirmed receiving. The last two are Criteo's statistics:
 * approximate, lagging up to a day, and given with the time they were read.
 * Rates are fractions (0–1): match rate = matched ÷ identifiers in Criteo,
 * coverage = matched ÷ target-group customers.
 */

export interface ReportOptions {
  segmentId?: string | undefined;
  campaignId?: string | undefined;
  /** Runs started at or after this instant; default 30 days before `now`. */
  since?: Date | undefined;
  /** The instant the report is judged at (staleness, campaign phases); default the current time. */
  now?: Date | undefined;
  /** LOW_MATCH_RATE. */
  lowMatchRate: number;
}

export interface ReportThresholds {
  /** Criteo's count may differ from the ledger by this share before it is drift. */
  driftRatio: number;
  /** Criteo processes an update within about this many hours. */
  settleHours: number;
  /** An active list without a successful sync for longer is stale. */
  staleHours: number;
  /** Invalid emails among customers with an email above this share point upstream. */
  invalidEmailShare: number;
  /** LOW_MATCH_RATE: a list's match rate under this is a warning. */
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

/** One campaign's own funnel within its list's sync. */
interface CampaignFunnel {
  campaignId: string;
  name: string | null;
  funnel: Funnel;
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
  /** Criteo's sampleInvalidIdentifiers, masked: a prefix and the length of each. */
  sampleInvalid: string[];
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
  /** After a change of email rule: customers whose email was invalid and is valid now (null when the rule did not change). */
  newlyValidEmails: number | null;
  /** Identifiers in the ledger after this list sync (what Criteo confirmed it holds). */
  synced: number;
  /** Criteo's statistics read right after this list sync; null when it changed nothing or the read failed. */
  criteo: CriteoReading | null;
  matchRate: number | null;
  coverage: number | null;
  /** In the order of their seq. */
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

/** A campaign of a list, with where it stands at the report's instant (campaignPhase). */
export interface ReportCampaign extends CampaignInfo {
  /** phase === 'active'. */
  active: boolean;
  phase: CampaignPhase;
}

export type WarningCode = 'new_list' | 'low_match_rate' | 'drift' | 'stale' | 'invalid_emails' | 'criteo_rejected_identifiers';

/** What a CSM should act on, with the action to take. */
export interface Warning {
  code: WarningCode;
  segmentId: string;
  campaignId: string | null;
  /** What is wrong, with the figures that show it. */
  message: string;
  /** What to do about it. */
  action: string;
}

export interface ListReport {
  segmentId: string;
  advertiserIds: string[];
  campaigns: ReportCampaign[];
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
  thresholds: ReportThresholds;
  lists: ListReport[];
  warnings: Warning[];
}

/** One list's latest funnel on one line: a row of the `coverage` command. */
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

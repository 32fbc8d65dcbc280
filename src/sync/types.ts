import type { LimitFunction } from 'p-limit';
import type pg from 'pg';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { CriteoClient, ListStatistics } from '../criteo/client.js';
import type { Db } from '../db/connection.js';
import type { ListSyncStatus, RunStatus } from '../db/schema.js';
import type { CampaignFunnelCounts, FunnelCounts, ListTarget } from '../source/target-groups.js';

/**
 * What a run takes and gives. `RunSummary` is what `run --json` prints and
 * `PlanSummary` what `plan --json` prints: every field is declared here.
 */

export interface SyncDeps {
  db: Db;
  /** Where a run's and each list's advisory lock get their connection (DbHandle.locks). */
  locks: pg.Pool;
  client: CriteoClient;
  config: Config;
  log: Logger;
  /**
   * Where runs overlap in one process (a console's resyncs): LIST_CONCURRENCY
   * slots that their long statements share: plans, the settling of quiet
   * lists, a first fill's vacuum, a list's settle, an emptied list's ledger.
   * Each holds a connection of the statements' pool throughout, which holds
   * one for each slot (connectionsFor); waiting for a list's lock, and
   * sending, take no slot. Without it, a run's own LIST_CONCURRENCY bounds
   * them.
   */
  planSlots?: LimitFunction;
}

export interface SyncOptions {
  trigger: string;
  /** Only these lists (CSM resync); default every list a campaign points at. */
  segmentIds?: readonly string[];
  /** The instant campaigns are judged active at; default now. */
  asOf?: Date;
  signal?: AbortSignal;
  /** Resync --full: re-send every desired identifier, remove every ledger identifier not desired. */
  full?: boolean;
  /** Override the mass-removal guard for this run. */
  allowMassRemoval?: boolean;
  /** Called after each confirmed batch, for progress bars. */
  onProgress?: (progress: ListProgress) => void;
  /** Called once the run is recorded, with its id: the console shows the run's page while it goes on. */
  onStarted?: (runId: number) => void;
}

export interface ListProgress {
  segmentId: string;
  planned: number;
  done: number;
}

/** One list of a run: what was planned, sent and confirmed, and how it ended. */
export interface ListOutcome {
  listSyncId: number | null;
  segmentId: string;
  action: 'sync' | 'empty';
  status: ListSyncStatus;
  campaignIds: string[];
  activeCampaignIds: string[];
  funnel: FunnelCounts | null;
  campaignFunnels: CampaignFunnelCounts[];
  ledgerBefore: number | null;
  toAdd: number;
  toRemove: number;
  added: number;
  removed: number;
  emptied: boolean;
  heldRemovals: number;
  reason: string | null;
  errorCode: string | null;
  traceId: string | null;
  statistics: ListStatistics | null;
  /** Whether its source was read from the change log or whole (and why whole), or found unchanged and not planned. */
  sourceRead?: 'changes' | 'checked' | 'whole' | 'unchanged';
  wholeReadReason?: string | null;
  /** A big list's check read the source's side beside its plan, or failed to (see ListPlan.checkBeside). */
  checkBeside?: { failed: string | null };
  /** After a change of email rule: customers whose email was invalid and is valid now. */
  newlyValidEmails?: number | null;
}

/** A campaign that names its list: the list the run found or created for it, or why it has none. */
export interface ListBinding {
  campaignId: string;
  advertiserId: string;
  name: string;
  /** Null while the list is still to be created (a plan), or when binding failed. */
  segmentId: string | null;
  state: 'found' | 'created' | 'to create' | 'failed';
  /** The job created the list (in this run or an earlier one). */
  created: boolean;
  /** When Criteo says the list was created: it may not serve it until about a day later. */
  listCreatedAt: string | null;
  reason: string | null;
}

export interface RunSummary {
  runId: number;
  trigger: string;
  status: RunStatus;
  asOf: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Campaigns that name their list, and the list each was bound to. */
  bindings: ListBinding[];
  lists: ListOutcome[];
  error: string | null;
}

/** One list of a dry run: what `run` would do to it now. */
export interface PlannedList {
  segmentId: string;
  action: 'sync' | 'empty' | 'none';
  campaignIds: string[];
  activeCampaignIds: string[];
  funnel: FunnelCounts | null;
  ledgerBefore: number;
  toAdd: number;
  toRemove: number;
  heldRemovals: number;
  uncertainBatches: number;
  note: string | null;
}

export interface PlanSummary {
  asOf: string;
  bindings: ListBinding[];
  lists: PlannedList[];
}

/** One list's share of a run. */
export interface ListJob {
  runId: number;
  asOf: Date;
  target: ListTarget;
  /** Why nothing may be written to the list in this run (another advertiser's list, or its owner unknown). */
  refusal?: { status: 'failed' | 'incomplete'; reason: string };
  signal: AbortSignal;
  log: Logger;
  options: SyncOptions;
}

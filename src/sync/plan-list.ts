import type { Config } from '../core/config.js';
import { sql } from 'kysely';
import { keptIf, probingKeysFromNowOn, probingNoMore, sessionSettingsOf, type Db } from '../db/connection.js';
import { chooseSourceRead, recordListAfterPlan, takeSourceSnapshot, wholeAfterFailedCheck, type SourceRead } from '../source/change-log.js';
import {
  applyChangedTargets,
  applyCounterDeltas,
  countNewlyValidEmails,
  findChangedTargets,
  findTouchedIdentifiers,
  lockListState,
  recountCounters,
  type ListState,
} from '../source/snapshot.js';
import { snapshotMatches, sourceChecksumBeside, sourceMatchesSnapshot, type SideChecksum } from '../source/snapshot-check.js';
import { attachNewSnapshot, dropUnattachedSnapshot, hasSnapshotTable, vacuumSnapshot, writeNewSnapshot } from '../source/snapshot-table.js';
import { countersFrom, funnelsOf } from '../source/counters.js';
import type { CampaignFunnelCounts, FunnelCounts } from '../source/target-groups.js';
import { applyConfirmedBatches, countLedger } from './ledger.js';
import { materializePlan, type PlanCounts, type Uncertainty } from './plan.js';
import { recordListPlan } from './records.js';
import type { ListJob, SyncDeps } from './types.js';

export interface ListPlan extends PlanCounts {
  funnel: FunnelCounts;
  campaignFunnels: CampaignFunnelCounts[];
  ledgerBefore: number;
  /** Removals the mass-removal guard holds back (0 when none). */
  heldRemovals: number;
  heldReason: string | null;
  /** Target-group rows new, gone or with a changed email since the list was last planned. */
  changedRows: number;
  /**
   * How they were found: from the keys the source change log names; from those, with the whole target group then
   * checked against the snapshot (the periodic safety net, sourceMatchesSnapshot); or by reading the whole target group.
   */
  sourceRead: 'changes' | 'checked' | 'whole';
  /** Why the whole target group was read or checked. */
  wholeReadReason: string | null;
  /**
   * A big list's check (SOURCE_CHECK_BESIDE_IDENTIFIERS): whether the source's side was read beside the plan, on a
   * connection of its own, or why it could not be (the plan then checked in its transaction); null without one.
   */
  checkBeside: { failed: string | null } | null;
  /** The diff looked only at the identifiers those rows touch (the ledger was in step). */
  incremental: boolean;
  /** After a change of email rule: customers whose email was invalid and is valid now (null when the rule did not change). */
  newlyValidEmails: number | null;
}

/** A run's plan reads the run's map of the change log (runId); a dry run's has none. */
type PlanJob = Pick<ListJob, 'target' | 'asOf' | 'options'> & { runId?: number };

/**
 * What syncing a list means now: its snapshot brought up to the source, its
 * funnel, and its diff written to plan_entries under `planId`, in one
 * transaction. `run` commits it with the plan's figures on list sync
 * `planId` (`record`: recordListPlan), then sends the plan; `plan` (dryRun)
 * rolls it all back, so a dry run changes nothing. A run writes a list's
 * first snapshot before that transaction (buildNewSnapshot); a dry run
 * writes it in it.
 */
export async function planList(
  deps: Pick<SyncDeps, 'db' | 'config'>,
  job: PlanJob,
  planId: number,
  uncertainty: Uncertainty,
  { dryRun = false, record = false }: { dryRun?: boolean; record?: boolean } = {},
): Promise<ListPlan> {
  let plan: ListPlan | undefined;
  try {
    const built = dryRun ? null : await buildNewSnapshot(deps, job);
    await deps.db.transaction().execute(async (tx) => {
      plan = await planInTransaction(tx, deps.config, job, planId, uncertainty, built);
      if (dryRun) throw DRY_RUN;
      // The plan's figures go on its list sync, now 'sending', in the plan's own commit: a statement and a commit less.
      if (record) await recordListPlan(tx, planId, plan);
    });
  } catch (error) {
    if (error !== DRY_RUN) throw planError(job, error);
  }
  return plan!;
}

/** Runs `work`, which holds a statement connection throughout (a plan's transaction, a long statement), in one of the process's plan slots, if it has them (SyncDeps.planSlots). */
export function inPlanSlot<T>(deps: Pick<SyncDeps, 'planSlots'>, work: () => Promise<T>): Promise<T> {
  return deps.planSlots ? deps.planSlots(work) : work();
}

function planError(job: PlanJob, error: unknown): unknown {
  const e = error as { code?: string; constraint?: string };
  // The list's snapshot table's primary key (list_targets_<id>_pkey), as it is written or built.
  if (e.code === '23505' && /^list_targets_.*pkey$/.test(e.constraint ?? '')) {
    // Only a source view can do this: the tables' own keys forbid it.
    return new Error(
      `the source repeats a target-group row or a customer id for list ${job.target.segmentId}: campaign_target_groups must be unique on (campaign_id, customer_id) and customers on customer_id`,
      { cause: error },
    );
  }
  return error;
}

/** A list's first snapshot, committed before its plan: the read that wrote it, its rows, and whether it is attached yet. */
interface NewSnapshot {
  read: SourceRead;
  rows: number;
  attached: boolean;
}

/**
 * A run's first plan of a list (it has no table of its snapshot) starts
 * with a transaction of its own: it reads the whole target group into the
 * list's new table and commits it. A big table is then vacuumed, outside
 * any transaction, before the plan's transaction attaches it: its pages
 * all-visible before its indexes are built, the plan reads its identifiers
 * from the index alone (its ranges took 13.6 s, then 4.2 s, at ten
 * million rows; see vacuumSnapshot). A small one is attached before that
 * commit. The plan records the read as if it had made it. Until the plan
 * commits, nothing says the list has read the source: if the run stops
 * before that, the next plan drops a table left unattached and writes it
 * again, or reads the source whole against an attached one (see
 * docs/RELIABILITY.md). Null when the list has its table.
 */
async function buildNewSnapshot(deps: Pick<SyncDeps, 'db' | 'config'>, job: PlanJob): Promise<NewSnapshot | null> {
  const { segmentId, activeCampaignIds } = job.target;
  // The list's lock (see list.ts) keeps any other process from making or attaching the table meanwhile.
  if (await hasSnapshotTable(deps.db, segmentId)) return null;
  const written = await deps.db.transaction().execute(async (tx) => {
    const state = await lockListState(tx, segmentId);
    const read = await readSource(tx, deps.config, job, state.snapshotLost);
    const rows = await writeNewSnapshot(tx, segmentId, activeCampaignIds);
    // Up to two batches' worth of rows (100,000 by default), the vacuum apart saves less than it costs.
    const attached = rows <= 2 * deps.config.criteo.batchSize;
    if (attached) await attachNewSnapshot(tx, segmentId);
    return { read, rows, attached };
  });
  if (written && !written.attached) {
    await vacuumSnapshot(deps.db, segmentId).catch(async (error: unknown) => {
      await dropUnattachedSnapshot(deps.db, segmentId).catch(() => {});
      throw error;
    });
  }
  return written;
}

/** SQL: JIT compiling off for the rest of the plan's transaction. */
const JIT_OFF = sql<string>`set_config('jit', 'off', true)`;

/** Thrown to roll a dry run's plan transaction back. */
const DRY_RUN = new Error('dry run: rolled back');

async function planInTransaction(tx: Db, config: Config, job: PlanJob, planId: number, uncertainty: Uncertainty, built: NewSnapshot | null): Promise<ListPlan> {
  const { segmentId, activeCampaignIds } = job.target;
  // Batches an earlier sync had confirmed but not yet moved into the ledger (it was killed): the ledger takes
  // them first, in this transaction, so a dry run rolls it back with the rest.
  if (uncertainty.unapplied) await applyConfirmedBatches(tx, segmentId);
  const state = await lockListState(tx, segmentId);
  // Only a ledger in step with the snapshot, nothing uncertain and no --full lets the diff look at today's changes alone.
  const incremental =
    state.inStep && state.snapshotTable && !built && !state.snapshotLost && uncertainty.batchIds.length === 0 && !uncertainty.wholeList && !job.options.full;
  const ledgerBefore = incremental ? state.identifiers : await countLedger(tx, segmentId);
  const read = await refreshSnapshot(tx, config, job, state, built);
  // A first fill: the ledger is empty and nothing is uncertain, so every desired identifier is an add.
  const fill = !incremental && ledgerBefore === 0 && uncertainty.batchIds.length === 0;
  const counts = incremental ? await diffTouched(tx, config, segmentId, planId, read.changedRows) : await diffWhole(tx, config, job, planId, uncertainty, fill);
  // After an incremental diff, the identifiers moved exactly as the diff did; a first fill adds each once; a whole
  // diff recounted them.
  const identifiers = incremental || fill ? ledgerBefore + counts.toAdd - counts.toRemove : null;
  const counters = await recordListAfterPlan(tx, segmentId, read.source, activeCampaignIds, { wholeReadDays: config.sourceWholeReadDays, identifiers });
  const { funnel, campaignFunnels } = funnelsOf(countersFrom(counters, [segmentId]).get(segmentId)!, activeCampaignIds);
  const held = massRemovalHold(config, counts.toRemove, ledgerBefore, job.options.allowMassRemoval ?? false);
  return {
    ...counts,
    funnel,
    campaignFunnels,
    ledgerBefore,
    changedRows: read.changedRows,
    sourceRead: read.kind,
    wholeReadReason: read.wholeReadReason,
    checkBeside: read.checkBeside,
    incremental,
    newlyValidEmails: read.newlyValidEmails,
    heldRemovals: held ? counts.toRemove : 0,
    heldReason: held,
  };
}

/**
 * Brings the list's snapshot up to the source: from the change log, or by
 * reading the whole target group; a first snapshot is the whole read
 * itself, written before the plan (`built`) or here. The list's row records
 * the read once the diff is made (recordListAfterPlan).
 */
async function refreshSnapshot(tx: Db, config: Config, job: PlanJob, state: ListState, built: NewSnapshot | null) {
  const { segmentId, activeCampaignIds } = job.target;
  if (built) {
    // The plan holds the change log's lock and takes its settings as a read does; the read itself is done.
    await probingKeysFromNowOn(tx, (probing) => takeSourceSnapshot(tx, [JIT_OFF, probing]));
    if (!built.attached) await attachNewSnapshot(tx, segmentId);
    return sourceReadOf(built.read, built.rows, 0);
  }
  let read = await readSource(tx, config, job, state.snapshotLost);
  const applyRead = async (r: SourceRead) => applyChangedTargets(tx, segmentId, await findChangedTargets(tx, segmentId, activeCampaignIds, r));
  let side: SideChecksum | null = null;
  if (state.snapshotTable && read.kind === 'changes' && read.check !== undefined) {
    // The periodic safety net: the log's changes, kept if the whole target group then matches the snapshot. A big
    // list reads the source's side beside the changes, on a connection of its own.
    const checked = { ...read, check: read.check };
    const beside = checksBeside(config, state) ? sourceChecksumBeside(config.databaseUrl, sessionSettingsOf(config), activeCampaignIds) : null;
    let changedRows = 0;
    try {
      const matched = await keptIf(tx, async () => {
        changedRows = await applyRead(checked);
        side = await beside;
        return side && 'checksum' in side ? snapshotMatches(tx, segmentId, side.checksum) : sourceMatchesSnapshot(tx, segmentId, activeCampaignIds);
      });
      if (matched) return sourceReadOf(read, changedRows, null, side);
    } finally {
      // Nothing of the plan's outlives it: on an error, the plan waits for the side's statement to end (it never rejects).
      await beside;
    }
    read = wholeAfterFailedCheck(checked);
  }
  if (state.snapshotTable) {
    const changedRows = await applyRead(read);
    return sourceReadOf(read, changedRows, read.rejudge ? await countNewlyValidEmails(tx) : null, side);
  }
  const rows = await writeNewSnapshot(tx, segmentId, activeCampaignIds);
  await attachNewSnapshot(tx, segmentId);
  return sourceReadOf(read, rows, 0);
}

/** Whether a list checks the source's side beside its plan (sourceChecksumBeside): one of SOURCE_CHECK_BESIDE_IDENTIFIERS or more. */
function checksBeside(config: Config, state: ListState): boolean {
  return config.sourceCheckBesideIdentifiers > 0 && state.identifiers >= config.sourceCheckBesideIdentifiers;
}

/**
 * The source as the plan reads it: its snapshot taken, and whether the
 * change log or the whole target group says what changed. JIT compiling
 * costs the snapshot's statements more than it saves at any size measured.
 * Index probes are priced as on a cached database until a statement that
 * may read a whole list (probingNoMore): the source's reads, a few keys on
 * most days, look them up. A list with no table of its snapshot reads whole.
 */
async function readSource(tx: Db, config: Config, job: PlanJob, snapshotLost: boolean): Promise<SourceRead> {
  const { segmentId, activeCampaignIds } = job.target;
  const seen = await probingKeysFromNowOn(tx, (probing) => takeSourceSnapshot(tx, [JIT_OFF, probing]));
  return chooseSourceRead(tx, segmentId, activeCampaignIds, seen, {
    full: job.options.full ?? false,
    snapshotLost,
    wholeReadDays: config.sourceWholeReadDays,
    runId: job.runId,
  });
}

/** What the plan says of its read; `newlyValid` counts only after a change of email rule (a new snapshot had no invalid email). */
function sourceReadOf(read: SourceRead, changedRows: number, newlyValid: number | null, side: SideChecksum | null = null) {
  return {
    source: read,
    kind: read.kind === 'changes' && read.check !== undefined ? ('checked' as const) : read.kind,
    wholeReadReason: read.kind === 'whole' ? read.reason : (read.check ?? null),
    checkBeside: side && { failed: 'failed' in side ? side.failed : null },
    changedRows,
    newlyValidEmails: read.rejudge ? newlyValid : null,
  };
}

/** The diff on the identifiers today's changes touched: the ledger held exactly the snapshot's identifiers. */
async function diffTouched(tx: Db, config: Config, segmentId: string, planId: number, changedRows: number): Promise<PlanCounts> {
  const touched = await findTouchedIdentifiers(tx, segmentId, changedRows);
  const counts = await materializePlan(tx, planId, segmentId, { kind: 'touched', ...touched }, config.criteo.batchSize);
  await applyCounterDeltas(tx, segmentId);
  return counts;
}

/** The diff of the whole list against the whole ledger (a first fill: against none). */
async function diffWhole(tx: Db, config: Config, job: PlanJob, planId: number, uncertainty: Uncertainty, fill: boolean): Promise<PlanCounts> {
  const { segmentId } = job.target;
  await probingNoMore(tx);
  // A first fill counts the list's identifiers as it plans them, one for each add.
  await recountCounters(tx, segmentId, { identifiers: !fill });
  // --full distrusts the whole ledger: every desired identifier is re-sent.
  const whole = job.options.full ? { ...uncertainty, wholeList: true } : uncertainty;
  return materializePlan(tx, planId, segmentId, fill ? { kind: 'fill' } : { kind: 'whole', uncertainty: whole }, config.criteo.batchSize);
}

/**
 * The mass-removal guard: removing more than MAX_REMOVAL_RATIO of a list at
 * once is more often a broken source than a real audience change. Returns
 * why the removals are held, or null.
 */
function massRemovalHold(config: Config, toRemove: number, ledgerBefore: number, allowed: boolean): string | null {
  const ratio = ledgerBefore > 0 ? toRemove / ledgerBefore : 0;
  if (allowed || ratio <= config.maxRemovalRatio) return null;
  return `held ${toRemove} removals (${(ratio * 100).toFixed(0)}% of the list, over MAX_REMOVAL_RATIO ${config.maxRemovalRatio}): check the source data, then rerun with --allow-mass-removal`;
}

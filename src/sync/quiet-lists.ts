import type { Logger } from '../core/logger.js';
import { advanceQuietLists, takeSourceSnapshot } from '../source/change-log.js';
import { mapRunChanges } from '../source/run-changes.js';
import { funnelsOf, readCountersOf, type SnapshotCounts } from '../source/counters.js';
import type { ListTarget } from '../source/target-groups.js';
import { baseOutcome, withDatesNote } from './outcome.js';
import { recordCampaignFunnelsOf, recordSettledListSyncs } from './records.js';
import { readStatistics, statisticsDue } from './statistics.js';
import type { ListOutcome, SyncDeps, SyncOptions } from './types.js';

/**
 * Lists nothing changed for since their last sync: their ledger is in step
 * with their snapshot, nothing is unsettled, and the source change log names
 * nothing that concerns them (advanceQuietLists says exactly when). A plan
 * of such a list would find no changed row and send nothing, so the run
 * settles them all at once, before any list is planned: one transaction
 * moves their snapshots' read of the log on and records a succeeded list
 * sync for each, with its funnel from the snapshot's counters. Nothing is
 * sent to Criteo and the ledger is untouched, so a crash anywhere in it
 * leaves the lists as they were, and the next run simply looks again.
 *
 * Returns each settled list's outcome by list; the others are planned as usual.
 */
export async function settleQuietLists(
  deps: Pick<SyncDeps, 'db' | 'config'>,
  runId: number,
  targets: readonly ListTarget[],
  options: Pick<SyncOptions, 'full'>,
): Promise<Map<string, ListOutcome>> {
  const settled = new Map<string, ListOutcome>();
  if (options.full || targets.length === 0) return settled;
  await deps.db.transaction().execute(async (tx) => {
    const seen = await takeSourceSnapshot(tx);
    const quiet = new Set(await advanceQuietLists(tx, targets, seen, deps.config.sourceWholeReadDays));
    // The others' plans read the day's changes from one map of the log, not the log each (run-changes.ts).
    await mapRunChanges(
      tx,
      runId,
      targets.filter((t) => !quiet.has(t.segmentId)),
      seen,
    );
    if (quiet.size === 0) return;
    const quietTargets = targets.filter((t) => quiet.has(t.segmentId));
    const counters = await readCountersOf(
      tx,
      quietTargets.map((t) => t.segmentId),
    );
    for (const target of quietTargets) settled.set(target.segmentId, quietOutcome(target, counters.get(target.segmentId)!));
    const ids = await recordSettledListSyncs(
      tx,
      quietTargets.map((t) => {
        const outcome = settled.get(t.segmentId)!;
        return {
          runId,
          segmentId: t.segmentId,
          advertiserId: t.advertiserIds[0] ?? null,
          campaignIds: t.campaignIds,
          action: 'sync' as const,
          funnel: outcome.funnel!,
          ledgerBefore: outcome.ledgerBefore!,
          reason: outcome.reason,
        };
      }),
    );
    for (const [segmentId, listSyncId] of ids) settled.get(segmentId)!.listSyncId = listSyncId;
    await recordCampaignFunnelsOf(
      tx,
      [...settled.values()].map((o) => ({ listSyncId: o.listSyncId!, funnels: o.campaignFunnels })),
    );
  });
  return settled;
}

/** A quiet list's outcome: succeeded, nothing to send, its funnel from its snapshot's counters. */
function quietOutcome(target: ListTarget, counts: SnapshotCounts): ListOutcome {
  const { funnel, campaignFunnels } = funnelsOf(counts, target.activeCampaignIds);
  return {
    ...baseOutcome(target, 'sync'),
    status: 'succeeded',
    funnel,
    campaignFunnels,
    ledgerBefore: counts.identifiers,
    sourceRead: 'unchanged',
    wholeReadReason: null,
    reason: withDatesNote(null, target),
  };
}

/** A settled list's own end: its statistics when they are due, its progress and its log line. */
export async function finishQuietList(deps: SyncDeps, outcome: ListOutcome, options: Pick<SyncOptions, 'onProgress'>, log: Logger): Promise<ListOutcome> {
  const listLog = log.child({ list: outcome.segmentId, campaigns: outcome.activeCampaignIds });
  options.onProgress?.({ segmentId: outcome.segmentId, planned: 0, done: 0 });
  if (await statisticsDue(deps.db, outcome.segmentId)) await readStatistics(deps, outcome.listSyncId!, outcome.segmentId, outcome, listLog);
  listLog.info({ status: outcome.status, action: outcome.action, sourceRead: outcome.sourceRead, toAdd: 0, toRemove: 0 }, 'list finished');
  return outcome;
}

import type { ListTarget } from '../source/target-groups.js';
import { assertMigrated } from '../db/migrate.js';
import { readBindings } from '../source/list-bindings.js';
import { bindNamedLists } from './bind-lists.js';
import { findListTargets } from '../source/target-groups.js';
import { countLedger, findUncertainty } from './ledger.js';
import { withDatesNote } from './outcome.js';
import { discardPlan, type Uncertainty } from './plan.js';
import { planList } from './plan-list.js';
import type { PlannedList, PlanSummary, SyncDeps, SyncOptions } from './types.js';

/** Without a client, named lists are reported from the recorded bindings. */
type PlanDeps = Pick<SyncDeps, 'db' | 'config' | 'log'> & { client?: SyncDeps['client'] };
type PlanOptions = Omit<SyncOptions, 'trigger' | 'signal' | 'onProgress'>;

/**
 * What `run` would do now, list by list, through the same planning code,
 * sending nothing and changing nothing: each list's plan transaction is
 * rolled back.
 */
export async function planSync(deps: PlanDeps, options: PlanOptions = {}): Promise<PlanSummary> {
  const { db } = deps;
  const asOf = options.asOf ?? new Date();
  await assertMigrated(db);
  const bindings = await bindNamedLists(deps, { dryRun: true });
  // A list found but not yet recorded (the first run records it) is reported in the bindings, not planned.
  const recorded = await readBindings(db);
  const unbound = bindings.filter((b) => b.segmentId === null || recorded.get(b.campaignId)?.segmentId !== b.segmentId).map((b) => b.campaignId);
  const targets = await findListTargets(db, asOf, options.segmentIds, unbound);
  const lists: PlannedList[] = [];
  for (const id of options.segmentIds ?? []) {
    if (!targets.some((t) => t.segmentId === id)) lists.push({ ...emptyPlanned(id), note: `no campaign points at list ${id}; left alone` });
  }
  for (const target of targets) {
    const uncertainty = await findUncertainty(db, target.segmentId);
    const base: PlannedList = {
      ...emptyPlanned(target.segmentId),
      campaignIds: target.campaignIds,
      activeCampaignIds: target.activeCampaignIds,
      uncertainBatches: uncertainty.batchIds.length,
    };
    lists.push(target.allEnded ? await planEmptying(deps, target, base) : await planMembers(deps, options, asOf, target, base, uncertainty));
  }
  deps.log.info({ lists: lists.length }, 'plan computed');
  return { asOf: asOf.toISOString(), bindings, lists };
}

async function planEmptying(deps: PlanDeps, target: ListTarget, base: PlannedList): Promise<PlannedList> {
  const ledgerBefore = await countLedger(deps.db, target.segmentId);
  const needed = ledgerBefore > 0 || base.uncertainBatches > 0;
  return {
    ...base,
    action: needed ? 'empty' : 'none',
    ledgerBefore,
    toRemove: ledgerBefore,
    note: withDatesNote(needed ? 'measurement period ended: one DELETE empties the list' : 'measurement period ended; list already empty', target),
  };
}

async function planMembers(
  deps: PlanDeps,
  options: PlanOptions,
  asOf: Date,
  target: ListTarget,
  base: PlannedList,
  uncertainty: Uncertainty,
): Promise<PlannedList> {
  // A negative id never collides with a real list sync's plan.
  const planId = -Math.floor(Math.random() * 2 ** 47) - 1;
  try {
    const plan = await planList(deps, { target, asOf, options: { trigger: 'plan', ...options } }, planId, uncertainty, { dryRun: true });
    return {
      ...base,
      action: plan.toAdd + plan.toRemove > 0 ? 'sync' : 'none',
      funnel: plan.funnel,
      ledgerBefore: plan.ledgerBefore,
      toAdd: plan.toAdd,
      toRemove: plan.toRemove,
      heldRemovals: plan.heldRemovals,
      note: withDatesNote(plan.heldReason ?? (target.activeCampaignIds.length === 0 ? 'no campaign active yet' : null), target),
    };
  } finally {
    await discardPlan(deps.db, planId);
  }
}

function emptyPlanned(segmentId: string): PlannedList {
  return {
    segmentId,
    action: 'none',
    campaignIds: [],
    activeCampaignIds: [],
    funnel: null,
    ledgerBefore: 0,
    toAdd: 0,
    toRemove: 0,
    heldRemovals: 0,
    uncertainBatches: 0,
    note: null,
  };
}

import { AudienceSyncError, AuthenticationError, VersionRetiredError, oneLine, type CriteoProblem } from '../core/errors.js';
import type { ListSyncStatus } from '../db/schema.js';
import type { ListTarget } from '../source/target-groups.js';
import type { ListOutcome } from './types.js';

/** A list's outcome before anything happened to it, and the verdicts that end one. */

export function baseOutcome(target: ListTarget, action: 'sync' | 'empty'): ListOutcome {
  return {
    listSyncId: null,
    segmentId: target.segmentId,
    action,
    status: 'planning',
    campaignIds: target.campaignIds,
    activeCampaignIds: target.activeCampaignIds,
    funnel: null,
    campaignFunnels: [],
    ledgerBefore: null,
    toAdd: 0,
    toRemove: 0,
    added: 0,
    removed: 0,
    emptied: false,
    heldRemovals: 0,
    reason: null,
    errorCode: null,
    traceId: null,
    statistics: null,
  };
}

export function actionOf(target: ListTarget): 'sync' | 'empty' {
  return target.allEnded ? 'empty' : 'sync';
}

export function interruptedBeforeStart(target: ListTarget, reason: string): ListOutcome {
  return { ...baseOutcome(target, actionOf(target)), status: 'incomplete', reason };
}

/** A list whose sync failed before it had an outcome of its own (its lock, or its list sync row). */
export function failedOutside(target: ListTarget, error: unknown): ListOutcome {
  const verdict = classify(error);
  return { ...baseOutcome(target, actionOf(target)), status: verdict.status, reason: verdict.reason };
}

export function notFedByAnyCampaign(segmentId: string): ListOutcome {
  return {
    ...baseOutcome({ segmentId, campaignIds: [], activeCampaignIds: [], advertiserIds: [], allEnded: false, invertedCampaignIds: [] }, 'sync'),
    status: 'skipped',
    reason: `no campaign points at list ${segmentId}; left alone`,
  };
}

export const INTERRUPTED_REASON = 'interrupted before every batch was sent; the next run resumes it';

export interface Verdict {
  status: ListSyncStatus;
  reason: string;
  problem?: CriteoProblem;
}

/** What an error means for the list: incomplete when it is retryable (the next run resumes it), else failed. */
export function classify(error: unknown): Verdict {
  const problem = (error as { problem?: CriteoProblem }).problem;
  const reason = oneLine(error);
  const retryable = error instanceof AudienceSyncError ? error.retryable : lostDatabase(error);
  const status = retryable ? 'incomplete' : 'failed';
  return { status, reason, ...(problem ? { problem } : {}) };
}

/** The database went away (restart, failover, network): the list is incomplete, and the next run resumes it. */
function lostDatabase(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  const code = e.code ?? '';
  return (
    code.startsWith('08') || // connection exceptions
    ['57P01', '57P02', '57P03', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code) ||
    /Connection terminated|connection timeout/i.test(e.message ?? '')
  );
}

/** Names campaigns whose dates are inverted: they are never active, and nothing else would say so. */
export function withDatesNote(reason: string | null, target: ListTarget): string | null {
  if (target.invertedCampaignIds.length === 0) return reason;
  const note = target.invertedCampaignIds.map((id) => `campaign ${id} ends before it starts (never active)`).join('; ');
  return reason ? `${reason}; ${note}` : note;
}

/** What stops the whole run, not one list: refused credentials, or an API version Criteo has retired. Retrying would only storm Criteo. */
export type RunStopper = AuthenticationError | VersionRetiredError;

export function stopsRun(error: unknown): error is RunStopper {
  return error instanceof AuthenticationError || error instanceof VersionRetiredError;
}

/** Why the lists not yet started were left alone. */
export function stoppedReason(stop: RunStopper | undefined): string {
  if (stop instanceof VersionRetiredError) return 'run aborted: the Criteo API version is retired';
  return stop ? 'run aborted: authentication failed' : 'run interrupted';
}

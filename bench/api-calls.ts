import { BIG_LIST } from './generate.js';
import type { RunPhases } from './phases.js';
import type { ApiCalls } from './report.js';
import type { SandboxCallRecord } from './sandbox-process.js';

/** Criteo calls of one run, as the sandbox saw them, against the fewest the run could have made. */

/** Criteo's largest PATCH, and the job's default batch. */
export const BATCH = 50_000;

function countCalls(calls: SandboxCallRecord[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of calls) {
    const key = c.operation === 'patch' ? `patch-${c.op ?? '?'}` : c.operation;
    out[key] = (out[key] ?? 0) + 1;
    if (c.status >= 400) out['errors'] = (out['errors'] ?? 0) + 1;
  }
  return out;
}

/**
 * One search per run (which advertiser owns each list, checked before any write), then per list
 * ceil(adds / 50,000) + ceil(removes / 50,000), one DELETE per emptied list, one statistics read per touched list.
 */
function minimumCalls(phases: RunPhases): Record<string, number> {
  const lists = phases.summary?.lists ?? [];
  const out: Record<string, number> = { search: lists.length > 0 ? 1 : 0, 'patch-add': 0, 'patch-remove': 0, delete: 0, statistics: 0 };
  for (const l of lists) {
    const adds = Math.ceil(l.toAdd / BATCH);
    if (l.action === 'empty') {
      const needed = (l.ledgerBefore ?? 0) > 0;
      out['delete']! += needed ? 1 : 0;
      out['statistics']! += needed ? 1 : 0;
      continue;
    }
    const removes = Math.ceil(l.toRemove / BATCH);
    out['patch-add']! += adds;
    out['patch-remove']! += removes;
    out['statistics']! += adds + removes > 0 ? 1 : 0;
  }
  return out;
}

export function apiCalls(sandboxCalls: SandboxCallRecord[], phases: RunPhases): ApiCalls {
  const observed = countCalls(sandboxCalls);
  const minimum = minimumCalls(phases);
  const keys = ['search', 'patch-add', 'patch-remove', 'delete', 'statistics'];
  const total = (r: Record<string, number>) => keys.reduce((s, k) => s + (r[k] ?? 0), 0);
  const patches = sandboxCalls.filter((c) => c.operation === 'patch');
  // The send rate is taken on the big list alone: the small one is sent while the big one is still planning.
  const big = patches.filter((c) => c.segmentId === BIG_LIST);
  const span = big.length ? Math.max(...big.map((c) => c.at + (c.durationMs ?? 0))) - Math.min(...big.map((c) => c.at)) : 0;
  return {
    observed,
    minimum,
    observedTotal: total(observed),
    minimumTotal: total(minimum),
    exact: keys.every((k) => (observed[k] ?? 0) === minimum[k]) && !observed['errors'],
    identifiersSent: patches.reduce((s, c) => s + (c.identifiers ?? 0), 0),
    bigListIdentifiers: big.reduce((s, c) => s + (c.identifiers ?? 0), 0),
    patchSpanMs: span,
    sandboxBusyMs: big.reduce((s, c) => s + (c.durationMs ?? 0), 0),
  };
}

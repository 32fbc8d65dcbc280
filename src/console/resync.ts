import { setMaxListeners } from 'node:events';
import pLimit from 'p-limit';
import { oneLine } from '../core/errors.js';
import { Refusal } from './context.js';
import { pushRunMetrics } from '../report/metrics.js';
import { runSync, type RunSummary, type SyncDeps } from '../sync/run.js';

/**
 * Starts a CSM's resync of one list, through the same code path as
 * `audience-sync resync --list ID` (runSync: the same locks, the same records,
 * the same metrics push), recorded as `console:USER`. One console resync of a
 * list at a time in this process: a second click on the same list is shown
 * the run the first one started. Across processes the list's advisory lock
 * keeps runs apart: a run that finds the list held waits LOCK_WAIT_SECONDS,
 * then skips it and says which run holds it.
 *
 * The resyncs' plans (and their other long statements: SyncDeps.planSlots)
 * share LIST_CONCURRENCY slots, as one run's lists do: each holds a
 * connection of the statements' pool, which holds one for each slot and four
 * more. A resync started while the slots are taken is recorded at once and
 * plans when one frees; waiting for its list's lock, or sending, takes none.
 * At most MAX_RESYNCS_IN_FLIGHT resyncs go at once: each holds two
 * connections of the locks' pool (its run's lock and its list's).
 */

/**
 * The most console resyncs in flight at once: 32 lock connections, half the
 * locks' pool, so that the console (with its 16 statement connections) and a
 * daily run beside it stay within Postgres's default max_connections of 100.
 */
export const MAX_RESYNCS_IN_FLIGHT = 16;

export interface ResyncRequest {
  segmentId: string;
  full: boolean;
  user: string;
}

export interface ResyncStarted {
  runId: number;
  /** A resync of this list started from this console was already going: this is its run. */
  already: boolean;
}

interface InFlight {
  runId: Promise<number>;
  done: Promise<void>;
}

export class ResyncRunner {
  private readonly inFlight = new Map<string, InFlight>();
  private readonly stopping = new AbortController();
  private readonly deps: SyncDeps;

  constructor(deps: SyncDeps) {
    this.deps = { ...deps, planSlots: deps.planSlots ?? pLimit(deps.config.listConcurrency) };
    // Each resync in flight listens to the one stop signal.
    setMaxListeners(MAX_RESYNCS_IN_FLIGHT + 1, this.stopping.signal);
  }

  /** Starts the run and answers with its id as soon as it is recorded; the run goes on after. */
  async start(request: ResyncRequest): Promise<ResyncStarted> {
    const going = this.inFlight.get(request.segmentId);
    if (going) return { runId: await going.runId, already: true };
    if (this.inFlight.size >= MAX_RESYNCS_IN_FLIGHT) {
      const message = `${MAX_RESYNCS_IN_FLIGHT} resyncs are already going in this console: start this one again once one of them has finished.`;
      throw new Refusal(503, 'Too many resyncs', message);
    }
    let started!: (runId: number) => void;
    const runId = new Promise<number>((resolve) => (started = resolve));
    const run = runSync(this.deps, {
      trigger: `console:${request.user}`,
      segmentIds: [request.segmentId],
      signal: this.stopping.signal,
      onStarted: started,
      ...(request.full ? { full: true } : {}),
    });
    const done = run.then(
      (summary) => this.pushMetrics(summary),
      (error: unknown) => this.deps.log.warn({ list: request.segmentId, error: oneLine(error) }, 'console resync failed'),
    );
    // Set before any await: a second click arriving now finds this one.
    this.inFlight.set(request.segmentId, { runId, done });
    void done.finally(() => this.inFlight.delete(request.segmentId));
    // A run that fails before it is recorded (an unmigrated schema, an unreachable database) rejects here instead.
    return { runId: await Promise.race([runId, run.then(() => runId)]), already: false };
  }

  /** SIGTERM: the runs let their batches in flight finish and record themselves interrupted, as the CLI's do. */
  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.all([...this.inFlight.values()].map((f) => f.done));
  }

  private async pushMetrics(summary: RunSummary): Promise<void> {
    const { db, log, config, client } = this.deps;
    await pushRunMetrics({ db, log, pushgatewayUrl: config.pushgatewayUrl, lowMatchRate: config.lowMatchRate }, summary, client.lifecycle()).catch(
      (error: unknown) => log.warn({ error: oneLine(error) }, 'could not push metrics'),
    );
  }
}

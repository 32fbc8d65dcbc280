import type { CriteoSettings } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { openRateBudget, type EndedSlot, type RateBudgetStore } from '../db/rate-budget.js';
import { RateLimiter, sleep, type CallRateLimiter, type RatePermit } from './rate-limiter.js';
import { callDeadlineMs } from './transport.js';

/** A slot of the shared budget granted (from `startAt`), or a permit of the local share. */
type Turn = { slotId: string; startAt: number } | { permit: RatePermit };

/**
 * One rate budget per Criteo app across processes. Criteo counts calls per
 * client id: the nightly run, a CSM's resync and a second pod, each with a
 * budget of its own, would together overshoot it. The budget is held in
 * Postgres (audience_sync.rate_slots, see src/db/rate-budget.ts), keyed by
 * the client id's hash, so that any number of processes keep within
 * CRITEO_MAX_CALLS_PER_MINUTE together.
 *
 * Each slot keeps RateLimiter's guarantee: held from its grant until a window
 * after its call ended, so no server window holds more than the limit of the
 * app's calls. A slot whose call never reports its end (a killed process)
 * frees at its hold bound: the longest a live call lasts, plus a window.
 * One statement grants a slot for each call queued in the process, and
 * records the ends of the process's calls that ended since its last grant;
 * ends that no grant follows within a twentieth of the window (a quarter of a
 * second at most) are recorded on their own. Each end is recorded as the
 * time since the call ended, so its slot frees a window after the call's
 * real end; until the end is recorded the slot is held. When every slot is held, the database grants the slots
 * about to free (within a tenth of the window, at most a second) from the
 * instants they free, and each call sleeps until its own: queued calls start
 * as the slots free, as the local limiter's do, and the budget's pace never
 * falls behind the calls'. Further off, the one caller per process that asks
 * (grants are taken in order) sleeps until a slot is within reach: waiting
 * costs a statement per grant, not a poll.
 *
 * Beside the shared budget, a local RateLimiter counts this process's own
 * calls. When the budget's statements fail (the database is lost), the
 * process keeps to a local share of the limit, counted on that local limiter
 * (so calls made just before the loss count), logs one line, and asks the
 * database again every few seconds; when it answers, the calls made meanwhile
 * are recorded in the budget and the process draws on it again. The share is
 * limit / CRITEO_RATE_FALLBACK_PROCESSES (default 2): the database is shared,
 * so its loss usually stops every process at once, and then that many
 * processes together still stay within the limit. A run and a CSM's resync is
 * the usual overlap; more pods call for a larger setting.
 *
 * A 429 lowers this process's limit (RateLimiter.slowDown), which it then
 * asks the budget for: every process that hears 429s slows down; the budget
 * is not lowered for processes that hear none.
 */
export class SharedRateLimiter implements CallRateLimiter {
  /** This process's own calls: under the shared budget it never waits; without it, it holds the local share. */
  private readonly own: RateLimiter;
  private queue: Promise<unknown> = Promise.resolve();
  private shared = true;
  private lastProbe = Number.NEGATIVE_INFINITY;
  /** Calls made while on the local share and not yet recorded in the budget: their ends (local clock), and how many still run. */
  private localEnds: number[] = [];
  private localRunning = 0;
  /** Counts the returns to the shared budget: a local call granted before the last one was recorded then. */
  private returns = 0;
  /** Calls that asked for a slot and have none yet. */
  private waiting = 0;
  /** Slots granted for calls queued behind the one that asked, in order. */
  private granted: { slotId: string; startAt: number }[] = [];
  /** When the budget said to ask again (local clock): the next take waits until then. */
  private nextAskAt = 0;
  /** Calls ended and not yet recorded: they ride on the next grant, or are recorded on their own (flushEnds). */
  private ended: EndedSlot[] = [];
  private endsTimer: NodeJS.Timeout | undefined;
  /** Statements ending slots, awaited by close(). */
  private readonly ending = new Set<Promise<void>>();

  constructor(
    private readonly budget: RateBudgetStore,
    readonly limit: number,
    private readonly log: Logger,
    readonly options: { windowMs?: number; fallbackProcesses?: number; probeEveryMs?: number } = {},
  ) {
    this.own = new RateLimiter(limit, options.windowMs ?? 60_000);
  }

  get windowMs(): number {
    return this.own.windowMs;
  }

  /** The calls a window this process keeps to while the budget cannot be reached. */
  get localShare(): number {
    return Math.max(1, Math.floor(this.limit / (this.options.fallbackProcesses ?? 2)));
  }

  get effectiveLimit(): number {
    return this.own.effectiveLimit;
  }

  /** Whether the process draws on the shared budget now (false: it keeps to its local share). */
  get usingSharedBudget(): boolean {
    return this.shared;
  }

  acquire(): Promise<RatePermit> {
    const started = Date.now();
    // Grants are taken in order; a slot granted ahead of its freeing is waited for outside the queue,
    // so the next caller's grant is taken meanwhile.
    this.waiting++;
    const turn = this.queue.then(() => this.waitForTurn(started));
    this.queue = turn.catch(() => undefined);
    return turn.then((granted) => ('permit' in granted ? granted.permit : this.startShared(granted, started)));
  }

  slowDown(): boolean {
    return this.own.slowDown();
  }

  restore(): void {
    this.own.restore();
    this.nextAskAt = 0;
  }

  async close(): Promise<void> {
    this.flushEnds();
    await Promise.all([...this.ending]);
    await this.budget.close();
  }

  private async waitForTurn(started: number): Promise<Turn> {
    try {
      const ready = this.granted.shift();
      if (ready) return ready;
      if (!this.shared && Date.now() - this.lastProbe >= (this.options.probeEveryMs ?? 5_000)) await this.tryShared();
      if (this.shared) {
        const reserved = await this.takeShared();
        if (reserved) return reserved;
      }
      return { permit: await this.localPermit(started) };
    } finally {
      this.waiting--;
    }
  }

  /** A slot of the shared budget, once it is ours: from `startAt` on, it holds this process's call. */
  private async startShared(reserved: { slotId: string; startAt: number }, started: number): Promise<RatePermit> {
    const ahead = reserved.startAt - Date.now();
    if (ahead > 0) await sleep(ahead);
    return this.sharedPermit(reserved.slotId, await this.own.acquire(), started);
  }

  /** A slot of the local share: counted for the budget when the database answers again. */
  private async localPermit(started: number): Promise<RatePermit> {
    const permit = await this.own.acquire();
    const grantedIn = this.returns;
    this.localRunning++;
    return releasedOnce(permit, started, () => {
      if (grantedIn !== this.returns) return;
      this.localRunning--;
      const now = Date.now();
      if (this.localEnds.length >= 1024) this.localEnds = this.localEnds.filter((end) => end + this.windowMs > now);
      this.localEnds.push(now);
    });
  }

  /** Waits for a slot of the shared budget; undefined when the database failed (the process is then on its local share). */
  private async takeShared(): Promise<{ slotId: string; startAt: number } | undefined> {
    for (;;) {
      const ahead = this.nextAskAt - Date.now();
      if (ahead > 0) await sleep(ahead);
      const asked = Date.now();
      let answer;
      try {
        // A slot for each call queued here: they are waiting already, so every slot granted is used.
        // If this fails, the ends it carries are not recorded: their slots free at their hold bound, which is later.
        answer = await this.budget.take(Math.max(1, this.waiting), this.own.effectiveLimit, this.takeEnds());
      } catch (error) {
        this.lose(error);
        return undefined;
      }
      // A start counted from the answer is no sooner than the database meant; a wait counted from the asking wakes no later.
      const answered = Date.now();
      const [first, ...rest] = answer.slots.map((slot) => ({ slotId: slot.slotId, startAt: answered + slot.startInMs }));
      if (first) {
        this.granted.push(...rest);
        return first;
      }
      this.nextAskAt = asked + answer.waitMs;
    }
  }

  private sharedPermit(slotId: string, ownPermit: RatePermit, started: number): RatePermit {
    return releasedOnce(ownPermit, started, () => {
      this.ended.push({ slotId, endedAt: Date.now() });
      this.endsTimer ??= setTimeout(() => this.flushEnds(), Math.min(250, this.windowMs / 20)).unref();
    });
  }

  /** The ends kept so far, taken to be recorded. */
  private takeEnds(): EndedSlot[] {
    clearTimeout(this.endsTimer);
    this.endsTimer = undefined;
    return this.ended.splice(0);
  }

  /** Records the ends no grant carried. If this fails, the slots free at their hold bound, later than end + a window: still safe. */
  private flushEnds(): void {
    const ended = this.takeEnds();
    if (ended.length === 0) return;
    const ending = this.budget.end(ended).catch((error: unknown) => this.lose(error));
    this.ending.add(ending);
    void ending.finally(() => this.ending.delete(ending));
  }

  /** The budget's database failed: keep to the local share, counting the calls already made, and say so once. */
  private lose(error: unknown): void {
    this.lastProbe = Date.now();
    if (!this.shared) return;
    this.shared = false;
    this.nextAskAt = 0;
    this.own.capAt(this.localShare);
    const code = (error as { code?: string }).code;
    this.log.warn(
      { code, error: error instanceof Error ? error.message : String(error), localShare: this.localShare },
      `rate budget: the shared budget in the database cannot be used; keeping to ${this.localShare} calls a window until it can`,
    );
  }

  /** Asks the database again; if it answers, records the calls made on the local share and draws on the budget again. */
  private async tryShared(): Promise<void> {
    const now = Date.now();
    this.lastProbe = now;
    const remaining = this.localEnds.map((end) => end + this.windowMs - now).filter((ms) => ms > 0);
    try {
      await this.budget.carryOver(remaining, this.localRunning);
    } catch {
      return;
    }
    this.localEnds = [];
    // Calls still running on the local share were recorded held to the hold bound; their ends stay local.
    this.localRunning = 0;
    this.returns++;
    this.shared = true;
    this.own.capAt(undefined);
    this.log.info({ carriedOver: remaining.length }, 'rate budget: the database answers again; back to the shared budget');
  }
}

/**
 * The limiter of a process that reaches the database at `databaseUrl`: the
 * app's shared budget, with slots of calls that never end freed after the
 * longest a live call lasts (a token request and the API request, each to its
 * deadline) plus a window.
 */
export function sharedRateLimiter(settings: CriteoSettings, databaseUrl: string, log: Logger, windowMs = 60_000): SharedRateLimiter {
  const holdMs = 2 * callDeadlineMs(settings) + windowMs;
  const budget = openRateBudget(databaseUrl, settings.clientId, { windowMs, holdMs });
  return new SharedRateLimiter(budget, settings.maxCallsPerMinute, log, { windowMs, fallbackProcesses: settings.rateFallbackProcesses });
}

/** A permit over the process's own permit: the first release frees it and then runs `afterRelease`; later ones do nothing. */
function releasedOnce(own: RatePermit, started: number, afterRelease: () => void): RatePermit {
  let released = false;
  return {
    waitedMs: Date.now() - started,
    release: () => {
      if (released) return;
      released = true;
      own.release();
      afterRelease();
    },
  };
}

import { createHash } from 'node:crypto';
import pg from 'pg';

/**
 * A Criteo app's rate budget as Postgres holds it (audience_sync.rate_slots,
 * migrations 0010 and 0015), for every process using the app's credentials
 * to draw on. One statement takes slots (or says how long until one may
 * free) and records the ends of the calls that ended since the last; ends
 * with no take to ride on are recorded on their own. The database's clock
 * stamps every grant, end and expiry (an end as the milliseconds since it
 * happened, which no clock difference changes), so processes on hosts whose
 * clocks differ still agree.
 */

/** A slot granted, to use from `startInMs` after the answer arrived (0: at once). */
export interface GrantedSlot {
  slotId: string;
  startInMs: number;
}

/** The slots granted, in the order they free; with none, how long to wait before asking again. */
export interface SlotAnswer {
  slots: GrantedSlot[];
  waitMs: number;
}

/** A slot whose call ended at `endedAt` (this process's clock, ms). */
export interface EndedSlot {
  slotId: string;
  endedAt: number;
}

export interface RateBudgetStore {
  /**
   * Records the `ended` calls' ends, then takes up to `count` slots, free or about to free, while fewer than
   * `limit` are held; else says when to ask again.
   */
  take(count: number, limit: number, ended: readonly EndedSlot[]): Promise<SlotAnswer>;
  /** The calls ended: each slot stays held for a window from its call's end, then frees. */
  end(ended: readonly EndedSlot[]): Promise<void>;
  /**
   * Records calls made while the budget could not be reached, so the others
   * count them: ended calls with the milliseconds their holds have left, and
   * calls still running (held to the hold bound).
   */
  carryOver(remainingMs: readonly number[], running: number): Promise<void>;
  close(): Promise<void>;
}

/** How the budget names an app: the SHA-256 hex of its client id, so the table holds no credential. */
export function rateBudgetKey(clientId: string): string {
  return createHash('sha256').update(clientId, 'utf8').digest('hex');
}

export interface RateBudgetOptions {
  /** The window Criteo counts calls in. */
  windowMs: number;
  /** How long a granted slot is held if its call never reports its end: the longest a live call lasts, plus a window. */
  holdMs: number;
  /** How far ahead a slot about to free may be granted (default a tenth of the window, at most 1 s). */
  aheadMs?: number;
}

export class PostgresRateBudget implements RateBudgetStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly key: string,
    private readonly options: RateBudgetOptions,
  ) {}

  async take(count: number, limit: number, ended: readonly EndedSlot[] = []): Promise<SlotAnswer> {
    const { windowMs, holdMs, aheadMs } = this.options;
    const [slots, agoMs] = endsOf(ended);
    const { rows } = await this.pool.query<{ granted_slots: string[]; start_in_ms: number[]; wait_ms: number }>(
      'SELECT granted_slots::text[], start_in_ms, wait_ms FROM audience_sync.take_rate_slots($1, $2, $3, $4, $5, $6, $7, $8, $9)',
      [
        this.key,
        count,
        limit,
        Math.ceil(windowMs),
        Math.ceil(holdMs),
        Math.ceil(aheadMs ?? Math.min(1_000, windowMs / 10)),
        windowMs / limit / 4,
        slots,
        agoMs,
      ],
    );
    const row = rows[0]!;
    return { slots: row.granted_slots.map((slotId, i) => ({ slotId, startInMs: row.start_in_ms[i] ?? 0 })), waitMs: row.wait_ms };
  }

  async end(ended: readonly EndedSlot[]): Promise<void> {
    if (ended.length === 0) return;
    const [slots, agoMs] = endsOf(ended);
    await this.pool.query('SELECT audience_sync.end_rate_slots($1, $2, $3, $4)', [this.key, slots, agoMs, Math.ceil(this.options.windowMs)]);
  }

  async carryOver(remainingMs: readonly number[], running: number): Promise<void> {
    if (remainingMs.length === 0 && running === 0) return;
    // Ended calls' expiries are final (ended_at set); running ones are held to the hold bound.
    await this.pool.query(
      `INSERT INTO audience_sync.rate_slots (client_key, granted_at, ended_at, expires_at)
       SELECT $1, clock_timestamp(), clock_timestamp(), clock_timestamp() + ms * interval '1 millisecond' FROM unnest($2::integer[]) AS ms
       UNION ALL
       SELECT $1, clock_timestamp(), NULL, clock_timestamp() + $4 * interval '1 millisecond' FROM generate_series(1, $3::integer)`,
      [this.key, remainingMs.map((ms) => Math.ceil(ms)), running, Math.ceil(this.options.holdMs)],
    );
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Ended slots as the budget's functions take them: ids, and milliseconds since each call ended (counted down, never up). */
function endsOf(ended: readonly EndedSlot[]): [string[], number[]] {
  const now = Date.now();
  return [ended.map((e) => e.slotId), ended.map((e) => Math.max(0, Math.floor(now - e.endedAt)))];
}

/**
 * The budget of the app `clientId` in the database at `databaseUrl`, on a
 * pool of its own: the sync's statements never make a grant queue for a
 * connection, and a lost database shows within seconds (connect and
 * statement timeouts) rather than after a hung socket's minutes.
 */
export function openRateBudget(databaseUrl: string, clientId: string, options: RateBudgetOptions): PostgresRateBudget {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    // A grant and the ends of the calls in flight at once: the grant, on the critical path, seldom queues.
    max: 3,
    application_name: 'audience-sync rate budget',
    connectionTimeoutMillis: 5_000,
    query_timeout: 5_000,
    idleTimeoutMillis: 60_000,
  });
  // A lost connection surfaces as the failed statement; the events alone must not crash the process.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return new PostgresRateBudget(pool, rateBudgetKey(clientId), options);
}

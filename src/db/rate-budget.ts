import { createHash } from 'node:crypto';
import pg from 'pg';

/**
 * A Criteo app's rate budget as Postgres holds it (audience_sync.rate_slots,
 * migration 0010), for every process using the app's credentials to draw on.
 * One statement takes slots (or says how long until one may free), one ends
 * each. The database's clock stamps every grant, end and expiry, so processes on
 * hosts whose clocks differ still agree.
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

export interface RateBudgetStore {
  /** Takes up to `count` slots, free or about to free, while fewer than `limit` are held; else says when to ask again. */
  take(count: number, limit: number): Promise<SlotAnswer>;
  /** The call ended: its slot stays held for a window from now, then frees. */
  end(slotId: string): Promise<void>;
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

  async take(count: number, limit: number): Promise<SlotAnswer> {
    const { windowMs, holdMs, aheadMs } = this.options;
    const { rows } = await this.pool.query<{ granted_slots: string[]; start_in_ms: number[]; wait_ms: number }>(
      'SELECT granted_slots::text[], start_in_ms, wait_ms FROM audience_sync.take_rate_slots($1, $2, $3, $4, $5, $6, $7)',
      [this.key, count, limit, Math.ceil(windowMs), Math.ceil(holdMs), Math.ceil(aheadMs ?? Math.min(1_000, windowMs / 10)), windowMs / limit / 4],
    );
    const row = rows[0]!;
    return { slots: row.granted_slots.map((slotId, i) => ({ slotId, startInMs: row.start_in_ms[i] ?? 0 })), waitMs: row.wait_ms };
  }

  async end(slotId: string): Promise<void> {
    // A row already cleaned up (its call outlived the hold bound) is put back: the call counts for a window from its end.
    await this.pool.query(
      `WITH ended AS (
         UPDATE audience_sync.rate_slots SET ended_at = clock_timestamp(), expires_at = clock_timestamp() + $3 * interval '1 millisecond'
         WHERE slot_id = $1 RETURNING 1)
       INSERT INTO audience_sync.rate_slots (client_key, granted_at, ended_at, expires_at)
       SELECT $2, clock_timestamp(), clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond'
       WHERE NOT EXISTS (SELECT FROM ended)`,
      [slotId, this.key, Math.ceil(this.options.windowMs)],
    );
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

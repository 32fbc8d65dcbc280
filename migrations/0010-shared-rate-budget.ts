import { sql, type Kysely } from 'kysely';

/**
 * One rate budget per Criteo application, shared by every process that holds
 * its credentials. Criteo counts calls per client id, so the nightly run, a
 * CSM's resync and a second pod draw on one budget.
 *
 * rate_slots holds one row per call that holds a slot: granted, running or
 * ended less than a window ago. client_key is the SHA-256 hex of the client
 * id (no credential is stored). A running call's row expires at its hold
 * bound (the longest a live call lasts, plus a window), so the slots of a
 * process killed mid-call free themselves; the call's end moves its expiry to
 * its end + the window. Times are the database's clock, the one clock every
 * process shares.
 *
 * take_rate_slots grants up to `p_count` slots in one statement (one per
 * call a process has queued): under an advisory lock per client key (class
 * 0x41530a, "AS" 10: see src/db/locks.ts) it deletes the key's expired rows,
 * counts the rest and, under the caller's limit, inserts the caller's rows.
 * When every slot is held and the next to free belongs to a call that has
 * ended (its expiry is final) and frees within `p_ahead_ms`, it grants that
 * slot from the instant it frees: the caller starts its call no sooner
 * (`start_in_ms`). Queued calls then start as the slots free, with no round
 * trip between them, and the budget's pace never falls behind the calls'.
 * Grants start at least `p_spacing_ms` apart (a quarter of the window's even
 * share: 75 ms at 200 a minute, so a window's calls spread over its first
 * 15 s), so the next window's calls, each freed a window after one of these
 * ended, can start at the same pace: a first burst faster than the later ones
 * would leave the windows between them short.
 * With nothing granted, `wait_ms` says how long until a slot is within reach.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE audience_sync.rate_slots (
      slot_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      client_key text NOT NULL,
      granted_at timestamptz NOT NULL,
      ended_at   timestamptz,
      expires_at timestamptz NOT NULL
    )`.execute(db);
  await sql`CREATE INDEX rate_slots_key_expiry ON audience_sync.rate_slots (client_key, expires_at)`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.take_rate_slots(
      p_client_key text, p_count integer, p_limit integer, p_window_ms integer, p_hold_ms integer, p_ahead_ms integer,
      p_spacing_ms double precision,
      OUT granted_slots bigint[], OUT start_in_ms integer[], OUT wait_ms integer)
    LANGUAGE plpgsql AS $fn$
    DECLARE
      taken_at timestamptz;
      held integer;
      frees_at timestamptz;
      settled boolean;
      starts_at timestamptz;
      last_start timestamptz;
      slot bigint;
    BEGIN
      -- 4281098 is 0x41530a, RATE_BUDGET_LOCK_CLASS in src/db/locks.ts.
      PERFORM pg_advisory_xact_lock(4281098, hashtext(p_client_key));
      -- Read after the lock: the instant the slots are granted at.
      taken_at := clock_timestamp();
      granted_slots := '{}';
      start_in_ms := '{}';
      wait_ms := 0;
      DELETE FROM audience_sync.rate_slots s WHERE s.client_key = p_client_key AND s.expires_at <= taken_at;
      SELECT count(*), max(s.granted_at) INTO held, last_start FROM audience_sync.rate_slots s WHERE s.client_key = p_client_key;
      FOR i IN 1..p_count LOOP
        IF held < p_limit THEN
          frees_at := taken_at;
          settled := true;
        ELSE
          -- A slot frees when the (held - limit + 1)-th earliest expiry passes. An ended call's
          -- expiry is final: when it is near, the slot is granted from then (its call starts no
          -- sooner). A running call's expiry moves to its end + a window, never sooner than a
          -- window from now.
          SELECT s.expires_at, s.ended_at IS NOT NULL INTO frees_at, settled FROM audience_sync.rate_slots s
          WHERE s.client_key = p_client_key ORDER BY s.expires_at OFFSET held - p_limit LIMIT 1;
        END IF;
        -- Grants start at least p_spacing_ms apart: a window's calls spread over a part of it, at a
        -- pace the next window can repeat (each call frees its slot a window after it ended).
        starts_at := greatest(frees_at, last_start + p_spacing_ms * interval '1 millisecond');
        IF NOT settled OR starts_at > taken_at + p_ahead_ms * interval '1 millisecond' THEN
          IF i = 1 THEN
            wait_ms := greatest(1, ceil(extract(epoch FROM least(starts_at, taken_at + p_window_ms * interval '1 millisecond') - taken_at) * 1000) - p_ahead_ms);
          END IF;
          RETURN;
        END IF;
        INSERT INTO audience_sync.rate_slots (client_key, granted_at, expires_at)
        VALUES (p_client_key, starts_at, starts_at + p_hold_ms * interval '1 millisecond')
        RETURNING slot_id INTO slot;
        granted_slots := granted_slots || slot;
        start_in_ms := start_in_ms || ceil(extract(epoch FROM starts_at - taken_at) * 1000)::integer;
        held := held + 1;
        last_start := starts_at;
      END LOOP;
    END
    $fn$`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

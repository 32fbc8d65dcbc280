import { sql, type Kysely } from 'kysely';

/**
 * A call's end, told with the process's next grant. Ending each call's slot
 * took a statement of its own, half of the budget's statements. A process
 * now keeps its calls' ends and sends them with its next take, or on their
 * own when no take follows within a fraction of the window (see
 * src/criteo/shared-rate-limiter.ts).
 *
 * end_rate_slots records each end as `ago_ms` before the statement, by the
 * database's clock, so the slot frees a window after its call really ended:
 * a late end only holds the slot longer meanwhile, never shorter. A slot
 * whose row is gone (its call outlived the hold bound) is put back, held for
 * a window from its end, as before.
 *
 * take_rate_slots gains the ended slots, recorded before the grant counts
 * what is held. The version without them stays, for processes of the
 * previous release while a deployment rolls over.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION audience_sync.end_rate_slots(p_client_key text, p_slots bigint[], p_ago_ms integer[], p_window_ms integer)
    RETURNS void LANGUAGE plpgsql AS $fn$
    BEGIN
      -- PL/pgSQL rather than SQL: its statement's plan is kept for the session, not made again at every call.
      WITH ended AS (
        SELECT e.slot_id, clock_timestamp() - e.ago_ms * interval '1 millisecond' AS ended_at
        FROM unnest(p_slots, p_ago_ms) AS e(slot_id, ago_ms)
      ),
      updated AS (
        UPDATE audience_sync.rate_slots s SET ended_at = e.ended_at, expires_at = e.ended_at + p_window_ms * interval '1 millisecond'
        FROM ended e WHERE s.slot_id = e.slot_id
        RETURNING s.slot_id
      )
      INSERT INTO audience_sync.rate_slots (client_key, granted_at, ended_at, expires_at)
      SELECT p_client_key, e.ended_at, e.ended_at, e.ended_at + p_window_ms * interval '1 millisecond'
      FROM ended e WHERE e.slot_id NOT IN (SELECT slot_id FROM updated);
    END
    $fn$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.take_rate_slots(
      p_client_key text, p_count integer, p_limit integer, p_window_ms integer, p_hold_ms integer, p_ahead_ms integer,
      p_spacing_ms double precision, p_ended_slots bigint[], p_ended_ago_ms integer[],
      OUT granted_slots bigint[], OUT start_in_ms integer[], OUT wait_ms integer)
    LANGUAGE plpgsql AS $fn$
    BEGIN
      IF cardinality(p_ended_slots) > 0 THEN
        PERFORM audience_sync.end_rate_slots(p_client_key, p_ended_slots, p_ended_ago_ms, p_window_ms);
      END IF;
      SELECT t.granted_slots, t.start_in_ms, t.wait_ms INTO granted_slots, start_in_ms, wait_ms
      FROM audience_sync.take_rate_slots(p_client_key, p_count, p_limit, p_window_ms, p_hold_ms, p_ahead_ms, p_spacing_ms) t;
    END
    $fn$`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

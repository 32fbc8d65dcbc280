import { sql, type RawBuilder } from 'kysely';
import { unreadChanges, type SourceRead } from './change-log.js';
import { mappedKeys } from './run-changes.js';
import { probingNoMore, type Db } from '../db/connection.js';
import { attachedSnapshotTable, fingerprint, snapshotTable, stateWithoutEmail, targetGroupsWithCustomers } from './snapshot-table.js';
import { dropKeptTargetChanges, keepTargetChanges, LOGGED_CHANGES, LOGGED_KEYS, TARGET_CHANGES, TOUCHED_IDENTIFIERS } from '../db/temp-tables.js';

/**
 * The snapshot of a list's target groups (list_targets): one row per active
 * campaign and customer, as the list was last planned from, with a 64-bit
 * fingerprint of the customer's email and the identifier recipe's verdict.
 * Each list's rows are a table of their own, an unlogged partition of
 * list_targets, which the list's first plan creates (writeNewSnapshot).
 *
 * A day's refresh reads the source once, in one parallel statement, and
 * keeps only the rows that are new, gone, or whose email changed; only those
 * are validated and hashed (in Postgres: raw emails never reach the job).
 * The identifiers they touch are the only ones whose membership can have
 * changed, which is what lets an in-step list be diffed on them alone.
 *
 * The funnel counters (list_target_counts, lists.identifiers) change in the
 * same transaction as the rows: per campaign, and for the list with each
 * customer counted once. A refresh that is not incremental recounts them.
 * Every function here runs inside the plan's transaction (see planList).
 */

/**
 * Up to this many rows, a temporary table goes without ANALYZE: a table never
 * analyzed is planned by its size on disk, which is enough to look its rows
 * up by index, and an ANALYZE would cost more than the statement it informs.
 */
const FEW_ROWS = 1000;

/** A read of the run's map of FEW_ROWS keys or fewer: its changed rows go into the kept table, uncounted and unanalyzed. */
const fewMappedKeys = (read: { mappedKeys?: number | undefined }) => read.mappedKeys !== undefined && read.mappedKeys <= FEW_ROWS;

/** The state a changed row gets: the CTAS leaves it NULL for rows with an email, decided here by the identifier. */
const newState = sql`coalesce(c.new_state, CASE WHEN c.new_identifier IS NULL THEN 'invalid' ELSE 'valid' END)`;

/**
 * Finds the rows that differ between the source and the snapshot and writes
 * them to a temporary table: from the keys the change log names, or by
 * reading the whole target group (see change-log.ts for which). The plan
 * turned JIT compiling off with its snapshot (takeSourceSnapshot). Returns
 * how many rows changed when it counted them (null: applyChangedTargets does).
 */
export async function findChangedTargets(tx: Db, segmentId: string, activeCampaignIds: readonly string[], read: SourceRead): Promise<number | null> {
  // The plan prices index probes as on a cached database from its snapshot on (refreshSnapshot).
  await (read.kind === 'changes' ? compareLoggedKeys(tx, segmentId, activeCampaignIds, read) : compareWholeTargetGroup(tx, segmentId, activeCampaignIds, read));
  // A list the run mapped is small beside the day's log: the rest of its plan handles as few rows, up to a whole
  // diff. A big list's day may be a hundred thousand keys, and a whole read millions: the rest of their plan is
  // priced statement by statement.
  if (read.kind === 'whole' || read.mappedBy === undefined) await probingNoMore(tx);
  // Statistics for the statements that read the changes: a handful of rows on most days, millions on the first. The
  // run's map names few enough keys for a list it mapped, most days, to know there is no need.
  if (read.kind === 'changes' && fewMappedKeys(read)) return null;
  const { rows } = await sql<{ n: number }>`SELECT count(*)::bigint AS n FROM ${TARGET_CHANGES}`.execute(tx);
  const changedRows = Number(rows[0]!.n);
  if (changedRows > FEW_ROWS) await sql`ANALYZE ${TARGET_CHANGES}`.execute(tx);
  return changedRows;
}

/** A changed row's old state and identifier: filled in from the snapshot row it replaces (applyChangedTargets). */
const unreplaced = sql`NULL::text AS old_state, NULL::bytea AS old_identifier`;

/**
 * The rows the change log names since the snapshot last read it: target-group
 * rows written, and every snapshot row of a customer written. Each is looked
 * up by key in the source and the snapshot, and kept if it is new, gone or
 * its email changed; the same rows, with the same columns, the whole read
 * would find.
 */
async function compareLoggedKeys(
  tx: Db,
  segmentId: string,
  activeCampaignIds: readonly string[],
  read: { from: string; seen: string; mappedBy?: number | undefined; mappedKeys?: number | undefined; changesKept: boolean },
): Promise<void> {
  // The run's map of the log holds the list's keys already (run-changes.ts); otherwise they are read from the log.
  const keys = read.mappedBy !== undefined ? sql`(${mappedKeys(read.mappedBy, segmentId)})` : LOGGED_KEYS;
  if (read.mappedBy === undefined) await findLoggedKeys(tx, segmentId, activeCampaignIds, read);
  const few = fewMappedKeys(read);
  // A few keys (most lists, most days) go into the session's kept table: creating and dropping a table costs more
  // than reading them (see keepTargetChanges). More get a table of their own, with statistics (findChangedTargets).
  if (few && !read.changesKept) await keepTargetChanges(tx);
  if (!few && read.changesKept) await dropKeptTargetChanges(tx);
  await sql`
    ${few ? sql`INSERT INTO ${TARGET_CHANGES}` : sql`CREATE TEMP TABLE ${TARGET_CHANGES} ON COMMIT DROP AS`}
    SELECT k.campaign_id, k.customer_id, t.customer_id IS NOT NULL AS known, tg.customer_id IS NOT NULL AS present,
           CASE WHEN tg.customer_id IS NOT NULL THEN ${fingerprint} END AS new_fingerprint,
           CASE WHEN tg.customer_id IS NOT NULL THEN ${stateWithoutEmail} END AS new_state,
           CASE WHEN tg.customer_id IS NOT NULL THEN audience_sync.email_identifier(cu.email) END AS new_identifier,
           ${unreplaced}
    FROM ${keys} k
    LEFT JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = k.campaign_id AND tg.customer_id = k.customer_id
    LEFT JOIN audience_sync.customers cu ON cu.customer_id = k.customer_id
    LEFT JOIN audience_sync.list_targets t
      ON t.audience_segment_id = ${segmentId}::bigint AND t.customer_id = k.customer_id AND t.campaign_id = k.campaign_id
    WHERE CASE WHEN tg.customer_id IS NULL THEN t.customer_id IS NOT NULL
               ELSE t.customer_id IS NULL OR t.email_fingerprint IS DISTINCT FROM ${fingerprint} END`.execute(tx);
}

/** The (campaign, customer) keys the log names for the list since its snapshot last read it, from the log itself. */
async function findLoggedKeys(tx: Db, segmentId: string, activeCampaignIds: readonly string[], read: { from: string; seen: string }): Promise<void> {
  // The window first, with its own statistics, so the planner looks the keys up by index however stale the log's are.
  await sql`
    CREATE TEMP TABLE ${LOGGED_CHANGES} ON COMMIT DROP AS
    SELECT DISTINCT campaign_id, customer_id FROM audience_sync.source_changes
    WHERE ${unreadChanges(read)} AND customer_id IS NOT NULL`.execute(tx);
  await sql`ANALYZE ${LOGGED_CHANGES}`.execute(tx);
  await sql`
    CREATE TEMP TABLE ${LOGGED_KEYS} ON COMMIT DROP AS
    SELECT campaign_id, customer_id FROM ${LOGGED_CHANGES} WHERE campaign_id = ANY(${activeCampaignIds}::text[])
    UNION
    SELECT t.campaign_id, t.customer_id FROM ${LOGGED_CHANGES} c
    JOIN audience_sync.list_targets t ON t.audience_segment_id = ${segmentId}::bigint AND t.customer_id = c.customer_id
    WHERE c.campaign_id IS NULL
    -- In key order, so that the probes below and the snapshot's own updates walk each index forward.
    ORDER BY customer_id, campaign_id`.execute(tx);
  await sql`ANALYZE ${LOGGED_KEYS}`.execute(tx);
}

/**
 * The whole target group, in one parallel statement: the list's target
 * groups joined to customers, compared with the snapshot, keeping the rows
 * that are new, gone (or whose campaign is no longer active) or whose email
 * changed. Postgres 16 and later compare them in one parallel full hash
 * join; Postgres 15 runs a full join serially, so there the target groups
 * are left-joined to the snapshot and the snapshot anti-joined to them, two
 * parallel passes (1.16 s against 1.66 s at a million rows on Postgres 18;
 * see docs/BENCHMARKS.md). With `rejudge` (the email rule changed), a row
 * whose email has a character beyond ASCII counts as changed too, so the
 * new rule judges it.
 */
async function compareWholeTargetGroup(
  tx: Db,
  segmentId: string,
  activeCampaignIds: readonly string[],
  { rejudge, changesKept }: { rejudge: boolean; changesKept: boolean },
): Promise<void> {
  // The changed rows are few and the planner cannot know it: cheap tuple
  // transfer lets it keep the pass parallel, as CREATE TABLE AS allows. Index
  // probes priced as on a cached or solid-state database let a small list look
  // its customers up rather than scan them all (150 ms to 10 ms for 3,500 rows
  // of 1.1M customers); a big list's pass stays a parallel scan either way.
  // (The plan's snapshot set the probes' price; probingNoMore resets both after this statement.)
  const { rows } = await sql<{ version: number }>`
    SELECT set_config('parallel_tuple_cost', '0.001', true), current_setting('server_version_num')::int AS version`.execute(tx);
  if (changesKept) await dropKeptTargetChanges(tx);
  const compare = rows[0]!.version >= PARALLEL_FULL_HASH_JOIN ? comparedInOnePass : comparedInTwoPasses;
  await sql`CREATE TEMP TABLE ${TARGET_CHANGES} ON COMMIT DROP AS ${compare(segmentId, activeCampaignIds, rejudge)}`.execute(tx);
}

/** server_version_num of the first Postgres with a parallel full hash join. */
const PARALLEL_FULL_HASH_JOIN = 160000;

/** The list's snapshot rows: only the keys and the fingerprint, a narrow hash. A changed row's old values come back with its DELETE (applyChangedTargets). */
const snapshotKeys = (segmentId: string) => sql`
  SELECT customer_id, campaign_id, email_fingerprint FROM audience_sync.list_targets WHERE audience_segment_id = ${segmentId}::bigint`;

/** The rows of a whole read on Postgres 16 and later: the target groups, joined to customers, full-joined to the snapshot. */
function comparedInOnePass(segmentId: string, activeCampaignIds: readonly string[], rejudge: boolean) {
  return sql`
    SELECT coalesce(g.campaign_id, t.campaign_id) AS campaign_id, coalesce(g.customer_id, t.customer_id) AS customer_id,
           t.customer_id IS NOT NULL AS known, g.customer_id IS NOT NULL AS present,
           g.fingerprint AS new_fingerprint, g.state AS new_state,
           CASE WHEN g.customer_id IS NOT NULL THEN audience_sync.email_identifier(g.email) END AS new_identifier,
           ${unreplaced}
    FROM (
      SELECT tg.campaign_id, tg.customer_id, cu.email, ${fingerprint} AS fingerprint, ${stateWithoutEmail} AS state
      FROM ${targetGroupsWithCustomers(activeCampaignIds)}
    ) g
    FULL JOIN (${snapshotKeys(segmentId)}) t ON t.customer_id = g.customer_id AND t.campaign_id = g.campaign_id
    WHERE g.customer_id IS NULL OR t.customer_id IS NULL OR t.email_fingerprint IS DISTINCT FROM g.fingerprint
      ${rejudge ? sql`OR g.email ~ '[^\x01-\x7f]'` : sql``}`;
}

/** The same rows on Postgres 15: the target groups left-joined to the snapshot, and the snapshot's rows they lack. */
function comparedInTwoPasses(segmentId: string, activeCampaignIds: readonly string[], rejudge: boolean) {
  return sql`
    SELECT tg.campaign_id, tg.customer_id, t.customer_id IS NOT NULL AS known, true AS present,
           ${fingerprint} AS new_fingerprint,
           ${stateWithoutEmail} AS new_state,
           audience_sync.email_identifier(cu.email) AS new_identifier,
           ${unreplaced}
    FROM audience_sync.campaign_target_groups tg
    LEFT JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
    LEFT JOIN (${snapshotKeys(segmentId)}) t ON t.customer_id = tg.customer_id AND t.campaign_id = tg.campaign_id
    WHERE tg.campaign_id = ANY(${activeCampaignIds}::text[])
      AND (t.customer_id IS NULL
           OR t.email_fingerprint IS DISTINCT FROM ${fingerprint}
           ${rejudge ? sql`OR cu.email ~ '[^\x01-\x7f]'` : sql``})
    UNION ALL
    SELECT t.campaign_id, t.customer_id, true, false, NULL, NULL, NULL, NULL, NULL
    FROM audience_sync.list_targets t
    WHERE t.audience_segment_id = ${segmentId}::bigint
      AND NOT EXISTS (SELECT 1 FROM audience_sync.campaign_target_groups tg
                      WHERE tg.campaign_id = t.campaign_id AND tg.customer_id = t.customer_id
                        AND tg.campaign_id = ANY(${activeCampaignIds}::text[]))`;
}

/**
 * Applies the changed rows to the snapshot: gone and changed rows out (their
 * old state and identifier kept on the change, for the counters and the
 * diff), new and changed rows in. Returns how many rows changed: new, gone
 * or with a changed email (`counted`, when findChangedTargets counted them).
 */
export async function applyChangedTargets(tx: Db, segmentId: string, counted: number | null): Promise<number> {
  await sql`
    WITH replaced AS (
      DELETE FROM audience_sync.list_targets t USING ${TARGET_CHANGES} c
      WHERE t.audience_segment_id = ${segmentId}::bigint AND c.known
        AND t.customer_id = c.customer_id AND t.campaign_id = c.campaign_id
      RETURNING t.customer_id, t.campaign_id, t.email_state, t.identifier
    ),
    kept AS (
      UPDATE ${TARGET_CHANGES} c SET old_state = r.email_state, old_identifier = r.identifier
      FROM replaced r WHERE c.customer_id = r.customer_id AND c.campaign_id = r.campaign_id
    )
    SELECT 1`.execute(tx);
  const { rows } = await sql<{ n: number }>`
    WITH inserted AS (
      INSERT INTO audience_sync.list_targets (audience_segment_id, customer_id, campaign_id, email_fingerprint, email_state, identifier)
      SELECT ${segmentId}::bigint, c.customer_id, c.campaign_id, c.new_fingerprint, ${newState}, c.new_identifier
      FROM ${TARGET_CHANGES} c WHERE c.present
      ORDER BY c.customer_id, c.campaign_id
    )
    SELECT ${counted ?? sql`(SELECT count(*) FROM ${TARGET_CHANGES})`}::bigint AS n`.execute(tx);
  return Number(rows[0]!.n);
}

/**
 * Customers with a row the changes turned from an invalid email to a valid
 * one: after a change of email rule, the addresses it newly accepts.
 */
export async function countNewlyValidEmails(tx: Db): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    SELECT count(DISTINCT c.customer_id) AS n FROM ${TARGET_CHANGES} c
    WHERE c.known AND c.old_state = 'invalid' AND c.present AND c.new_identifier IS NOT NULL`.execute(tx);
  return Number(rows[0]!.n);
}

/**
 * After the changes: the identifiers they touch (a changed row's old and new
 * identifier) and whether the snapshot still holds each, as the diff reads
 * them. Nothing else can have entered or left the desired set.
 */
export async function findTouchedIdentifiers(tx: Db, segmentId: string, changedRows: number): Promise<TouchedIdentifiers> {
  const ids = sql`
    SELECT old_identifier AS identifier FROM ${TARGET_CHANGES} WHERE old_identifier IS NOT NULL
    UNION
    SELECT new_identifier FROM ${TARGET_CHANGES} WHERE present AND new_identifier IS NOT NULL
    -- In identifier order, so that these probes and the diff's, in the ledger, walk each index forward.
    ORDER BY 1`;
  const inSnapshot = sql`SELECT 1 FROM audience_sync.list_targets t WHERE t.audience_segment_id = ${segmentId}::bigint AND t.identifier = i.identifier`;
  if (changedRows <= FEW_ROWS) {
    // A few are read where the diff reads them, each looked up in the snapshot's identifier index: a scalar
    // subquery is never hashed, which the planner, with no statistics for the temporary tables, would otherwise
    // choose, reading the whole list. OFFSET 0 keeps the lookup to one per identifier (see materializePlan).
    return { identifiers: sql`(SELECT i.identifier, (${inSnapshot} LIMIT 1) IS NOT NULL AS desired FROM (${ids}) i OFFSET 0)`, few: true };
  }
  // More are written once, with statistics, so that the diff looks them up in the ledger's index rather than
  // reading the whole list.
  await sql`CREATE TEMP TABLE ${TOUCHED_IDENTIFIERS} ON COMMIT DROP AS SELECT i.identifier, EXISTS (${inSnapshot}) AS desired FROM (${ids}) i`.execute(tx);
  await sql`ANALYZE ${TOUCHED_IDENTIFIERS}`.execute(tx);
  return { identifiers: TOUCHED_IDENTIFIERS, few: false };
}

/** The touched identifiers as a relation (identifier, desired); `few`: a thousand or fewer, read inline. */
export interface TouchedIdentifiers {
  identifiers: RawBuilder<unknown>;
  few: boolean;
}

/**
 * Moves the funnel counters by what the changes did (after they are
 * applied): per campaign by rows; for the list by customers, each counted
 * once in the state of its row with the first campaign, in the list key's
 * order, as recountCounters takes it. A customer's rows agree but for a
 * while: a plan may read one of them with an email written after its
 * snapshot of the log, the others keeping theirs until the next plan reads
 * the email's change (RELIABILITY.md, point 20). So each touched customer's
 * state before and after is read from its first row, not assumed from the
 * changed ones, and the counters equal a recount from the snapshot after
 * every plan.
 */
export async function applyCounterDeltas(tx: Db, segmentId: string): Promise<void> {
  await sql`
    WITH changes AS (
      -- Per customer the changes touched: the first of the rows they took out, as ARRAY[campaign, old state], whose
      -- least is the first campaign's in the campaign's collation; and the campaigns of the rows they put in.
      SELECT c.customer_id, min(ARRAY[c.campaign_id, c.old_state]) FILTER (WHERE c.known) AS first_out,
             coalesce(array_agg(c.campaign_id) FILTER (WHERE c.present), '{}') AS put_in
      FROM ${TARGET_CHANGES} c GROUP BY c.customer_id
    ),
    states AS (
      -- Its first row now, and its first row the changes did not put in: looked up by the list's key, one probe a
      -- customer (an aggregate subquery, which the planner never turns into a read of the whole list).
      SELECT cur.first_row[2] AS after,
             (CASE WHEN ch.first_out IS NULL OR cur.first_kept < ch.first_out THEN cur.first_kept ELSE ch.first_out END)[2] AS before
      FROM changes ch
      CROSS JOIN LATERAL (
        SELECT min(ARRAY[t.campaign_id, t.email_state]) AS first_row,
               min(ARRAY[t.campaign_id, t.email_state]) FILTER (WHERE t.campaign_id <> ALL (ch.put_in)) AS first_kept
        FROM audience_sync.list_targets t WHERE t.audience_segment_id = ${segmentId}::bigint AND t.customer_id = ch.customer_id
      ) cur
    ),
    deltas AS (
      SELECT c.campaign_id AS scope, ${newState} AS email_state, 1 AS d FROM ${TARGET_CHANGES} c WHERE c.present
      UNION ALL
      SELECT c.campaign_id, c.old_state, -1 FROM ${TARGET_CHANGES} c WHERE c.known
      UNION ALL
      SELECT '', before, -1 FROM states WHERE before IS NOT NULL
      UNION ALL
      SELECT '', after, 1 FROM states WHERE after IS NOT NULL
    )
    INSERT INTO audience_sync.list_target_counts AS n (audience_segment_id, scope, email_state, n)
    SELECT ${segmentId}::bigint, scope, email_state, sum(d) FROM deltas GROUP BY scope, email_state
    ON CONFLICT (audience_segment_id, scope, email_state) DO UPDATE SET n = n.n + excluded.n`.execute(tx);
  // Counters the changes took to zero are deleted with the plan's record of the list (recordListAfterPlan).
}

/**
 * Counts the funnel afresh from the snapshot (after a refresh that was not
 * incremental), and its distinct identifiers unless the plan counts them.
 */
export async function recountCounters(tx: Db, segmentId: string, { identifiers = true }: { identifiers?: boolean } = {}): Promise<void> {
  await sql`DELETE FROM audience_sync.list_target_counts WHERE audience_segment_id = ${segmentId}::bigint`.execute(tx);
  await sql`
    INSERT INTO audience_sync.list_target_counts (audience_segment_id, scope, email_state, n)
    SELECT ${segmentId}::bigint, campaign_id, email_state, count(*) FROM audience_sync.list_targets
    WHERE audience_segment_id = ${segmentId}::bigint GROUP BY campaign_id, email_state
    UNION ALL
    SELECT ${segmentId}::bigint, '', s.email_state, s.n FROM (
      -- One pass over the customers with a counter for each state, not a second grouping of them by state.
      SELECT count(*) FILTER (WHERE email_state = 'no_customer') AS no_customer, count(*) FILTER (WHERE email_state = 'missing') AS missing,
             count(*) FILTER (WHERE email_state = 'invalid') AS invalid, count(*) FILTER (WHERE email_state = 'valid') AS valid
      FROM (
        -- Each customer once, in the state of its row with the first campaign (see applyCounterDeltas), in the order
        -- of the list's primary key, which carries the state (migration 0020): read from the key alone once the
        -- table is vacuumed (0.7 s to 0.3 s at a million rows), not sorted. The list's table by name, so that the
        -- planner takes its statistics, not list_targets' as a whole.
        SELECT DISTINCT ON (customer_id) email_state FROM ${sql.table(snapshotTable(segmentId))}
        WHERE audience_segment_id = ${segmentId}::bigint ORDER BY customer_id, campaign_id
      ) k
    ) c
    CROSS JOIN LATERAL (VALUES ('no_customer', c.no_customer), ('missing', c.missing), ('invalid', c.invalid), ('valid', c.valid)) s (email_state, n)
    WHERE s.n > 0`.execute(tx);
  if (!identifiers) return;
  await sql`
    UPDATE audience_sync.lists SET identifiers = (
      SELECT count(DISTINCT identifier) FROM audience_sync.list_targets
      WHERE audience_segment_id = ${segmentId}::bigint AND identifier IS NOT NULL)
    WHERE audience_segment_id = ${segmentId}::bigint`.execute(tx);
}

export interface ListState {
  /** The ledger equals the snapshot's identifiers: the last sync succeeded and nothing is uncertain. */
  inStep: boolean;
  /** Distinct identifiers of the snapshot as it stands (before this plan's changes). */
  identifiers: number;
  /** The list has its table of the snapshot, attached to list_targets: its first plan makes it (writeNewSnapshot). */
  snapshotTable: boolean;
  /**
   * The snapshot's rows are gone while its counters still count them: list_targets is unlogged (migration 0012),
   * and a Postgres crash or failover empties it. The plan then reads the whole target group and diffs the whole ledger.
   */
  snapshotLost: boolean;
}

/** The list's row, created on first use, locked for the plan's transaction. */
export async function lockListState(tx: Db, segmentId: string): Promise<ListState> {
  const { rows } = await sql<{ in_step: boolean; identifiers: number; snapshot_table: boolean; snapshot_lost: boolean }>`
    WITH snapshot AS (SELECT ${attachedSnapshotTable(segmentId)} AS has_table)
    INSERT INTO audience_sync.lists AS l (audience_segment_id) VALUES (${segmentId}::bigint)
    ON CONFLICT (audience_segment_id) DO UPDATE SET updated_at = now()
    RETURNING l.in_step, l.identifiers, (SELECT has_table FROM snapshot) AS snapshot_table,
      (EXISTS (SELECT 1 FROM audience_sync.list_target_counts k WHERE k.audience_segment_id = l.audience_segment_id AND k.n > 0)
       -- A table dropped by hand, after the list's snapshot had read the source.
       OR (l.changes_read_in IS NOT NULL AND NOT (SELECT has_table FROM snapshot)))
      -- The list's id as a value, not l's column: the planner then reads the list's own table of the snapshot alone.
      AND NOT EXISTS (SELECT 1 FROM audience_sync.list_targets t WHERE t.audience_segment_id = ${segmentId}::bigint) AS snapshot_lost`.execute(tx);
  const row = rows[0]!;
  return { inStep: row.in_step, identifiers: Number(row.identifiers), snapshotTable: row.snapshot_table, snapshotLost: row.snapshot_lost };
}

/** The list was emptied in Criteo: its snapshot and counters go with it, and the (empty) ledger is in step. */
export async function forgetSnapshot(tx: Db, segmentId: string): Promise<void> {
  await sql`DELETE FROM audience_sync.list_targets WHERE audience_segment_id = ${segmentId}::bigint`.execute(tx);
  await sql`DELETE FROM audience_sync.list_target_counts WHERE audience_segment_id = ${segmentId}::bigint`.execute(tx);
  await sql`
    INSERT INTO audience_sync.lists AS l (audience_segment_id, in_step, identifiers) VALUES (${segmentId}::bigint, true, 0)
    ON CONFLICT (audience_segment_id) DO UPDATE SET in_step = true, identifiers = 0, updated_at = now(),
      changes_read_in = NULL, source_stamp = NULL, snapshot_campaigns = NULL, whole_read_at = NULL, whole_read_due = NULL, email_rule = NULL`.execute(tx);
}

import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type DbHandle } from '../src/db/connection.js';
import { findUncertainty, settleInStep } from '../src/sync/ledger.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { planList } from '../src/sync/run.js';
import { takeSourceSnapshot } from '../src/source/change-log.js';
import { mapRunChanges } from '../src/source/run-changes.js';
import { up as recountListCounters } from '../migrations/0021-list-counters-recounted.js';
import { createTestDatabase } from './helpers.js';

/**
 * The list's funnel counters (each customer once, in the state of its email)
 * when a plan reads a customer's rows at different moments: the run maps the
 * change log when it starts, and a write committed after that is read by the
 * plan only for the keys the map names. A customer who joins a second
 * campaign and changes email meanwhile then has one row read with the new
 * email and one with the old, until the next plan reads the email's change.
 * The counters must follow the snapshot through that, and equal the source
 * once the snapshot does.
 */

const SEGMENT = '900';
const CAMPAIGNS = ['k1', 'k2'];

describe('the list counters, when a plan reads a customer in two campaigns at different moments', () => {
  let database: DbHandle;
  let drop: () => Promise<void>;
  let url: string;

  beforeAll(async () => {
    ({ url, drop } = await createTestDatabase('counters'));
    database = connect(url);
    await migrateToLatest(database.db);
  });

  afterAll(async () => {
    await database?.close();
    await drop?.();
  });

  const config = () =>
    ({ criteo: { batchSize: 70 }, maxRemovalRatio: 1, sourceWholeReadDays: 7, sourceCheckBesideIdentifiers: 0, databaseUrl: url }) as Parameters<
      typeof planList
    >[0]['config'];
  const target = { segmentId: SEGMENT, campaignIds: CAMPAIGNS, activeCampaignIds: CAMPAIGNS, advertiserIds: ['1'], allEnded: false, invertedCampaignIds: [] };

  /** Plans the list (reading the run's map when given one), then applies the plan to the ledger as a confirmed sync would. */
  async function syncOnce(planId: number, runId?: number) {
    const db = database.db;
    await planList(
      { db, config: config() },
      { target, asOf: new Date(), options: { trigger: 'test' }, ...(runId === undefined ? {} : { runId }) },
      planId,
      await findUncertainty(db, SEGMENT),
    );
    const planned = sql`
      SELECT operation, identifier FROM audience_sync.plan_entries WHERE list_sync_id = ${planId}
      UNION ALL
      SELECT 'add', t.identifier FROM audience_sync.plan_ranges r
      CROSS JOIN LATERAL (SELECT DISTINCT identifier FROM audience_sync.list_targets
                          WHERE audience_segment_id = ${SEGMENT}::bigint AND identifier BETWEEN r.first_identifier AND r.last_identifier) t
      WHERE r.list_sync_id = ${planId}`;
    await sql`
      INSERT INTO audience_sync.list_members (audience_segment_id, identifier)
      SELECT ${SEGMENT}::bigint, identifier FROM (${planned}) p WHERE operation = 'add'`.execute(db);
    await sql`
      DELETE FROM audience_sync.list_members WHERE audience_segment_id = ${SEGMENT}::bigint
        AND identifier IN (SELECT identifier FROM (${planned}) p WHERE operation = 'remove')`.execute(db);
    await settleInStep(db, SEGMENT, planId, [], null);
  }

  /** The list's counters as kept. */
  async function kept() {
    const { rows } = await sql<{ scope: string; email_state: string; n: number }>`
      SELECT scope, email_state, n::int AS n FROM audience_sync.list_target_counts
      WHERE audience_segment_id = ${SEGMENT}::bigint AND n <> 0 ORDER BY 1, 2`.execute(database.db);
    return rows;
  }

  /** The counters recounted from the snapshot: a customer whose rows disagree counts once, in its first campaign's row's state. */
  async function fromSnapshot() {
    const { rows } = await sql<{ scope: string; email_state: string; n: number }>`
      SELECT campaign_id AS scope, email_state, count(*)::int AS n FROM audience_sync.list_targets
      WHERE audience_segment_id = ${SEGMENT}::bigint GROUP BY 1, 2
      UNION ALL
      SELECT '', state, count(*)::int FROM (
        SELECT DISTINCT ON (customer_id) email_state AS state FROM audience_sync.list_targets
        WHERE audience_segment_id = ${SEGMENT}::bigint ORDER BY customer_id, campaign_id) c GROUP BY 2
      ORDER BY 1, 2`.execute(database.db);
    return rows;
  }

  /** The counters from the source alone. */
  async function fromSource() {
    const { rows } = await sql<{ scope: string; email_state: string; n: number }>`
      WITH r AS (
        SELECT tg.campaign_id, tg.customer_id,
               CASE WHEN cu.customer_id IS NULL THEN 'no_customer'
                    WHEN coalesce(btrim(cu.email, E' \\t\\n\\r\\f'), '') = '' THEN 'missing'
                    WHEN audience_sync.email_identifier(cu.email) IS NULL THEN 'invalid' ELSE 'valid' END AS state
        FROM audience_sync.campaign_target_groups tg
        LEFT JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
        WHERE tg.campaign_id = ANY(${CAMPAIGNS}::text[]))
      SELECT campaign_id AS scope, state AS email_state, count(*)::int AS n FROM r GROUP BY 1, 2
      UNION ALL
      SELECT '', state, count(DISTINCT customer_id)::int FROM r GROUP BY 2
      ORDER BY 1, 2`.execute(database.db);
    return rows;
  }

  async function customerXStates() {
    const { rows } = await sql<{ state: string }>`
      SELECT email_state AS state FROM audience_sync.list_targets
      WHERE audience_segment_id = ${SEGMENT}::bigint AND customer_id = 'X' ORDER BY campaign_id`.execute(database.db);
    return rows.map((r) => r.state);
  }

  it('follow the snapshot while a customer’s rows disagree, and equal the source once they agree again', async () => {
    const db = database.db;
    await sql`
      INSERT INTO audience_sync.campaigns (campaign_id, name, advertiser_id, audience_segment_id, starts_at, measurement_ends_at)
      SELECT c, c, 1, ${SEGMENT}::bigint, now() - interval '1 day', now() + interval '30 days' FROM unnest(${CAMPAIGNS}::text[]) c`.execute(db);
    await sql`INSERT INTO audience_sync.customers (customer_id, email) VALUES ('X', 'x@example.com')`.execute(db);
    await sql`INSERT INTO audience_sync.customers (customer_id, email) SELECT 'f' || i, 'f' || i || '@example.com' FROM generate_series(1, 1200) i`.execute(db);
    await sql`INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id) VALUES ('k1', 'X'), ('k1', 'f1'), ('k2', 'f2')`.execute(db);
    await syncOnce(-1);
    expect(await kept()).toEqual(await fromSource());

    // X joins k2, among more customers' writes than the list looks up key by key, so that the run maps the log (in two
    // statements, each under the log's limit of rows); then X's email is cleared, after the map and before the plan.
    await sql`INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id) VALUES ('k2', 'X')`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'g' || email WHERE customer_id LIKE 'f%' AND substr(customer_id, 2)::int <= 600`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'g' || email WHERE customer_id LIKE 'f%' AND substr(customer_id, 2)::int > 600`.execute(db);
    const RUN = 4242;
    const mapped = await db.transaction().execute(async (tx) => mapRunChanges(tx, RUN, [target], await takeSourceSnapshot(tx)));
    expect(mapped).toEqual([SEGMENT]);
    await sql`UPDATE audience_sync.customers SET email = NULL WHERE customer_id = 'X'`.execute(db);
    await syncOnce(-2, RUN);
    // The new row was read with the new email, the old row kept the old: the counters follow the snapshot.
    expect(await customerXStates()).toEqual(['valid', 'missing']);
    expect(await kept()).toEqual(await fromSnapshot());

    // The next plan reads the email's change: X's rows agree, and the counters equal the source.
    await syncOnce(-3);
    expect(await customerXStates()).toEqual(['missing', 'missing']);
    expect(await kept()).toEqual(await fromSource());

    // X's email comes back: still equal, with no counter left below zero or counted twice.
    await sql`UPDATE audience_sync.customers SET email = 'x2@example.com' WHERE customer_id = 'X'`.execute(db);
    await syncOnce(-4);
    expect(await customerXStates()).toEqual(['valid', 'valid']);
    expect(await kept()).toEqual(await fromSource());
    expect(await kept()).toEqual(await fromSnapshot());
  });

  it('are recounted from the snapshot by migration 0021, which mends counts an earlier plan left off', async () => {
    const db = database.db;
    // As the earlier applyCounterDeltas could leave them: off by a customer, for good.
    await sql`
      UPDATE audience_sync.list_target_counts SET n = n + 1
      WHERE audience_segment_id = ${SEGMENT}::bigint AND scope = '' AND email_state = 'valid'`.execute(db);
    await sql`
      INSERT INTO audience_sync.list_target_counts (audience_segment_id, scope, email_state, n)
      VALUES (${SEGMENT}::bigint, '', 'missing', -1)`.execute(db);
    expect(await kept()).not.toEqual(await fromSnapshot());
    await recountListCounters(db as unknown as Parameters<typeof recountListCounters>[0]);
    expect(await kept()).toEqual(await fromSnapshot());
    expect(await kept()).toEqual(await fromSource());
  });
});

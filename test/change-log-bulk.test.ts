import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convergence, createWorld, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * Bulk writes to the source (migration 0011): a statement whose keys exceed
 * what any list concerned would read from the log logs one marker row, and
 * a list that finds an unread marker concerning it reads whole; every other
 * write logs its keys as before. Every plan ends with the list exact in the
 * sandbox.
 *
 * The lists: 601 (campaign b1, 3,000 rows to start: limit 1,000), 602 (b2,
 * 15,000 rows: limit 1,500) and 603 (b3, 1,000 rows: limit 1,000). A
 * statement's customers are logged as keys up to the larger of the largest
 * limit and a tenth of all the lists' rows together (1,900 to start; migration
 * 0014), a campaign's target-group rows up to its own list's limit.
 */

let world: World;
let writer: pg.Client;
/** What the first load of customers, into an empty source with no list yet, logged. */
let firstLoad: LogRow[];

beforeAll(async () => {
  world = await createWorld('change_log_bulk', { segments: ['601', '602', '603'].map((id) => ({ id, advertiserId: '1' })) });
  await seedCustomers(world.database.db, 0, 22000);
  firstLoad = (await sql<LogRow>`SELECT campaign_id, customer_id, bulk_rows::text FROM audience_sync.source_changes`.execute(world.database.db)).rows;
  writer = new pg.Client({ connectionString: world.databaseUrl });
  await writer.connect();
  for (const [segmentId, campaignId, from, to] of [
    ['601', 'b1', 0, 3000],
    ['602', 'b2', 3000, 18000],
    ['603', 'b3', 18000, 19000],
  ] as const) {
    await seedCampaigns(world.database.db, [{ id: campaignId, segmentId }]);
    await seedTargetGroup(world.database.db, campaignId, from, to);
    const first = await world.run({ segmentIds: [segmentId] });
    expect(first.lists[0]).toMatchObject({ status: 'succeeded', sourceRead: 'whole' });
  }
});

afterAll(async () => {
  await writer?.end();
  await world?.close();
});

async function runList(segmentId: string) {
  const run = await world.run({ segmentIds: [segmentId] });
  expect(await convergence(world, segmentId)).toMatchObject({ exact: true });
  return run.lists[0]!;
}

interface LogRow {
  campaign_id: string | null;
  customer_id: string | null;
  bulk_rows: string | null;
}

/** Runs one statement in its own transaction; returns what it logged. */
async function logged(statement: string): Promise<LogRow[]> {
  await writer.query('BEGIN');
  await writer.query(statement);
  const { rows } = await writer.query<LogRow>(`
    SELECT campaign_id, customer_id, bulk_rows::text FROM audience_sync.source_changes WHERE xid = pg_current_xact_id()
    ORDER BY campaign_id, customer_id`);
  await writer.query('COMMIT');
  return rows;
}

const customers = (from: number, to: number) => `SELECT 'c' || i FROM generate_series(${from}, ${to - 1}) i`;

describe('bulk writes to the change log', () => {
  it('a bulk INSERT past the limit logs one marker, not a row per key; the next plan reads whole, says why, and converges', async () => {
    const fresh = await logged(`INSERT INTO audience_sync.customers SELECT 'c' || i, 'Bulk' || i || '@example.com' FROM generate_series(22000, 23999) i`);
    expect(fresh).toEqual([{ campaign_id: null, customer_id: null, bulk_rows: '2000' }]);
    const rows = await logged(`INSERT INTO audience_sync.campaign_target_groups SELECT 'b1', c FROM (${customers(22000, 24000)}) k(c)`);
    expect(rows).toEqual([{ campaign_id: 'b1', customer_id: null, bulk_rows: '2000' }]);

    // The customers' marker concerns every list: its 2,000 keys are past a tenth of all the lists' rows (1,900).
    expect(await runList('601')).toMatchObject({ sourceRead: 'whole', wholeReadReason: 'a bulk write of 2000 rows to customers', toAdd: 2000, toRemove: 0 });
    // Read once: the log names nothing more for the list, which is settled without a plan.
    expect(await runList('601')).toMatchObject({ sourceRead: 'unchanged', toAdd: 0, toRemove: 0 });
    expect(await runList('602')).toMatchObject({ sourceRead: 'whole', wholeReadReason: 'a bulk write of 2000 rows to customers', toAdd: 0 });
    expect(await runList('603')).toMatchObject({ sourceRead: 'whole', wholeReadReason: 'a bulk write of 2000 rows to customers', toAdd: 0 });

    // Rows of a campaign alone: 1,500 of b1's, past its list's limit of 1,000.
    const more = await logged(`INSERT INTO audience_sync.campaign_target_groups SELECT 'b1', c FROM (${customers(3000, 4500)}) k(c)`);
    expect(more).toEqual([{ campaign_id: 'b1', customer_id: null, bulk_rows: '1500' }]);
    expect(await runList('601')).toMatchObject({
      sourceRead: 'whole',
      wholeReadReason: "a bulk write of 1500 rows to campaign b1's target group",
      toAdd: 1500,
    });
  });

  it("a bulk write to one campaign's rows leaves a list fed only by another campaign to the log", async () => {
    expect(await logged(`INSERT INTO audience_sync.campaign_target_groups SELECT 'b1', c FROM (${customers(4500, 6000)}) k(c)`)).toHaveLength(1);
    // Nothing else written: the log holds nothing for 602, which is settled without a plan.
    expect(await runList('602')).toMatchObject({ sourceRead: 'unchanged', toAdd: 0, toRemove: 0 });
    await writer.query(`UPDATE audience_sync.customers SET email = 'moved18001@example.org' WHERE customer_id = 'c18001'`);
    await writer.query(`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'b3' AND customer_id IN ('c18002', 'c18003')`);
    expect(await runList('603')).toMatchObject({ sourceRead: 'changes', wholeReadReason: null, toAdd: 1, toRemove: 3 });
    expect(await runList('601')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining("campaign b1's target group"), toAdd: 1500 });
  });

  it("a statement under the largest limit logs its keys: the list it is under reads the log, and so does a smaller one, through the run's map", async () => {
    const rows = await logged(`UPDATE audience_sync.customers SET email = 'x' || email WHERE customer_id IN (${customers(6000, 7200)})`);
    expect(rows).toHaveLength(1200);
    expect(rows.every((r) => r.customer_id !== null && r.campaign_id === null && r.bulk_rows === null)).toBe(true);
    expect(await runList('602')).toMatchObject({ sourceRead: 'changes', toAdd: 1200, toRemove: 1200 });
    // More customers than 603 would look up key by key, none of them its own: the run maps them to its keys (none).
    expect(await runList('603')).toMatchObject({ sourceRead: 'changes', wholeReadReason: null, toAdd: 0, toRemove: 0 });
  });

  it('an UPDATE of many rows logs only the emails it changed, and a marker counts those, not the rows', async () => {
    const few = await logged(`
      UPDATE audience_sync.customers SET email = CASE WHEN customer_id IN ('c18004', 'c18005') THEN 'y' || email ELSE email END
      WHERE customer_id IN (${customers(10000, 22000)})`);
    expect(few).toEqual([
      { campaign_id: null, customer_id: 'c18004', bulk_rows: null },
      { campaign_id: null, customer_id: 'c18005', bulk_rows: null },
    ]);
    expect(await runList('603')).toMatchObject({ sourceRead: 'changes', toAdd: 2, toRemove: 2 });

    // Past every list's own limit (1,500, 602's, the largest), under a tenth of all the lists' rows together (about
    // 2,400): logged as keys, which the run maps to each list's own. All 1,600 are 602's, past its limit: it reads whole.
    const many = await logged(`
      UPDATE audience_sync.customers SET email = CASE WHEN customer_id IN (${customers(8000, 9600)}) THEN 'z' || email ELSE email END`);
    expect(many).toHaveLength(1600);
    expect(await runList('602')).toMatchObject({
      sourceRead: 'whole',
      wholeReadReason: 'more than 1500 source changes for the list since its last plan',
      toAdd: 1600,
      toRemove: 1600,
    });
    // Past a tenth of all the lists' rows: one marker.
    const more = await logged(`
      UPDATE audience_sync.customers SET email = CASE WHEN customer_id IN (${customers(8000, 11000)}) THEN 'y' || email ELSE email END`);
    expect(more).toEqual([{ campaign_id: null, customer_id: null, bulk_rows: '3000' }]);
    expect(await runList('602')).toMatchObject({ sourceRead: 'whole', wholeReadReason: 'a bulk write of 3000 rows to customers', toAdd: 3000, toRemove: 3000 });

    // Target-group rows rewritten as they were change no key: nothing is logged.
    expect(await logged(`UPDATE audience_sync.campaign_target_groups SET customer_id = customer_id WHERE campaign_id = 'b2'`)).toEqual([]);
  });

  it('a statement of 1000 keys or fewer never asks for the limit', async () => {
    await writer.query('BEGIN');
    try {
      await writer.query(`SET LOCAL track_functions = 'all'`);
      const limitCalls = async () =>
        (
          await writer.query<{ calls: string }>(`
            SELECT coalesce(sum(calls), 0)::text AS calls FROM pg_stat_xact_user_functions WHERE funcname = 'change_log_key_limit'`)
        ).rows[0]!.calls;
      await writer.query(`INSERT INTO audience_sync.campaign_target_groups SELECT 'nowhere', c FROM (${customers(0, 1000)}) k(c)`);
      await writer.query(`UPDATE audience_sync.customers SET email = 'w' || email WHERE customer_id IN (${customers(0, 1000)})`);
      expect(await limitCalls()).toBe('0');
      // A campaign no list's snapshot holds: past 1000 keys its rows are a marker whatever the lists' sizes.
      await writer.query(`INSERT INTO audience_sync.campaign_target_groups SELECT 'elsewhere', c FROM (${customers(0, 1001)}) k(c)`);
      expect(await limitCalls()).toBe('1');
      const { rows } = await writer.query<{ n: string; markers: string }>(`
        SELECT count(*)::text AS n, count(bulk_rows)::text AS markers FROM audience_sync.source_changes WHERE xid = pg_current_xact_id()`);
      expect(rows[0]).toEqual({ n: '2001', markers: '1' });
    } finally {
      await writer.query('ROLLBACK');
    }
  });
});

describe('the first bulk load into an empty logged source', () => {
  it('logs one marker: the run has one row to prune, not a row per customer', () => {
    expect(firstLoad).toEqual([{ campaign_id: null, customer_id: null, bulk_rows: '22000' }]);
  });
});

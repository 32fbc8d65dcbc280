import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convergence, createWorld, patchCalls, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * Lists nothing changed for since their last sync are settled together,
 * without a plan: a succeeded list sync with the funnel of the last one,
 * nothing sent. Anything that concerns a list (a row of its campaigns, any
 * customer, an unsettled batch, a new campaign, --full) sends it to its plan
 * instead, and every list stays exact.
 */

let world: World;
const LISTS = ['701', '702', '703'];

beforeAll(async () => {
  world = await createWorld('quiet_lists', { segments: LISTS.map((id) => ({ id, advertiserId: '1' })) });
  const db = world.database.db;
  await seedCustomers(db, 0, 900);
  await seedCampaigns(
    db,
    LISTS.map((segmentId, k) => ({ id: `q${k}`, segmentId })),
  );
  for (let k = 0; k < LISTS.length; k++) await seedTargetGroup(db, `q${k}`, k * 250, k * 250 + 400);
});

afterAll(async () => {
  await world?.close();
});

const readOf = (run: Awaited<ReturnType<World['run']>>) => Object.fromEntries(run.lists.map((l) => [l.segmentId, l.sourceRead]));

async function listSyncsOf(runId: number) {
  const { rows } = await sql<{
    segment: string;
    status: string;
    to_add: number;
    to_remove: number;
    unique_identifiers: number;
    ledger_before: number;
    campaigns: number;
  }>`
    SELECT s.audience_segment_id::text AS segment, s.status, s.to_add, s.to_remove, s.unique_identifiers, s.ledger_before,
           (SELECT count(*)::int FROM audience_sync.list_sync_campaigns c WHERE c.list_sync_id = s.list_sync_id) AS campaigns
    FROM audience_sync.list_syncs s WHERE s.run_id = ${runId} ORDER BY 1`.execute(world.database.db);
  return rows;
}

describe('lists nothing changed for', () => {
  it('are settled without a plan: recorded as succeeded with their funnel, nothing sent, the snapshot read moved on', async () => {
    const first = await world.run();
    expect(readOf(first)).toEqual({ '701': 'whole', '702': 'whole', '703': 'whole' });
    const firstSyncs = await listSyncsOf(first.runId);
    const read = await sql<{ r: string }>`SELECT changes_read_in::text AS r FROM audience_sync.lists WHERE audience_segment_id = 701`.execute(
      world.database.db,
    );

    const patches = patchCalls(world).length;
    const second = await world.run();
    expect(second.status).toBe('succeeded');
    expect(readOf(second)).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'unchanged' });
    expect(patchCalls(world).length).toBe(patches);
    for (const l of second.lists)
      expect(l).toMatchObject({ status: 'succeeded', toAdd: 0, toRemove: 0, funnel: first.lists.find((f) => f.segmentId === l.segmentId)!.funnel });
    const secondSyncs = await listSyncsOf(second.runId);
    expect(secondSyncs.map((s) => ({ ...s, status: s.status }))).toEqual(
      firstSyncs.map((s) => ({ ...s, to_add: 0, to_remove: 0, ledger_before: s.unique_identifiers, status: 'succeeded' })),
    );
    const after = await sql<{ r: string }>`SELECT changes_read_in::text AS r FROM audience_sync.lists WHERE audience_segment_id = 701`.execute(
      world.database.db,
    );
    expect(after.rows[0]!.r).not.toBe(read.rows[0]!.r);
    for (const id of LISTS) expect(await convergence(world, id)).toMatchObject({ exact: true });
  });

  it('a row of one campaign sends only its list to a plan; a customer change sends every list', async () => {
    const db = world.database.db;
    await seedTargetGroup(db, 'q1', 700, 720);
    const one = await world.run();
    expect(readOf(one)).toEqual({ '701': 'unchanged', '702': 'changes', '703': 'unchanged' });
    expect(one.lists.find((l) => l.segmentId === '702')!.toAdd).toBeGreaterThan(0);

    // c300 is in lists 702 and 703 only; the log names customers, not lists, so no list is taken for quiet.
    await sql`UPDATE audience_sync.customers SET email = 'moved.c300@example.org' WHERE customer_id = 'c300'`.execute(db);
    const all = await world.run();
    expect(readOf(all)).toEqual({ '701': 'changes', '702': 'changes', '703': 'changes' });
    for (const id of LISTS) expect(await convergence(world, id)).toMatchObject({ exact: true });
  });

  it('an unsettled batch, --full, or a campaign added to a list each send the list to its plan', async () => {
    const db = world.database.db;
    expect(readOf(await world.run())).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'unchanged' });

    // A batch sent and never answered (a killed run), with the ledger in step otherwise: only a plan re-sends it.
    const { rows } = await sql<{
      id: number;
    }>`SELECT list_sync_id AS id FROM audience_sync.list_syncs WHERE audience_segment_id = 701 ORDER BY 1 DESC LIMIT 1`.execute(db);
    await sql`
      INSERT INTO audience_sync.batches (list_sync_id, audience_segment_id, seq, operation, size, payload, status)
      VALUES (${rows[0]!.id}, 701, 99, 'add', 1, ARRAY[sha256('x')], 'sending')`.execute(db);
    const resent = await world.run();
    expect(readOf(resent)['701']).toBe('changes');
    expect(readOf(resent)['702']).toBe('unchanged');

    const full = await world.run({ full: true });
    expect(Object.values(readOf(full))).toEqual(['whole', 'whole', 'whole']);

    await seedCampaigns(db, [{ id: 'q9', segmentId: '703' }]);
    await seedTargetGroup(db, 'q9', 800, 810);
    const widened = await world.run();
    expect(readOf(widened)).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'whole' });
    for (const id of LISTS) expect(await convergence(world, id)).toMatchObject({ exact: true });
  });

  it('a snapshot emptied by a crash (its table is unlogged) is read again whole, against the whole ledger, and every list converges', async () => {
    const db = world.database.db;
    // Each list's snapshot is its own partition of list_targets, and each is unlogged.
    const { rows } = await sql<{ p: string }>`
      SELECT c.relpersistence AS p FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'audience_sync.list_targets'::regclass`.execute(db);
    expect(rows.map((r) => r.p)).toEqual(['u', 'u', 'u']);
    expect(readOf(await world.run())).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'unchanged' });

    // A day's changes, then what crash recovery does to an unlogged table. Members that left must still be removed:
    // only the whole ledger, not the (lost) snapshot, can say which.
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'q0' AND customer_id IN ('c1', 'c2', 'c3')`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'again.c260@example.org' WHERE customer_id = 'c260'`.execute(db);
    await sql`TRUNCATE audience_sync.list_targets`.execute(db);
    const run = await world.run();
    for (const l of run.lists) {
      expect(l).toMatchObject({ status: 'succeeded', sourceRead: 'whole', wholeReadReason: expect.stringContaining('snapshot is gone') });
    }
    // c260 is in lists 701 and 702: its old identifier out, its new one in.
    expect(run.lists.find((l) => l.segmentId === '701')).toMatchObject({ toRemove: 4, toAdd: 1 });
    expect(run.lists.find((l) => l.segmentId === '702')).toMatchObject({ toRemove: 1, toAdd: 1 });
    expect(run.lists.find((l) => l.segmentId === '703')).toMatchObject({ toRemove: 0, toAdd: 0 });
    for (const id of LISTS) expect(await convergence(world, id)).toMatchObject({ exact: true });
    expect(readOf(await world.run())).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'unchanged' });
  });

  it('a list whose table of the snapshot is dropped by hand makes it again from a whole read, against the whole ledger', async () => {
    const db = world.database.db;
    expect(readOf(await world.run())).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'unchanged' });
    await sql`DROP TABLE audience_sync.list_targets_701`.execute(db);
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'q0' AND customer_id IN ('c4', 'c5')`.execute(db);
    const run = await world.run();
    expect(run.lists.find((l) => l.segmentId === '701')).toMatchObject({
      status: 'succeeded',
      sourceRead: 'whole',
      wholeReadReason: expect.stringContaining('snapshot is gone'),
      toRemove: 2,
      toAdd: 0,
    });
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM audience_sync.list_targets WHERE audience_segment_id = 701`.execute(db);
    expect(Number(rows[0]!.n)).toBeGreaterThan(0);
    for (const id of LISTS) expect(await convergence(world, id)).toMatchObject({ exact: true });
    expect(readOf(await world.run())).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'unchanged' });
  });

  it("skips, without waiting, a list whose row another process's plan holds: that list goes to its own plan", async () => {
    expect(readOf(await world.run())).toEqual({ '701': 'unchanged', '702': 'unchanged', '703': 'unchanged' });
    const other = new pg.Client({ connectionString: world.databaseUrl });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT 1 FROM audience_sync.lists WHERE audience_segment_id = 701 FOR UPDATE');
      const running = world.run();
      // The run settles the other lists and plans 701, whose plan waits for the row until the holder commits.
      await new Promise((resolve) => setTimeout(resolve, 700));
      await other.query('COMMIT');
      expect(readOf(await running)).toEqual({ '701': 'changes', '702': 'unchanged', '703': 'unchanged' });
    } finally {
      await other.end();
    }
    for (const id of LISTS) expect(await convergence(world, id)).toMatchObject({ exact: true });
  });
});

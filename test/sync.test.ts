import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { convergence, createWorld, patchCalls, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

let world: World;

beforeAll(async () => {
  world = await createWorld('sync', {
    segments: [
      { id: '101', advertiserId: '1' },
      { id: '102', advertiserId: '1' },
      { id: '103', advertiserId: '1' },
      { id: '104', advertiserId: '1' },
      { id: '106', advertiserId: '1' },
    ],
  });
});
afterAll(async () => world?.close());

async function resetSource() {
  await sql`TRUNCATE audience_sync.customers, audience_sync.campaigns, audience_sync.campaign_target_groups`.execute(world.database.db);
}

describe('a daily sync', () => {
  beforeEach(resetSource);

  it('first run adds every valid identifier; a second run sends no PATCH or DELETE; churn adds and removes exactly', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'spring', segmentId: '101' }]);
    await seedCustomers(db, 0, 1000);
    // Some customers without a usable email: never sent, counted.
    await sql`INSERT INTO audience_sync.customers VALUES ('nomail', NULL), ('blank', '  '), ('bad', 'not-an-email'), ('dup', ' USER5@example.com ')`.execute(
      db,
    );
    await seedTargetGroup(db, 'spring', 0, 1000);
    await sql`INSERT INTO audience_sync.campaign_target_groups VALUES ('spring','nomail'),('spring','blank'),('spring','bad'),('spring','dup'),('spring','ghost')`.execute(
      db,
    );

    const first = await world.run();
    expect(first.status).toBe('succeeded');
    const list = first.lists.find((l) => l.segmentId === '101')!;
    expect(list.funnel).toEqual({ targetGroupSize: 1005, missingCustomers: 1, withoutEmail: 2, invalidEmails: 1, uniqueIdentifiers: 1000 });
    expect(list).toMatchObject({ toAdd: 1000, added: 1000, toRemove: 0, removed: 0, status: 'succeeded' });
    expect(list.statistics?.numberOfIdentifiers).toBe(1000);
    expect(await convergence(world, '101')).toMatchObject({ exact: true, desired: 1000 });

    const callsBefore = world.sandbox.calls.length;
    const second = await world.run();
    expect(second.status).toBe('succeeded');
    const writes = world.sandbox.calls.slice(callsBefore).filter((c) => c.operation === 'patch' || c.operation === 'delete');
    expect(writes).toEqual([]);
    expect(second.lists[0]).toMatchObject({ toAdd: 0, toRemove: 0 });
    // Nothing changed and the figures are fresh: not even a statistics read.
    expect(world.sandbox.calls.slice(callsBefore).filter((c) => c.operation === 'statistics')).toEqual([]);
    // A day later, an unchanged list still has its statistics read once, so the report stays current
    // (after the run's one search, which checks which advertiser owns each list before anything is written).
    await sql`UPDATE audience_sync.list_syncs SET stats_read_at = stats_read_at - interval '21 hours' WHERE audience_segment_id = 101`.execute(db);
    const idleDay = world.sandbox.calls.length;
    await world.run();
    expect(
      world.sandbox.calls
        .slice(idleDay)
        .map((c) => c.operation)
        .filter((op) => op !== 'token'),
    ).toEqual(['search', 'statistics']);

    // A day of churn: 50 leave the target group, 30 join, 20 change their email. Customer c5
    // leaves but 'dup' shares its email and stays, so its identifier stays: 49 + 20 removes.
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE customer_id IN (SELECT 'c' || i FROM generate_series(0, 49) i)`.execute(db);
    await seedCustomers(db, 1000, 1030);
    await seedTargetGroup(db, 'spring', 1000, 1030);
    await sql`UPDATE audience_sync.customers SET email = 'changed' || customer_id || '@example.org' WHERE customer_id IN (SELECT 'c' || i FROM generate_series(100, 119) i)`.execute(
      db,
    );
    const third = await world.run();
    expect(third.lists[0]).toMatchObject({ toAdd: 50, added: 50, toRemove: 69, removed: 69, status: 'succeeded' });
    // Each answer rode on the list's next statement (the removes' claim, then the settle): both batches are settled
    // with what Criteo said, and the ledger holds their identifiers, not the batches.
    const { rows: settled } = await sql<{ operation: string; status: string; http_status: number; nb_valid: number; answered: boolean; held: boolean }>`
      SELECT b.operation, b.status, b.http_status, b.nb_valid, b.finished_at IS NOT NULL AS answered, b.payload IS NOT NULL AS held
      FROM audience_sync.batches b JOIN audience_sync.list_syncs s USING (list_sync_id)
      WHERE s.run_id = ${third.runId} ORDER BY b.seq`.execute(db);
    expect(settled).toEqual([
      { operation: 'add', status: 'confirmed', http_status: 200, nb_valid: 50, answered: true, held: false },
      { operation: 'remove', status: 'confirmed', http_status: 200, nb_valid: 69, answered: true, held: false },
    ]);
    expect(await convergence(world, '101')).toMatchObject({ exact: true, desired: 1000 - 49 + 30 });
  });

  it('keeps a member of a shared list while any active campaign still wants it', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [
      { id: 'a', segmentId: '102' },
      { id: 'b', segmentId: '102' },
    ]);
    await seedCustomers(db, 0, 300);
    await seedTargetGroup(db, 'a', 0, 200);
    await seedTargetGroup(db, 'b', 100, 300);
    const first = await world.run();
    expect(first.lists.find((l) => l.segmentId === '102')).toMatchObject({ funnel: expect.objectContaining({ targetGroupSize: 300, uniqueIdentifiers: 300 }) });
    expect(await convergence(world, '102')).toMatchObject({ exact: true, desired: 300 });

    // Campaign a ends: only its own members (0..99) go; the shared 100..199 stay for b.
    await sql`UPDATE audience_sync.campaigns SET measurement_ends_at = now() - interval '1 minute' WHERE campaign_id = 'a'`.execute(db);
    const second = await world.run();
    expect(second.lists.find((l) => l.segmentId === '102')).toMatchObject({ action: 'sync', toAdd: 0, toRemove: 100, removed: 100 });
    expect(await convergence(world, '102')).toMatchObject({ exact: true, desired: 200 });
  });

  it('empties a list with one DELETE when its last campaign ends, and then costs no further call', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'x', segmentId: '103' }]);
    await seedCustomers(db, 0, 500);
    await seedTargetGroup(db, 'x', 0, 500);
    await world.run();
    expect(world.sandbox.members('103').size).toBe(500);

    await sql`UPDATE audience_sync.campaigns SET measurement_ends_at = now() - interval '1 second'`.execute(db);
    const before = world.sandbox.calls.length;
    const ended = await world.run();
    const calls = world.sandbox.calls.slice(before).filter((c) => c.segmentId === '103');
    expect(calls.map((c) => c.operation)).toEqual(['delete', 'statistics']);
    expect(ended.lists.find((l) => l.segmentId === '103')).toMatchObject({ action: 'empty', emptied: true, removed: 500, status: 'succeeded' });
    expect(world.sandbox.members('103').size).toBe(0);
    expect(await convergence(world, '103')).toMatchObject({ exact: true, ledger: 0 });

    const again = world.sandbox.calls.length;
    const after = await world.run();
    expect(world.sandbox.calls.slice(again).filter((c) => c.segmentId === '103')).toEqual([]);
    expect(after.lists.find((l) => l.segmentId === '103')).toMatchObject({ status: 'succeeded', emptied: false });
  });

  it('a run asked to stop before it reached its lists (a SIGTERM as a console resync starts) sends nothing and says it was interrupted', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'early-stop', segmentId: '106' }]);
    await seedCustomers(db, 0, 50);
    await seedTargetGroup(db, 'early-stop', 0, 50);
    const stopping = new AbortController();
    stopping.abort();
    const before = patchCalls(world).length;
    const run = await world.run({ segmentIds: ['106'], signal: stopping.signal });
    expect(run.status).toBe('interrupted');
    expect(run.lists.map((l) => l.status)).toEqual(['incomplete']);
    expect(patchCalls(world).length).toBe(before);
    expect(world.sandbox.members('106').size).toBe(0);
    // The next run does it all.
    expect((await world.run({ segmentIds: ['106'] })).status).toBe('succeeded');
    expect(world.sandbox.members('106').size).toBe(50);
    // A list nothing changed for is settled without a plan; a run asked to stop settles none either.
    const quiet = await world.run({ segmentIds: ['106'], signal: stopping.signal });
    expect(quiet.lists.map((l) => l.status)).toEqual(['incomplete']);
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM audience_sync.list_syncs WHERE run_id = ${quiet.runId} AND status = 'succeeded'`.execute(db);
    expect(rows[0]!.n).toBe(0);
  });

  it('sends 120,001 members as three add batches of at most 50,000, each identifier 64 lowercase hex', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'big', segmentId: '104' }]);
    await seedCustomers(db, 0, 120_001);
    await seedTargetGroup(db, 'big', 0, 120_001);
    const before = patchCalls(world).length;
    const summary = await world.run();
    const patches = patchCalls(world)
      .slice(before)
      .filter((c) => c.segmentId === '104');
    expect(patches.map((c) => c.identifiers).sort((a, b) => b! - a!)).toEqual([50_000, 50_000, 20_001]);
    expect(patches.every((c) => c.op === 'add')).toBe(true);
    expect(summary.lists.find((l) => l.segmentId === '104')).toMatchObject({ added: 120_001, status: 'succeeded' });
    expect(await convergence(world, '104')).toMatchObject({ exact: true, desired: 120_001 });
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM audience_sync.batches b JOIN audience_sync.list_syncs s USING (list_sync_id)
      WHERE s.run_id = ${summary.runId} AND b.status = 'confirmed' AND b.operation = 'add' AND b.payload IS NULL`.execute(db);
    expect(rows[0]!.n).toBe(3);
    // A first fill of more than a batch claims ranges of its new snapshot, vacuumed first so its index alone serves them.
    const { rows: snapshot } = await sql<{ all_visible: number }>`
      SELECT relallvisible AS all_visible FROM pg_catalog.pg_class WHERE oid = 'audience_sync.list_targets_104'::regclass`.execute(db);
    expect(snapshot[0]!.all_visible).toBeGreaterThan(0);
    // Every identifier Criteo ever received from the job was a SHA-256 in lowercase hex.
    const audit = world.sandbox.identifierAudit();
    expect(audit.received).toBeGreaterThanOrEqual(120_001);
    expect(audit).toMatchObject({ notSha256Hex: 0, samples: [] });
    // The job's own tables hold identifiers only: no column of theirs holds an email-like value.
    expect(await emailLikeValuesInJobTables()).toEqual([]);
  });
});

/** Every text value in the job's own tables that looks like an email. */
async function emailLikeValuesInJobTables(): Promise<string[]> {
  const { rows } = await sql<{ v: string }>`
    SELECT v FROM (
      SELECT reason AS v FROM audience_sync.list_syncs UNION ALL SELECT error FROM audience_sync.runs
      UNION ALL SELECT error_title FROM audience_sync.batches UNION ALL SELECT unnest(sample_invalid) FROM audience_sync.batches
      UNION ALL SELECT options::text FROM audience_sync.runs
    ) x WHERE v LIKE '%@%'`.execute(world.database.db);
  return rows.map((r) => r.v);
}

describe('crash safety', () => {
  beforeEach(resetSource);

  it('a run whose batches stop being answered leaves the list incomplete; the rerun converges exactly', async () => {
    const db = world.database.db;
    world.sandbox.addSegment({ id: '201', advertiserId: '1' });
    await seedCampaigns(db, [{ id: 'k', segmentId: '201' }]);
    await seedCustomers(db, 0, 10_000);
    await seedTargetGroup(db, 'k', 0, 10_000);
    // Batches of 1,000; from the 4th PATCH on, every answer is a 503 (Criteo down mid-run).
    world.sandbox.setFaults({ script: [{ operation: 'patch', nth: 4, status: 503, times: 1000 }] });
    const broken = await world.run({}, { CRITEO_BATCH_SIZE: '1000', CRITEO_MAX_ATTEMPTS: '2', CRITEO_CONCURRENCY: '1' });
    world.sandbox.setFaults(undefined);
    const list = broken.lists.find((l) => l.segmentId === '201')!;
    expect(broken.status).toBe('failed');
    expect(list.status).toBe('incomplete');
    expect(list.added).toBe(3000);
    expect((await convergence(world, '201')).ledger).toBe(3000);

    const rerun = await world.run({}, { CRITEO_BATCH_SIZE: '1000' });
    expect(rerun.status).toBe('succeeded');
    expect(rerun.lists[0]).toMatchObject({ toAdd: 7000 });
    expect(await convergence(world, '201')).toMatchObject({ exact: true, desired: 10_000 });
  });

  it("a first fill's ledger takes each batch as its answer is written, while later batches are still on their way", async () => {
    const db = world.database.db;
    world.sandbox.addSegment({ id: '202', advertiserId: '1' });
    await seedCampaigns(db, [{ id: 'f', segmentId: '202' }]);
    await seedCustomers(db, 0, 10_000);
    await seedTargetGroup(db, 'f', 0, 10_000);
    // Batches of 1,000, one at a time; Criteo takes its time to answer the 4th.
    world.sandbox.setFaults({ script: [{ operation: 'patch', nth: 4, delayMs: 3000 }] });
    const run = world.run({}, { CRITEO_BATCH_SIZE: '1000', CRITEO_CONCURRENCY: '1' });
    const patches = () => patchCalls(world).filter((c) => c.segmentId === '202');
    await expect.poll(() => patches().length, { timeout: 10_000 }).toBeGreaterThanOrEqual(4);
    const fourth = patches()[3]!;
    const ledger = sql<{ members: number; waiting: number }>`
      SELECT (SELECT count(*)::int FROM audience_sync.list_members WHERE audience_segment_id = 202) AS members,
             (SELECT count(*)::int FROM audience_sync.batches WHERE audience_segment_id = 202 AND status = 'confirmed' AND payload IS NOT NULL) AS waiting`;
    // The three answered batches are list_members rows, none left waiting in its batch's row, before the 4th is answered.
    await expect.poll(async () => (await ledger.execute(db)).rows[0], { timeout: 2000 }).toEqual({ members: 3000, waiting: 0 });
    expect(fourth.status).toBe(0);
    world.sandbox.setFaults(undefined);
    expect((await run).lists.find((l) => l.segmentId === '202')).toMatchObject({ status: 'succeeded', added: 10_000 });
    expect(await convergence(world, '202')).toMatchObject({ exact: true, desired: 10_000 });
  });

  it('a first snapshot a stopped run left unattached, or attached before its plan committed, is made again; the list converges', async () => {
    const db = world.database.db;
    for (const [segment, campaign] of [
      ['203', 'u'],
      ['204', 'v'],
    ] as const) {
      world.sandbox.addSegment({ id: segment, advertiserId: '1' });
      await seedCampaigns(db, [{ id: campaign, segmentId: segment }]);
      // What the run left: the list's new table, committed, with rows the source does not have (their identifiers must
      // never reach Criteo), and no record that the list read the source.
      await sql`
        CREATE UNLOGGED TABLE ${sql.table(`audience_sync.list_targets_${segment}`)} AS
        SELECT ${segment}::bigint AS audience_segment_id, 'ghost' || i AS customer_id, ${campaign}::text AS campaign_id,
               0::bigint AS email_fingerprint, 'valid'::text AS email_state, sha256(convert_to('ghost' || i, 'UTF8')) AS identifier
        FROM generate_series(1, 10) i`.execute(db);
    }
    await seedCustomers(db, 0, 5000);
    await seedTargetGroup(db, 'u', 0, 5000);
    await seedTargetGroup(db, 'v', 0, 50);
    // 204's table as a small first snapshot's is between its two commits: constrained and attached.
    await sql`SELECT audience_sync.constrain_snapshot_table(204), audience_sync.attach_snapshot_table(204)`.execute(db);

    const run = await world.run({}, { CRITEO_BATCH_SIZE: '1000' });
    expect(run.lists.find((l) => l.segmentId === '203')).toMatchObject({ status: 'succeeded', sourceRead: 'whole', toAdd: 5000, toRemove: 0 });
    // The ghosts are in 204's snapshot, not in its (empty) ledger: the whole read drops them, and only the source is added.
    expect(run.lists.find((l) => l.segmentId === '204')).toMatchObject({ status: 'succeeded', sourceRead: 'whole', toAdd: 50, toRemove: 0 });
    expect(await convergence(world, '203')).toMatchObject({ exact: true, desired: 5000 });
    expect(await convergence(world, '204')).toMatchObject({ exact: true, desired: 50 });
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM audience_sync.list_targets WHERE audience_segment_id IN (203, 204) AND customer_id LIKE 'ghost%'`.execute(db);
    expect(rows[0]!.n).toBe(0);
  });

  it('a batch Criteo applied but whose answer was lost is re-sent in the right direction after the target group changed', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'lost', segmentId: '105' }]);
    world.sandbox.addSegment({ id: '105', advertiserId: '1' });
    await seedCustomers(db, 0, 2000);
    await seedTargetGroup(db, 'lost', 0, 2000);
    // The 2nd PATCH is applied by Criteo, then the answer is a 502 every time it is retried.
    world.sandbox.setFaults({ script: [{ operation: 'patch', nth: 2, status: 200, applyThenFail: 502, times: 5 }] });
    const broken = await world.run({}, { CRITEO_BATCH_SIZE: '500', CRITEO_MAX_ATTEMPTS: '1', CRITEO_CONCURRENCY: '1' });
    world.sandbox.setFaults(undefined);
    expect(broken.lists.find((l) => l.segmentId === '105')!.status).toBe('incomplete');
    expect(world.sandbox.members('105').size).toBe(1000); // Criteo holds the lost batch too
    expect((await convergence(world, '105')).ledger).toBe(500); // the ledger claims only what was confirmed

    // Before the rerun, the customers of the lost batch leave the target group.
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.batches WHERE status = 'unknown'`.execute(db);
    expect(rows[0]!.n).toBe(1);
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'lost'`.execute(db);
    await seedTargetGroup(db, 'lost', 0, 100);
    // (The shrink is deliberate here, so the mass-removal guard is lifted.)
    const rerun = await world.run({ allowMassRemoval: true }, { CRITEO_BATCH_SIZE: '500' });
    expect(rerun.lists.find((l) => l.segmentId === '105')!.status).toBe('succeeded');
    expect(await convergence(world, '105')).toMatchObject({ exact: true, desired: 100, criteo: 100 });
    const settled = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.batches WHERE status IN ('unknown', 'sending')`.execute(db);
    expect(settled.rows[0]!.n).toBe(0);
  });
});

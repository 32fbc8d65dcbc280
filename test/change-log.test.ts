import { sql } from 'kysely';
import pg from 'pg';
import { connect } from '../src/db/connection.js';
import { migrator } from '../src/db/migrate.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneChangeLog } from '../src/source/change-log.js';
import { sourceChecksumBeside } from '../src/source/snapshot-check.js';
import { describeChangeLog } from '../src/source/log-catalog.js';
import { convergence, createTestDatabase, createWorld, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * The source change log: a day's plan reads the keys the triggers logged
 * rather than the whole target group, and falls back to the whole read
 * whenever the log cannot be trusted. Every case ends with the list exact
 * in the sandbox, so a log that missed a change would fail here.
 */

let world: World;
let writer: pg.Client;

beforeAll(async () => {
  world = await createWorld('change_log', { segments: ['501', '502', '503', '504', '505', '506', '507'].map((id) => ({ id, advertiserId: '1' })) });
  await seedCustomers(world.database.db, 0, 6000);
  writer = new pg.Client({ connectionString: world.databaseUrl });
  await writer.connect();
});

afterAll(async () => {
  await writer?.end();
  await world?.close();
});

async function startList(segmentId: string, campaignId: string, from: number, to: number) {
  await seedCampaigns(world.database.db, [{ id: campaignId, segmentId }]);
  await seedTargetGroup(world.database.db, campaignId, from, to);
  const first = await world.run({ segmentIds: [segmentId] });
  expect(first.lists[0]).toMatchObject({ status: 'succeeded', sourceRead: 'whole', wholeReadReason: expect.stringContaining('not read the change log') });
}

async function runList(segmentId: string, env: Record<string, string> = {}, options: { full?: boolean } = {}) {
  const run = await world.run({ segmentIds: [segmentId], ...options }, env);
  expect(await convergence(world, segmentId)).toMatchObject({ exact: true });
  return run.lists[0]!;
}

describe('the source change log', () => {
  it('a day of changes is read from the log: emails changed, customers and rows gone and new; a no-op upsert logs nothing', async () => {
    const db = world.database.db;
    await startList('501', 'l1', 0, 1000);
    // The upsert a daily loader runs over every row: nothing changes, nothing is logged.
    const before = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.source_changes`.execute(db);
    await seedCustomers(db, 0, 6000);
    const after = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.source_changes`.execute(db);
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);

    await sql`UPDATE audience_sync.customers SET email = 'moved' || customer_id || '@example.org' WHERE customer_id IN ('c1', 'c2', 'c3')`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'not an email' WHERE customer_id = 'c4'`.execute(db);
    await sql`DELETE FROM audience_sync.customers WHERE customer_id = 'c5'`.execute(db);
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'l1' AND customer_id IN ('c6', 'c7')`.execute(db);
    await seedTargetGroup(db, 'l1', 1000, 1010);
    // A row whose customer arrives later, and a customer renamed to it.
    await sql`INSERT INTO audience_sync.campaign_target_groups VALUES ('l1', 'late-1'), ('l1', 'late-2')`.execute(db);
    await sql`INSERT INTO audience_sync.customers VALUES ('late-1', 'late1@example.com')`.execute(db);
    await sql`UPDATE audience_sync.customers SET customer_id = 'late-2' WHERE customer_id = 'c8'`.execute(db);

    const day = await runList('501');
    expect(day).toMatchObject({ status: 'succeeded', sourceRead: 'changes', wholeReadReason: null });
    // c1-c3 moved (3 in, 3 out), c4 and c5 out, c6 and c7 out, ten new rows and late-1 in; c8's email moved
    // with its customer to late-2, a row of the list too, so that identifier stays.
    expect(day).toMatchObject({ toAdd: 3 + 10 + 1, toRemove: 3 + 2 + 2 });
    expect((await runList('501')).toAdd + (await runList('501')).toRemove).toBe(0);
  });

  it('reads a change committed while another transaction stays open, and one committed during a plan the next time, once', async () => {
    const db = world.database.db;
    await startList('502', 'l2', 1000, 2000);
    // An open transaction with an older id, elsewhere in the cluster's eyes: it must not hold committed changes back.
    await writer.query('BEGIN');
    await writer.query(`UPDATE audience_sync.customers SET email = 'held' || customer_id || '@example.org' WHERE customer_id = 'c1500'`);
    await sql`UPDATE audience_sync.customers SET email = 'fresh1400@example.org' WHERE customer_id = 'c1400'`.execute(db);
    const during = await runList('502');
    // The open write is not visible yet: the list is exact for what is committed, and c1500 is not read.
    expect(during).toMatchObject({ sourceRead: 'changes', toAdd: 1, toRemove: 1 });
    await writer.query('COMMIT');
    expect(await runList('502')).toMatchObject({ sourceRead: 'changes', toAdd: 1, toRemove: 1 });
    // Read once: the log names nothing more for the list, which is settled without a plan.
    expect(await runList('502')).toMatchObject({ sourceRead: 'unchanged', toAdd: 0, toRemove: 0 });
  });

  it('reads the whole target group when the log cannot be trusted or is not worth it, saying why', async () => {
    const db = world.database.db;
    await startList('503', 'l3', 2000, 3000);

    await sql`UPDATE audience_sync.customers SET email = 'x' || customer_id || '@example.org' WHERE customer_id = 'c2001'`.execute(db);
    expect(await runList('503', {}, { full: true })).toMatchObject({ sourceRead: 'whole', wholeReadReason: '--full', toAdd: 1000 });

    await sql`UPDATE audience_sync.customers SET email = 'y' || customer_id || '@example.org' WHERE customer_id = 'c2002'`.execute(db);
    expect(await runList('503', { SOURCE_WHOLE_READ_DAYS: '0' })).toMatchObject({
      sourceRead: 'whole',
      wholeReadReason: expect.stringContaining('SOURCE_WHOLE_READ_DAYS'),
      toAdd: 1,
    });
    // A whole read is due again as many days after it as the setting said then: 0.
    // Checked: the log's changes, then the whole target group against the snapshot (the next test).
    expect(await runList('503')).toMatchObject({ sourceRead: 'checked', wholeReadReason: expect.stringContaining('at least every 7 days') });

    // More changed customers than a tenth of the snapshot (and at least a thousand), whichever lists they are in. In
    // two statements: one writing them all would log a marker instead (see change-log-bulk.test.ts).
    const moveEmails = (from: number, to: number) =>
      sql`UPDATE audience_sync.customers SET email = 'z' || customer_id || '@example.org' WHERE customer_id IN (SELECT 'c' || i FROM generate_series(${from}::int, ${to}::int) i)`.execute(
        db,
      );
    await moveEmails(3500, 3999);
    await moveEmails(4000, 4500);
    await sql`UPDATE audience_sync.customers SET email = 'z' || customer_id || '@example.org' WHERE customer_id = 'c2003'`.execute(db);
    // They are other lists' customers: the run maps the day's log to the list's own keys, and the plan looks up its one change.
    expect(await runList('503')).toMatchObject({ sourceRead: 'changes', toAdd: 1, toRemove: 1 });
    // More than that of the list's own keys: 300 of its customers' emails and 800 new rows of its campaign.
    await moveEmails(2100, 2399);
    await seedTargetGroup(db, 'l3', 5200, 6000);
    expect(await runList('503')).toMatchObject({
      sourceRead: 'whole',
      wholeReadReason: expect.stringContaining('more than 1000 source changes'),
      toAdd: 300 + 800,
      toRemove: 300,
    });
    // Rows of campaigns feeding other lists do not count: nothing concerns the list, which is settled without a plan.
    await seedCampaigns(db, [{ id: 'other', segmentId: '506' }]);
    await seedTargetGroup(db, 'other', 0, 1500);
    expect(await runList('503')).toMatchObject({ sourceRead: 'unchanged', toAdd: 0, toRemove: 0 });

    await seedCampaigns(db, [{ id: 'l3b', segmentId: '503' }]);
    await seedTargetGroup(db, 'l3b', 2500, 3500);
    expect(await runList('503')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining('other campaigns'), toAdd: 500 });
    // The snapshot now holds both campaigns: the next run finds nothing new for the list.
    expect(await runList('503')).toMatchObject({ sourceRead: 'unchanged', toAdd: 0, toRemove: 0 });
  });

  it('a truncated table, a trigger disabled (even for a while), a view and a pruned log are read whole; replica-role writes are logged', async () => {
    const db = world.database.db;
    await startList('504', 'l4', 3000, 4000);

    // A replica applying changes (logical replication) still fires the ALWAYS triggers.
    await writer.query('BEGIN');
    await writer.query('SET LOCAL session_replication_role = replica');
    await writer.query(`UPDATE audience_sync.customers SET email = 'replicated@example.org' WHERE customer_id = 'c3001'`);
    await writer.query('COMMIT');
    expect(await runList('504')).toMatchObject({ sourceRead: 'changes', toAdd: 1, toRemove: 1 });

    await sql`ALTER TABLE audience_sync.customers DISABLE TRIGGER log_update`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'unlogged@example.org' WHERE customer_id = 'c3002'`.execute(db);
    expect(await runList('504')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining('triggers'), toAdd: 1, toRemove: 1 });
    await sql`ALTER TABLE audience_sync.customers ENABLE ALWAYS TRIGGER log_update`.execute(db);
    expect(await runList('504')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining('changed since the last plan') });

    // Disabled, written, enabled again between two plans: the log saw nothing, the catalog stamp did.
    await sql`ALTER TABLE audience_sync.customers DISABLE TRIGGER log_update`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'gap@example.org' WHERE customer_id = 'c3005'`.execute(db);
    await sql`ALTER TABLE audience_sync.customers ENABLE ALWAYS TRIGGER log_update`.execute(db);
    expect(await runList('504')).toMatchObject({
      sourceRead: 'whole',
      wholeReadReason: expect.stringContaining('changed since the last plan'),
      toAdd: 1,
      toRemove: 1,
    });

    // Pruned past what the list has read (as a clock stepping back could make it): read whole, never a gap.
    const { rows: pruned } = await sql<{ was: string }>`SELECT pruned_below::text AS was FROM audience_sync.change_log`.execute(db);
    await sql`
      UPDATE audience_sync.change_log
      SET pruned_below = ((SELECT pg_snapshot_xmin(changes_read_in)::text::bigint FROM audience_sync.lists WHERE audience_segment_id = 504) + 1)::text::xid8`.execute(
      db,
    );
    expect(await runList('504')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining('pruned past') });
    // Put back, or this list could keep reading whole while another session of the cluster holds the horizon right
    // there: a real pruning never passes a horizon a later snapshot can have. (The rows this pruned belonged to lists
    // this file reads no more.)
    await sql`UPDATE audience_sync.change_log SET pruned_below = ${pruned[0]!.was}::xid8`.execute(db);

    // A target group reloaded whole each day: TRUNCATE, then the rows again, fewer of them.
    await sql`CREATE TABLE tg_copy AS SELECT * FROM audience_sync.campaign_target_groups`.execute(db);
    await sql`TRUNCATE audience_sync.campaign_target_groups`.execute(db);
    await sql`INSERT INTO audience_sync.campaign_target_groups SELECT * FROM tg_copy WHERE customer_id <> 'c3003'`.execute(db);
    expect(await runList('504')).toMatchObject({ sourceRead: 'whole', wholeReadReason: 'a source table was truncated', toRemove: 1 });

    // What `ENABLE TRIGGER ALL` after `pg_restore --disable-triggers` leaves: enabled, not ALWAYS. Preflight names the fix.
    await sql`ALTER TABLE audience_sync.customers ENABLE TRIGGER log_delete`.execute(db);
    expect(await describeChangeLog(db)).toBe(
      'not in use, every run reads whole target groups: customers.log_delete is not enabled ALWAYS (ALTER TABLE audience_sync.customers ENABLE ALWAYS TRIGGER log_delete)',
    );
    expect(await runList('504')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining('not enabled ALWAYS') });
    await sql`ALTER TABLE audience_sync.customers ENABLE ALWAYS TRIGGER log_delete`.execute(db);
    expect(await describeChangeLog(db)).toMatch(/^in use/);

    // A view in place of the table: no triggers to log it.
    await sql`ALTER TABLE audience_sync.campaign_target_groups RENAME TO campaign_target_groups_t`.execute(db);
    await sql`CREATE VIEW audience_sync.campaign_target_groups AS SELECT * FROM audience_sync.campaign_target_groups_t`.execute(db);
    try {
      await sql`DELETE FROM audience_sync.campaign_target_groups_t WHERE customer_id = 'c3004'`.execute(db);
      expect(await describeChangeLog(db)).toContain('campaign_target_groups is not an ordinary table (a view?)');
      expect(await runList('504')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining('view'), toRemove: 1 });
    } finally {
      await sql`DROP VIEW audience_sync.campaign_target_groups`.execute(db);
      await sql`ALTER TABLE audience_sync.campaign_target_groups_t RENAME TO campaign_target_groups`.execute(db);
    }
    // The table back: its stamp is new to the list, so one more whole read, then the log again (naming nothing new).
    expect(await runList('504')).toMatchObject({ sourceRead: 'whole', wholeReadReason: expect.stringContaining('changed since the last plan') });
    expect(await runList('504')).toMatchObject({ sourceRead: 'unchanged' });
  });

  it("the periodic check keeps the log's changes when the whole target group then matches, and reads it whole when a write escaped the log", async () => {
    const db = world.database.db;
    await startList('507', 'l7', 0, 800);
    const due = () => sql`UPDATE audience_sync.lists SET whole_read_due = now() - interval '1 second' WHERE audience_segment_id = 507`.execute(db);
    const nextDue = async () => {
      const { rows } = await sql<{ days: number }>`
        SELECT round(extract(epoch FROM whole_read_due - now()) / 86400)::int AS days FROM audience_sync.lists WHERE audience_segment_id = 507`.execute(db);
      return rows[0]!.days;
    };

    // The source's side of the check runs beside the plan, on a connection of its own, for a list of this size too.
    const beside = { SOURCE_CHECK_BESIDE_IDENTIFIERS: '1' };
    await sql`UPDATE audience_sync.customers SET email = 'checked' || customer_id || '@example.org' WHERE customer_id = 'c10'`.execute(db);
    await due();
    expect(await runList('507', beside)).toMatchObject({
      sourceRead: 'checked',
      wholeReadReason: expect.stringContaining('checked at least every 7 days'),
      checkBeside: { failed: null },
      toAdd: 1,
      toRemove: 1,
    });
    // The check stands for the whole read: the next is due in a week, and until then the log is read alone.
    expect(await nextDue()).toBe(7);
    await sql`UPDATE audience_sync.customers SET email = 'logged' || customer_id || '@example.org' WHERE customer_id = 'c11'`.execute(db);
    expect(await runList('507')).toMatchObject({ sourceRead: 'changes', wholeReadReason: null, toAdd: 1, toRemove: 1 });

    // Writes the log missed (their log rows deleted, as if a trigger had been bypassed) beside one it has: the check
    // finds the snapshot differs from the source after the log's change, and the plan reads the whole target group.
    await sql`UPDATE audience_sync.customers SET email = 'escaped' || customer_id || '@example.org' WHERE customer_id = 'c12'`.execute(db);
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'l7' AND customer_id = 'c13'`.execute(db);
    await sql`DELETE FROM audience_sync.source_changes WHERE customer_id IN ('c12', 'c13')`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'logged' || customer_id || '@example.org' WHERE customer_id = 'c14'`.execute(db);
    await due();
    expect(await runList('507', beside)).toMatchObject({
      sourceRead: 'whole',
      wholeReadReason: expect.stringMatching(/checked at least every 7 days.*differed/),
      checkBeside: { failed: null },
      toAdd: 2,
      toRemove: 3,
    });
    expect(await nextDue()).toBe(7);
    expect(await runList('507')).toMatchObject({ sourceRead: 'unchanged', toAdd: 0, toRemove: 0 });

    // No connection to be had beside the plan (here: a server that refuses it): the plan checks in its own transaction.
    await sql`UPDATE audience_sync.customers SET email = 'escaped' || customer_id || '@example.net' WHERE customer_id = 'c15'`.execute(db);
    await sql`DELETE FROM audience_sync.source_changes WHERE customer_id = 'c15'`.execute(db);
    await due();
    const refused = { ...beside, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/refused' };
    expect(await runList('507', refused)).toMatchObject({
      sourceRead: 'whole',
      wholeReadReason: expect.stringMatching(/differed/),
      checkBeside: { failed: expect.stringContaining('ECONNREFUSED') },
      toAdd: 1,
      toRemove: 1,
    });
    await sql`UPDATE audience_sync.customers SET email = 'logged' || customer_id || '@example.net' WHERE customer_id = 'c16'`.execute(db);
    await due();
    const inPlan = await runList('507', refused);
    expect(inPlan).toMatchObject({ sourceRead: 'checked', checkBeside: { failed: expect.stringContaining('ECONNREFUSED') }, toAdd: 1, toRemove: 1 });
    // Below SOURCE_CHECK_BESIDE_IDENTIFIERS (100,000 by default), the list checks in its plan alone.
    await sql`UPDATE audience_sync.customers SET email = 'logged' || customer_id || '@example.net' WHERE customer_id = 'c17'`.execute(db);
    await due();
    const small = await runList('507');
    expect(small).toMatchObject({ sourceRead: 'checked', toAdd: 1, toRemove: 1 });
    expect(small.checkBeside).toBeUndefined();
  });

  it('the check beside a plan gives up a lock not granted within a second (a writer queued behind the plan would hold it forever)', async () => {
    // A writer's exclusive lock on a source table, as a TRUNCATE queued behind a plan's read of it would have.
    await writer.query('BEGIN');
    await writer.query('LOCK TABLE audience_sync.customers IN ACCESS EXCLUSIVE MODE');
    try {
      const started = Date.now();
      const side = await sourceChecksumBeside(world.databaseUrl, {}, ['l7']);
      expect(side).toEqual({ failed: expect.stringMatching(/^55P03: .*lock timeout/) });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await writer.query('ROLLBACK');
    }
    expect(await sourceChecksumBeside(world.databaseUrl, {}, ['l7'])).toEqual({ checksum: { n: expect.any(Number), h: expect.any(String) } });
  }, 15_000);

  it('pruning keeps the rows a list has not read, and drops those every list has', async () => {
    const db = world.database.db;
    await startList('505', 'l5', 4000, 5000);
    await startList('506', 'l6', 5000, 6000);
    const { rows: update } = await sql<{ xid: string }>`
      UPDATE audience_sync.customers SET email = 'p' || customer_id || '@example.org' WHERE customer_id IN ('c4001', 'c5001')
      RETURNING pg_current_xact_id()::text AS xid`.execute(db);
    const logged = async () =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.source_changes WHERE xid = ${update[0]!.xid}::xid8`.execute(db)).rows[0]!.n;
    // 505 reads the change and prunes after its run; 506 has not read it, so it stays for 506.
    expect(await runList('505')).toMatchObject({ sourceRead: 'changes', toAdd: 1, toRemove: 1 });
    expect(await logged()).toBe(2);
    expect(await runList('506')).toMatchObject({ sourceRead: 'changes', toAdd: 1, toRemove: 1 });
    await pruneChangeLog(db);
    // What is left is what some list may still read: nothing older than every list's snapshot.
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM audience_sync.source_changes
      WHERE xid < (SELECT min(pg_snapshot_xmin(changes_read_in)) FROM audience_sync.lists WHERE changes_read_in IS NOT NULL AND now() < whole_read_due)`.execute(
      db,
    );
    expect(rows[0]!.n).toBe(0);
  });

  it('upgrading to the change log with a source already replaced by a view: the view gets no triggers, the tables do', async () => {
    const t = await createTestDatabase('change_log_upgrade');
    const database = connect(t.url);
    try {
      const steps = migrator(database.db);
      expect((await steps.migrateTo('0006-list-snapshots')).error).toBeUndefined();
      await sql`ALTER TABLE audience_sync.customers RENAME TO crm_customers`.execute(database.db);
      await sql`CREATE VIEW audience_sync.customers AS SELECT * FROM audience_sync.crm_customers`.execute(database.db);
      expect((await steps.migrateToLatest()).error).toBeUndefined();
      const { rows } = await sql<{ relname: string; n: number }>`
        SELECT c.relname, count(t.oid)::int AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
        LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
        WHERE s.nspname = 'audience_sync' AND c.relname IN ('customers', 'crm_customers', 'campaign_target_groups')
        GROUP BY 1 ORDER BY 1`.execute(database.db);
      expect(rows).toEqual([
        { relname: 'campaign_target_groups', n: 4 },
        { relname: 'crm_customers', n: 0 },
        { relname: 'customers', n: 0 },
      ]);
      expect(await describeChangeLog(database.db)).toContain('customers is not an ordinary table (a view?)');
    } finally {
      await database.close();
      await t.drop();
    }
  });
});

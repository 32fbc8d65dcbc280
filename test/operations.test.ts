import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CriteoClient } from '../src/criteo/client.js';
import { silentLogger } from '../src/core/logger.js';
import { preflight } from '../src/sync/preflight.js';
import { planSync } from '../src/sync/run.js';
import { convergence, createWorld, ledgerOf, runCli, seedCampaigns, seedCustomers, seedTargetGroup, startCli, type World } from './helpers.js';

let world: World;
const segments = ['301', '302', '303', '304', '305', '306', '307', '308'];

beforeAll(async () => {
  world = await createWorld('operations', { segments: segments.map((id) => ({ id, advertiserId: '1' })) });
  const db = world.database.db;
  await seedCustomers(db, 0, 20_000);
});
afterAll(async () => world?.close());

const writes = (w: World) => w.sandbox.calls.filter((c) => c.operation === 'patch' || c.operation === 'delete');

describe('plan', () => {
  it('reports what run then does, and writes nothing to Criteo, the ledger or the run history', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'p1', segmentId: '301' }]);
    await seedTargetGroup(db, 'p1', 0, 3000);
    await world.run({ segmentIds: ['301'] });
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'p1' AND customer_id IN (SELECT 'c' || i FROM generate_series(0, 299) i)`.execute(
      db,
    );
    await seedTargetGroup(db, 'p1', 3000, 3500);

    const writesBefore = writes(world).length;
    const runsBefore = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.runs`.execute(db);
    const plan = await planSync({ db, config: world.config, log: silentLogger }, { segmentIds: ['301'] });
    expect(plan.lists).toEqual([expect.objectContaining({ segmentId: '301', action: 'sync', toAdd: 500, toRemove: 300, ledgerBefore: 3000, heldRemovals: 0 })]);
    expect(writes(world).length).toBe(writesBefore);
    expect((await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.runs`.execute(db)).rows[0]!.n).toBe(runsBefore.rows[0]!.n);
    expect((await convergence(world, '301')).ledger).toBe(3000);
    expect((await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.plan_entries`.execute(db)).rows[0]!.n).toBe(0);

    const run = await world.run({ segmentIds: ['301'] });
    expect(run.lists[0]).toMatchObject({ toAdd: 500, toRemove: 300, added: 500, removed: 300 });
    expect(await convergence(world, '301')).toMatchObject({ exact: true });
  });

  it('`plan --json` and `run --dry-run --json` print the same plan from a real process', async () => {
    const plan = await runCli(['plan', '--json', '--list', '301'], world.env);
    const dry = await runCli(['run', '--dry-run', '--json', '--list', '301'], world.env);
    expect(plan.status).toBe(0);
    expect(dry.status).toBe(0);
    const strip = (s: string) => (JSON.parse(s) as { lists: unknown[] }).lists;
    expect(strip(plan.stdout)).toEqual(strip(dry.stdout));
    expect(strip(plan.stdout)).toEqual([expect.objectContaining({ segmentId: '301', action: 'none', toAdd: 0, toRemove: 0 })]);
  });
});

describe('the mass-removal guard', () => {
  it('holds the removals of a list whose target group suddenly emptied, still makes its adds, and lets them through on request', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'g1', segmentId: '302' }]);
    await seedTargetGroup(db, 'g1', 0, 2000);
    await world.run({ segmentIds: ['302'] });
    // A failed daily update: 80% of the target group gone, 10 newcomers.
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 'g1' AND customer_id IN (SELECT 'c' || i FROM generate_series(0, 1599) i)`.execute(
      db,
    );
    await seedTargetGroup(db, 'g1', 5000, 5010);

    const plan = await planSync({ db, config: world.config, log: silentLogger }, { segmentIds: ['302'] });
    expect(plan.lists[0]).toMatchObject({ toAdd: 10, toRemove: 1600, heldRemovals: 1600, note: expect.stringContaining('MAX_REMOVAL_RATIO') });

    const held = await world.run({ segmentIds: ['302'] });
    expect(held.status).toBe('failed');
    expect(held.lists[0]).toMatchObject({ status: 'held', added: 10, removed: 0, heldRemovals: 1600, reason: expect.stringContaining('--allow-mass-removal') });
    expect(world.sandbox.members('302').size).toBe(2010);
    const recorded = await db
      .selectFrom('audience_sync.list_syncs')
      .select(['status', 'held_removals'])
      .where('run_id', '=', held.runId)
      .executeTakeFirstOrThrow();
    expect(recorded).toEqual({ status: 'held', held_removals: 1600 });
    // No later statement carried the adds' answer (the removals are held): the list wrote it on its own, and the
    // ledger took the newcomers.
    expect((await ledgerOf(db, '302')).size).toBe(2010);

    const allowed = await world.run({ segmentIds: ['302'], allowMassRemoval: true });
    expect(allowed.lists[0]).toMatchObject({ status: 'succeeded', removed: 1600 });
    expect(await convergence(world, '302')).toMatchObject({ exact: true, desired: 410 });
  });

  it('does not hold the emptying of a list at the end of its measurement period', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'g2', segmentId: '303' }]);
    await seedTargetGroup(db, 'g2', 0, 500);
    await world.run({ segmentIds: ['303'] });
    // A second ago: the run judges campaigns at a JavaScript instant, which has no microseconds.
    await sql`UPDATE audience_sync.campaigns SET measurement_ends_at = now() - interval '1 second' WHERE campaign_id = 'g2'`.execute(db);
    const ended = await world.run({ segmentIds: ['303'] });
    expect(ended.lists[0]).toMatchObject({ status: 'succeeded', emptied: true, removed: 500 });
    expect(world.sandbox.members('303').size).toBe(0);
  });
});

describe('resync', () => {
  it('--full repairs a list that drifted in Criteo, and never empties a list that should have members', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'r1', segmentId: '304' }]);
    await seedTargetGroup(db, 'r1', 0, 1200);
    await world.run({ segmentIds: ['304'] });
    // Drift: someone removed members in Criteo behind the job's back, and added a stranger.
    const held = world.sandbox.members('304') as Set<string>;
    const gone = [...held].slice(0, 200);
    for (const id of gone) held.delete(id);
    held.add('f'.repeat(64));
    // An ordinary run cannot see it: the ledger says all is well.
    expect((await world.run({ segmentIds: ['304'] })).lists[0]).toMatchObject({ toAdd: 0, toRemove: 0 });

    const r = await runCli(['resync', '--list', '304', '--full', '--json'], world.env);
    expect(r.status).toBe(0);
    const summary = JSON.parse(r.stdout) as { trigger: string; lists: { toAdd: number; toRemove: number; status: string }[] };
    expect(summary.trigger).toBe('resync');
    expect(summary.lists[0]).toMatchObject({ status: 'succeeded', toAdd: 1200, toRemove: 0 });
    expect(r.stderr).toContain('resync progress'); // not a TTY: plain log lines
    const members = world.sandbox.members('304');
    expect(gone.every((id) => members.has(id))).toBe(true);
    expect(writes(world).filter((c) => c.segmentId === '304' && c.operation === 'delete')).toEqual([]);
  });

  it('--campaign resyncs only the lists that campaign feeds, and names an unknown campaign in one line', async () => {
    const before = world.sandbox.calls.length;
    const r = await runCli(['resync', '--campaign', 'r1', '--json'], world.env);
    expect(r.status).toBe(0);
    expect(
      new Set(
        world.sandbox.calls
          .slice(before)
          .map((c) => c.segmentId)
          .filter(Boolean),
      ),
    ).toEqual(new Set());
    expect((JSON.parse(r.stdout) as { lists: { segmentId: string }[] }).lists.map((l) => l.segmentId)).toEqual(['304']);
    const bad = await runCli(['resync', '--campaign', 'nope'], world.env);
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim()).toBe('audience-sync: --campaign: no campaign named nope');
  });
});

describe('overlap', () => {
  it('two run processes started together sync each list exactly once and leave every list exact', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [
      { id: 'o1', segmentId: '305' },
      { id: 'o2', segmentId: '306' },
    ]);
    await seedTargetGroup(db, 'o1', 0, 9000);
    await seedTargetGroup(db, 'o2', 4000, 12_000);
    // Slow answers keep each list's lock held long enough for the runs to collide.
    world.sandbox.setFaults({ script: [{ operation: 'patch', nth: 1, delayMs: 300, times: 1000 }] });
    const before = writes(world).length;
    const env = { ...world.env, CRITEO_BATCH_SIZE: '1000', LOCK_WAIT_SECONDS: '60' };
    const [a, b] = await Promise.all([runCli(['run', '--json', '--list', '305', '306'], env), runCli(['run', '--json', '--list', '305', '306'], env)]);
    world.sandbox.setFaults(undefined);
    expect([a.status, b.status]).toEqual([0, 0]);
    const sent = writes(world).slice(before);
    // Exactly the minimum: 9 batches for 9,000 and 8 for 8,000, never a batch sent twice.
    expect(sent.filter((c) => c.segmentId === '305')).toHaveLength(9);
    expect(sent.filter((c) => c.segmentId === '306')).toHaveLength(8);
    const [sa, sb] = [a, b].map((r) => JSON.parse(r.stdout) as { lists: { segmentId: string; added: number }[] });
    for (const id of ['305', '306']) {
      const added = [sa!, sb!].map((s) => s.lists.find((l) => l.segmentId === id)!.added).sort((x, y) => x - y);
      expect(added[0]).toBe(0); // the second run found nothing left to do
    }
    expect(await convergence(world, '305')).toMatchObject({ exact: true, desired: 9000 });
    expect(await convergence(world, '306')).toMatchObject({ exact: true, desired: 8000 });
  });

  it('a run that cannot get a list within LOCK_WAIT_SECONDS skips it and names the run holding it', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 'o3', segmentId: '307' }]);
    await seedTargetGroup(db, 'o3', 0, 5000);
    world.sandbox.setFaults({ script: [{ operation: 'patch', nth: 1, delayMs: 1500, times: 1000 }] });
    const env = { ...world.env, CRITEO_BATCH_SIZE: '1000', CRITEO_CONCURRENCY: '1', LOCK_WAIT_SECONDS: '0' };
    const first = startCli(['run', '--json', '--list', '307'], env);
    // Wait until the first process holds the list.
    for (let i = 0; i < 100; i++) {
      const { rows } = await sql<{
        n: number;
      }>`SELECT count(*)::int AS n FROM audience_sync.list_syncs WHERE audience_segment_id = 307 AND status = 'sending'`.execute(db);
      if (rows[0]!.n > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const second = await runCli(['run', '--json', '--list', '307'], env);
    const firstDone = await first.done;
    world.sandbox.setFaults(undefined);
    expect(firstDone.status).toBe(0);
    const s2 = JSON.parse(second.stdout) as { runId: number; lists: { status: string; reason: string }[] };
    const s1 = JSON.parse(firstDone.stdout) as { runId: number };
    expect(s2.lists[0]).toMatchObject({ status: 'skipped', reason: `list 307 is being synced by run ${s1.runId}` });
    expect(await convergence(world, '307')).toMatchObject({ exact: true });
  });
});

describe('schedule', () => {
  it('runs on its cron, and on SIGTERM mid-run lets the batch in flight finish, records the run interrupted and exits 0', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [{ id: 's1', segmentId: '308' }]);
    await seedTargetGroup(db, 's1', 0, 8000);
    world.sandbox.setFaults({ script: [{ operation: 'patch', nth: 1, delayMs: 400, times: 1000 }] });
    // node-cron's optional seconds field: every second, so the test need not wait a minute.
    const proc = startCli(['schedule'], { ...world.env, SYNC_CRON: '* * * * * *', CRITEO_BATCH_SIZE: '500', CRITEO_CONCURRENCY: '1' });
    let runId: number | undefined;
    for (let i = 0; i < 200 && runId === undefined; i++) {
      const { rows } = await sql<{ run_id: number }>`
        SELECT s.run_id FROM audience_sync.list_syncs s JOIN audience_sync.batches b USING (list_sync_id)
        WHERE s.audience_segment_id = 308 AND b.status = 'confirmed' LIMIT 1`.execute(db);
      runId = rows[0]?.run_id;
      if (runId === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(runId, proc.output().stderr.slice(-3000)).toBeDefined();
    proc.child.kill('SIGTERM');
    const done = await proc.done;
    world.sandbox.setFaults(undefined);
    expect(done.status).toBe(0);
    const run = await db.selectFrom('audience_sync.runs').select(['status', 'trigger']).where('run_id', '=', runId!).executeTakeFirstOrThrow();
    expect(run).toEqual({ status: 'interrupted', trigger: 'schedule' });
    const batches = await db
      .selectFrom('audience_sync.batches')
      .innerJoin('audience_sync.list_syncs', 'audience_sync.list_syncs.list_sync_id', 'audience_sync.batches.list_sync_id')
      .select(['audience_sync.batches.status'])
      .where('audience_sync.list_syncs.run_id', '=', runId!)
      .execute();
    // The batch in flight finished and was recorded; nothing was left mid-air.
    expect(batches.every((b) => b.status === 'confirmed')).toBe(true);
    expect(batches.length).toBeLessThan(16);
    expect((await convergence(world, '308')).ledger).toBe(batches.length * 500);
    // The next run picks the rest up.
    await world.run({ segmentIds: ['308'] });
    expect(await convergence(world, '308')).toMatchObject({ exact: true, desired: 8000 });
  });
});

describe('preflight', () => {
  it('names the list whose advertiser the credentials cannot reach, and exits 1', async () => {
    world.sandbox.addSegment({ id: '309', advertiserId: '2' });
    const other = await createWorld('preflight', {
      clients: [{ clientId: 'test-client', clientSecret: 'test-secret-do-not-log', advertiserIds: ['1'] }],
      segments: [
        { id: '401', advertiserId: '1' },
        { id: '402', advertiserId: '2' },
      ],
    });
    try {
      const db = other.database.db;
      await seedCustomers(db, 0, 100);
      await seedCampaigns(db, [
        { id: 'ok', segmentId: '401', advertiserId: '1' },
        { id: 'foreign', segmentId: '402', advertiserId: '2' },
      ]);
      await seedTargetGroup(db, 'ok', 0, 100);
      await seedTargetGroup(db, 'foreign', 0, 50);
      const client = new CriteoClient(other.config.criteo, silentLogger);
      const checks = await preflight(db, client);
      await client.close();
      expect(checks.find((c) => c.name.startsWith('list 401'))).toMatchObject({ ok: true });
      expect(checks.find((c) => c.name.startsWith('list 402'))).toMatchObject({ ok: false, detail: expect.stringContaining('advertiser (2)') });
      expect(checks.find((c) => c.name === 'target group ok')).toMatchObject({ ok: true, detail: expect.stringContaining('100 of 100') });

      const r = await runCli(['preflight'], other.env);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/^FAIL {2}list 402 \(foreign\): not found under these credentials/m);
      expect(r.stdout).toMatch(/^ok {4}criteo token/m);
      expect(r.stdout).toMatch(/^ok {4}email rule: RFC 6531, Unicode 17\.0 case mapping; NFC of Postgres \d+; ICU \S+/m);
    } finally {
      await other.close();
    }
  });
});

describe('history', () => {
  it('`runs` lists the last runs and `runs show` shows one list by list and batch by batch', async () => {
    const list = await runCli(['runs', '--json', '--limit', '3'], world.env);
    expect(list.status).toBe(0);
    const rows = JSON.parse(list.stdout) as { runId: number; status: string }[];
    expect(rows).toHaveLength(3);
    const show = await runCli(['runs', 'show', String(rows[rows.length - 1]!.runId)], world.env);
    expect(show.status).toBe(0);
    expect(show.stdout).toMatch(/^run \d+ \(/);
    const missing = await runCli(['runs', 'show', '999999'], world.env);
    expect(missing.status).toBe(2);
    expect(missing.stderr.trim()).toBe('audience-sync: no run 999999');
  });
});

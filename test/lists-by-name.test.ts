import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorld, runCli, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * Campaigns that name their list (campaigns.audience_segment_name) instead of
 * giving its id: found or created under the campaign's advertiser at the
 * start of a run, bound in the job's own table, never written to the source.
 */

let world: World;
const DAY = 86_400_000;

beforeAll(async () => {
  world = await createWorld('lists_by_name', {
    segments: [
      { id: '901', advertiserId: '22', name: 'Twice' },
      { id: '902', advertiserId: '22', name: 'Twice' },
      { id: '903', advertiserId: '22', name: 'By id' },
    ],
  });
  const db = world.database.db;
  await seedCustomers(db, 0, 120);
  const campaign = (id: string, advertiser: string, segmentId: string | null, name: string | null) =>
    sql`INSERT INTO audience_sync.campaigns (campaign_id, name, advertiser_id, audience_segment_id, audience_segment_name, starts_at, measurement_ends_at)
        VALUES (${id}, ${`Campaign ${id}`}, ${advertiser}::bigint, ${segmentId}::bigint, ${name}, ${new Date(Date.now() - DAY)}, ${new Date(Date.now() + 30 * DAY)})`.execute(
      db,
    );
  await campaign('spring', '21', null, 'Spring buyers');
  await campaign('spring-too', '21', null, 'Spring buyers');
  await campaign('twice', '22', null, 'Twice');
  await campaign('by-id', '22', '903', null);
  await seedTargetGroup(db, 'spring', 0, 40);
  await seedTargetGroup(db, 'spring-too', 30, 60);
  await seedTargetGroup(db, 'twice', 60, 90);
  await seedTargetGroup(db, 'by-id', 90, 120);
});
afterAll(async () => world?.close());

interface Summary {
  status: string;
  bindings: { campaignId: string; segmentId: string | null; state: string; created: boolean; reason: string | null }[];
  lists: { segmentId: string; status: string; added: number }[];
}

async function run(): Promise<{ status: number | null; summary: Summary }> {
  const r = await runCli(['run', '--json'], world.env);
  return { status: r.status, summary: JSON.parse(r.stdout) as Summary };
}

describe('campaigns that name their list', () => {
  it('a plan says what it would do and creates nothing', async () => {
    const r = await runCli(['plan', '--json'], world.env);
    expect(r.status).toBe(0);
    const plan = JSON.parse(r.stdout) as Pick<Summary, 'bindings'>;
    expect(plan.bindings.find((b) => b.campaignId === 'spring')).toMatchObject({ state: 'to create', segmentId: null });
    expect(world.sandbox.calls.filter((c) => c.operation === 'create')).toEqual([]);
  });

  it('the first run creates the list once for both campaigns naming it, and syncs it; a duplicate name fails only its campaign', async () => {
    const { status, summary } = await run();
    expect(status).toBe(1);
    const spring = summary.bindings.find((b) => b.campaignId === 'spring')!;
    expect(spring).toMatchObject({ state: 'created', created: true });
    expect(summary.bindings.find((b) => b.campaignId === 'spring-too')).toMatchObject({ state: 'created', segmentId: spring.segmentId });
    expect(summary.bindings.find((b) => b.campaignId === 'twice')).toMatchObject({
      state: 'failed',
      segmentId: null,
      reason: expect.stringContaining('advertiser 22 has 2 contact lists named "Twice" (ids 901, 902)'),
    });
    expect(world.sandbox.calls.filter((c) => c.operation === 'create')).toHaveLength(1);
    const lists = new Map(summary.lists.map((l) => [l.segmentId, l]));
    expect(lists.get(spring.segmentId!)).toMatchObject({ status: 'succeeded', added: 60 });
    expect(world.sandbox.members(spring.segmentId!).size).toBe(60);
    expect(lists.get('903')).toMatchObject({ status: 'succeeded', added: 30 });
    expect(lists.has('901') || lists.has('902')).toBe(false);
    // The source is never written: the campaign still names its list and has no id.
    const { rows } = await sql<{ id: string | null }>`SELECT audience_segment_id::text AS id FROM audience_sync.campaigns WHERE campaign_id = 'spring'`.execute(
      world.database.db,
    );
    expect(rows[0]!.id).toBeNull();
  });

  it('the next run finds the list it created, creates nothing, and sends nothing new', async () => {
    const creates = world.sandbox.calls.filter((c) => c.operation === 'create').length;
    const { summary } = await run();
    expect(summary.bindings.find((b) => b.campaignId === 'spring')).toMatchObject({ state: 'found', created: true });
    expect(world.sandbox.calls.filter((c) => c.operation === 'create')).toHaveLength(creates);
    const spring = summary.bindings.find((b) => b.campaignId === 'spring')!;
    expect(summary.lists.find((l) => l.segmentId === spring.segmentId)).toMatchObject({ status: 'succeeded', added: 0 });
    // `runs show` names the binding.
    const runId = String((JSON.parse((await runCli(['runs', '--json', '--limit', '1'], world.env)).stdout) as { runId: number }[])[0]!.runId);
    expect((await runCli(['runs', 'show', runId], world.env)).stdout).toContain(
      `campaign spring names list "Spring buyers": bound to list ${spring.segmentId} (created by the job)`,
    );
    // The report says Criteo may not serve the new list yet, and only for that list.
    const report = JSON.parse((await runCli(['report', '--format', 'json'], world.env)).stdout) as { warnings: { code: string; segmentId: string }[] };
    expect(report.warnings.filter((w) => w.code === 'new_list').map((w) => w.segmentId)).toEqual([spring.segmentId]);
  });

  it('a campaign given its id once more leaves its binding, and its list is fed by id', async () => {
    await sql`UPDATE audience_sync.campaigns SET audience_segment_id = 903, audience_segment_name = NULL WHERE campaign_id = 'twice'`.execute(
      world.database.db,
    );
    const { status, summary } = await run();
    expect(status).toBe(0);
    expect(summary.bindings.map((b) => b.campaignId)).toEqual(['spring', 'spring-too']);
    expect(world.sandbox.members('903').size).toBe(60);
  });
});

describe('`lists create`', () => {
  it('run by two CSMs at once ends with one list, and both print its id', async () => {
    const create = () => runCli(['lists', 'create', '--advertiser', '23', '--name', 'Summer buyers'], world.env);
    const [a, b] = await Promise.all([create(), create()]);
    expect([a.status, b.status]).toEqual([0, 0]);
    expect(a.stdout.trim()).toMatch(/^\d+$/);
    expect(b.stdout.trim()).toBe(a.stdout.trim());
    const search = await runCli(['lists', '--advertiser', '23', '--format', 'json'], world.env);
    const rows = JSON.parse(search.stdout) as { segmentId: string; name: string | null }[];
    expect(rows.filter((r) => r.name === 'Summer buyers').map((r) => r.segmentId)).toEqual([a.stdout.trim()]);
    // Once more: found, not created.
    const again = await runCli(['lists', 'create', '--advertiser', '23', '--name', 'Summer buyers', '--json'], world.env);
    expect(JSON.parse(again.stdout)).toMatchObject({ id: a.stdout.trim(), created: false });
  });

  it('refuses a name that matches two lists, naming both, with exit 1', async () => {
    const r = await runCli(['lists', 'create', '--advertiser', '22', '--name', 'Twice'], world.env);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toBe(
      'audience-sync: advertiser 22 has 2 contact lists named "Twice" (ids 901, 902): rename all but one in Criteo, or give the campaign audience_segment_id',
    );
  });
});

describe('`lists`', () => {
  let many: World;
  beforeAll(async () => {
    many = await createWorld('lists_many', {
      segments: Array.from({ length: 130 }, (_, i) => ({ id: String(5000 + i), advertiserId: i < 70 ? '31' : '32', name: `List ${i}` })),
    });
    await sql`INSERT INTO audience_sync.campaigns (campaign_id, name, advertiser_id, audience_segment_id, starts_at, measurement_ends_at)
              VALUES ('feeds-5001', 'Feeds 5001', 31, 5001, now() - interval '1 day', now() + interval '30 days'),
                     ('lost', 'Lost', 31, 777777, now() - interval '1 day', now() + interval '30 days')`.execute(many.database.db);
  });
  afterAll(async () => many?.close());

  it('lists every contact list of both advertisers across pages, with what the job knows, and the list a campaign names that Criteo does not return', async () => {
    const r = await runCli(['lists', '--format', 'json'], many.env);
    expect(r.status).toBe(0);
    const rows = JSON.parse(r.stdout) as {
      segmentId: string;
      advertiserId: string | null;
      notFound: string | null;
      campaigns: { campaignId: string; phase: string }[];
    }[];
    expect(rows.filter((x) => x.notFound === null)).toHaveLength(130);
    expect(new Set(rows.map((x) => x.advertiserId))).toEqual(new Set(['31', '32', null]));
    expect(rows.find((x) => x.segmentId === '5001')!.campaigns).toEqual([{ campaignId: 'feeds-5001', advertiserId: '31', phase: 'active' }]);
    expect(rows.find((x) => x.segmentId === '777777')!.notFound).toContain("not returned by Criteo's search");
    // No statistics call without --refresh.
    expect(many.sandbox.calls.filter((c) => c.operation === 'statistics')).toEqual([]);
    const table = await runCli(['lists', '--advertiser', '32'], many.env);
    expect(table.stdout).toContain('List 129');
    expect(table.stdout).not.toContain('List 0 ');
  });
});

describe('a campaigns view without audience_segment_name', () => {
  it('keeps working: every campaign gives its id, and the run syncs them', async () => {
    const db = world.database.db;
    await sql`ALTER TABLE audience_sync.campaigns RENAME TO campaigns_table`.execute(db);
    await sql`
      CREATE VIEW audience_sync.campaigns AS
      SELECT campaign_id, name, advertiser_id, audience_segment_id, starts_at, measurement_ends_at
      FROM audience_sync.campaigns_table WHERE audience_segment_id IS NOT NULL`.execute(db);
    try {
      await seedTargetGroup(db, 'by-id', 100, 110);
      const { status, summary } = await run();
      expect(status).toBe(0);
      expect(summary.bindings).toEqual([]);
      expect(summary.lists.find((l) => l.segmentId === '903')).toMatchObject({ status: 'succeeded' });
      expect(world.sandbox.members('903').size).toBe(60);
      expect((await runCli(['plan', '--json'], world.env)).status).toBe(0);
    } finally {
      await sql`DROP VIEW audience_sync.campaigns`.execute(db);
      await sql`ALTER TABLE audience_sync.campaigns_table RENAME TO campaigns`.execute(db);
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorld, runCli, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * A list never takes another advertiser's customers. The app here may use
 * every advertiser (an agency's), so Criteo itself would accept the writes:
 * the run must refuse them, as preflight does, and sync the other lists.
 */

let world: World;

beforeAll(async () => {
  world = await createWorld('advertisers', {
    segments: [
      { id: '701', advertiserId: '11' },
      { id: '702', advertiserId: '11' },
      { id: '703', advertiserId: '12' },
    ],
  });
  const db = world.database.db;
  await seedCustomers(db, 0, 300);
  await seedCampaigns(db, [
    // Two advertisers feeding one list.
    { id: 'mixed-11', segmentId: '701', advertiserId: '11' },
    { id: 'mixed-12', segmentId: '701', advertiserId: '12' },
    // Advertiser 12's campaign pointing at advertiser 11's list.
    { id: 'foreign', segmentId: '702', advertiserId: '12' },
    // A campaign of the list's own advertiser.
    { id: 'own', segmentId: '703', advertiserId: '12' },
  ]);
  await seedTargetGroup(db, 'mixed-11', 0, 100);
  await seedTargetGroup(db, 'mixed-12', 100, 200);
  await seedTargetGroup(db, 'foreign', 0, 150);
  await seedTargetGroup(db, 'own', 200, 300);
});
afterAll(async () => world?.close());

interface Summary {
  status: string;
  lists: { segmentId: string; status: string; reason: string | null; added: number }[];
}

describe('a list and the advertisers of its campaigns', () => {
  it('preflight names both mix-ups', async () => {
    const r = await runCli(['preflight'], world.env);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/list 701 .*campaigns feeding it name several advertisers \(11, 12\)/);
    expect(r.stdout).toMatch(/list 702 .*belongs to advertiser 11, but its campaigns name advertiser 12/);
  });

  it("run refuses both lists with preflight's line, sends them nothing, and syncs the list whose advertiser matches", async () => {
    const before = world.sandbox.calls.length;
    const r = await runCli(['run', '--json'], world.env);
    expect(r.status).toBe(1);
    const summary = JSON.parse(r.stdout) as Summary;
    const by = new Map(summary.lists.map((l) => [l.segmentId, l]));
    expect(by.get('701')).toMatchObject({
      status: 'failed',
      added: 0,
      reason: 'list 701 campaigns feeding it name several advertisers (11, 12): nothing was sent to it',
    });
    expect(by.get('702')).toMatchObject({
      status: 'failed',
      added: 0,
      reason: 'list 702 belongs to advertiser 11, but its campaigns name advertiser 12: nothing was sent to it',
    });
    expect(by.get('703')).toMatchObject({ status: 'succeeded', added: 100 });
    const calls = world.sandbox.calls.slice(before);
    const writes = calls.filter((c) => c.operation === 'patch' || c.operation === 'delete');
    expect(writes.map((c) => c.segmentId)).toEqual(['703']);
    expect(world.sandbox.members('701').size).toBe(0);
    expect(world.sandbox.members('702').size).toBe(0);
    // One search served every list.
    expect(calls.filter((c) => c.operation === 'search')).toHaveLength(1);
    // `runs show` keeps the reason.
    const shown = await runCli(['runs', 'show', String((JSON.parse(r.stdout) as { runId: number }).runId)], world.env);
    expect(shown.stdout).toContain('belongs to advertiser 11, but its campaigns name advertiser 12');
  });
});

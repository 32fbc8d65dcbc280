import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../dev/free-port.js';
import { buildCoverageReport } from '../src/report/build.js';
import type { RunSummary } from '../src/sync/run.js';
import { createWorld, runCli, seedCampaigns, seedCustomers, seedTargetGroup, startCli, type World } from './helpers.js';
import { PUSHGATEWAY, hasPushgateway, startPushgateway } from './pushgateway.js';

/**
 * PUSHGATEWAY_URL against Debian's real Pushgateway on a loopback port: after
 * `run` and `resync` the run's and each list's metrics are readable from its
 * /metrics; nothing is pushed when unset; an unreachable gateway is a logged
 * warning and the run still exits 0.
 */

if (!hasPushgateway) console.warn(`report-pushgateway.test.ts: SKIPPED, ${PUSHGATEWAY} is absent (Debian: apt-get install -y prometheus-pushgateway)`);

let world: World;
let gateway: { url: string; stop: () => Promise<void> } | undefined;

/** The gateway's /metrics as `name{sorted labels}` → value, our series only. */
async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(audience_sync_\w+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = [...m[2]!.matchAll(/(\w+)="([^"]*)"/g)]
      .filter(([, k]) => k !== 'instance' && k !== 'job')
      .map(([, k, v]) => `${k}=${v}`)
      .sort()
      .join(',');
    out.set(`${m[1]}{${labels}}`, Number(m[3]));
  }
  return out;
}

beforeAll(async () => {
  world = await createWorld('report_push', { segments: ['701', '702'].map((id) => ({ id, advertiserId: '1' })) });
  const db = world.database.db;
  await seedCampaigns(db, [
    { id: 'p1', segmentId: '701' },
    { id: 'p2', segmentId: '702' },
  ]);
  await seedCustomers(db, 0, 3000);
  await seedTargetGroup(db, 'p1', 0, 2000);
  await seedTargetGroup(db, 'p2', 1000, 3000);
  if (hasPushgateway) gateway = await startPushgateway();
});
afterAll(async () => {
  await gateway?.stop();
  await world?.close();
});

describe.skipIf(!hasPushgateway)(
  `the Pushgateway${hasPushgateway ? '' : ` (SKIPPED: ${PUSHGATEWAY} is absent; apt-get install -y prometheus-pushgateway)`}`,
  () => {
    it('gets nothing when PUSHGATEWAY_URL is unset, then the run and per-list metrics after `run` and `resync`', async () => {
      const silent = await runCli(['run', '--json'], world.env);
      expect(silent.status, silent.stderr).toBe(0);
      expect([...(await scrape(gateway!.url)).keys()]).toEqual([]);

      // A day of churn on 701, then a run that pushes.
      await seedCustomers(world.database.db, 3000, 3100);
      await seedTargetGroup(world.database.db, 'p1', 3000, 3100);
      const env = { ...world.env, PUSHGATEWAY_URL: gateway!.url };
      const pushed = await runCli(['run', '--json'], env);
      expect(pushed.status, pushed.stderr).toBe(0);
      const summary = JSON.parse(pushed.stdout) as RunSummary;
      const report = await buildCoverageReport(world.database.db, { lowMatchRate: 0.3 });
      const list = (id: string) => report.lists.find((l) => l.segmentId === id)!.latest!;

      const m = await scrape(gateway!.url);
      expect(m.get('audience_sync_run_id{trigger=cli}')).toBe(summary.runId);
      expect(m.get('audience_sync_run_succeeded{trigger=cli}')).toBe(1);
      expect(m.get('audience_sync_run_added_identifiers{trigger=cli}')).toBe(100);
      expect(m.get('audience_sync_run_removed_identifiers{trigger=cli}')).toBe(0);
      expect(m.get('audience_sync_run_lists_failed{trigger=cli}')).toBe(0);
      expect(m.get('audience_sync_run_duration_seconds{trigger=cli}')).toBeCloseTo(summary.durationMs / 1000, 3);
      expect(m.get('audience_sync_run_finished_timestamp_seconds{trigger=cli}')).toBeCloseTo(Date.parse(summary.finishedAt) / 1000, 3);
      expect(m.get('audience_sync_list_added_identifiers{list=701}')).toBe(100);
      expect(m.get('audience_sync_list_failed{list=701}')).toBe(0);
      expect(m.get('audience_sync_list_synced_identifiers{list=701}')).toBe(2100);
      expect(m.get('audience_sync_list_target_group_customers{list=701}')).toBe(2100);
      expect(m.get('audience_sync_list_criteo_matched{list=701}')).toBe(list('701').criteo!.matched);
      expect(m.get('audience_sync_list_match_rate_ratio{list=701}')).toBeCloseTo(list('701').matchRate!, 12);
      expect(m.get('audience_sync_list_coverage_ratio{list=701}')).toBeCloseTo(list('701').coverage!, 12);
      expect(m.get('audience_sync_list_criteo_read_timestamp_seconds{list=701}')).toBeCloseTo(Date.parse(list('701').criteo!.readAt) / 1000, 3);
      // 702 changed nothing: its figures are its latest (statistics from the first run).
      expect(m.get('audience_sync_list_added_identifiers{list=702}')).toBe(0);
      expect(m.get('audience_sync_list_match_rate_ratio{list=702}')).toBeCloseTo(list('702').matchRate!, 12);

      // A CSM's resync of 702 replaces 702's group and adds a resync run group; 701's and the daily run's stay.
      const resync = await runCli(['resync', '--list', '702', '--full', '--json'], env);
      expect(resync.status, resync.stderr).toBe(0);
      const resyncId = (JSON.parse(resync.stdout) as RunSummary).runId;
      const after = await scrape(gateway!.url);
      expect(after.get('audience_sync_run_id{trigger=resync}')).toBe(resyncId);
      expect(after.get('audience_sync_run_added_identifiers{trigger=resync}')).toBe(2000);
      expect(after.get('audience_sync_run_id{trigger=cli}')).toBe(summary.runId);
      expect(after.get('audience_sync_list_run_id{list=702}')).toBe(resyncId);
      expect(after.get('audience_sync_list_run_id{list=701}')).toBe(summary.runId);
    });

    it('`schedule` pushes after each scheduled run', async () => {
      const cli = startCli(['schedule'], { ...world.env, PUSHGATEWAY_URL: gateway!.url, SYNC_CRON: '*/2 * * * * *', SYNC_TIMEZONE: 'UTC' });
      try {
        await expect
          .poll(async () => (await scrape(gateway!.url)).get('audience_sync_run_succeeded{trigger=schedule}'), { timeout: 30_000, interval: 500 })
          .toBe(1);
      } finally {
        cli.child.kill('SIGTERM');
        await cli.done;
      }
    });

    it('an unreachable Pushgateway is a logged warning; the run still succeeds', async () => {
      const closed = await freePort();
      const out = await runCli(['run', '--json'], { ...world.env, PUSHGATEWAY_URL: `http://127.0.0.1:${closed}` });
      expect(out.status).toBe(0);
      expect((JSON.parse(out.stdout) as RunSummary).status).toBe('succeeded');
      const warning = out.stderr.split('\n').find((l) => l.includes('could not push metrics to the Pushgateway'));
      expect(warning).toBeDefined();
      expect(JSON.parse(warning!)).toMatchObject({ level: 40, group: { trigger: 'cli' } });
    });
  },
);

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/core/logger.js';
import { CriteoClient } from '../src/criteo/client.js';
import { pushRunMetrics } from '../src/report/metrics.js';
import { preflight, type Check } from '../src/sync/preflight.js';
import { createWorld, runCli, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';
import { hasPushgateway, startPushgateway } from './pushgateway.js';

/**
 * What the job does with Criteo's version lifecycle outside the client:
 * preflight warns while CRITEO_API_VERSION is deprecated and fails once it is
 * retired (in process and as the CLI prints it), and the Pushgateway push
 * carries the sunset. A migrated database and the sandbox on loopback.
 */

const SUNSET = '2027-07-01';
let world: World;
const clients: CriteoClient[] = [];

function client(): CriteoClient {
  const c = new CriteoClient(world.config.criteo, silentLogger);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  world = await createWorld('version_lifecycle', { segments: [{ id: '801', advertiserId: '1' }] });
  const db = world.database.db;
  await seedCustomers(db, 0, 50);
  await seedCampaigns(db, [{ id: 'v1', segmentId: '801', advertiserId: '1' }]);
  await seedTargetGroup(db, 'v1', 0, 50);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  world.sandbox.setVersionLifecycle('supported');
  expect(world.sandbox.contractViolations).toEqual([]);
});
afterAll(async () => {
  await world?.close();
});

const versionCheck = (checks: Check[]) => checks.find((c) => c.name === 'criteo api version');

describe('preflight', () => {
  it('says the version is fine while Criteo announces nothing', async () => {
    const checks = await preflight(world.database.db, client());
    expect(checks.every((c) => c.ok && !c.warning)).toBe(true);
    expect(versionCheck(checks)).toEqual({ name: 'criteo api version', ok: true, detail: '2026-07: Criteo announces no deprecation' });
  });

  it('warns, without failing, while the version is deprecated: the sunset date and CRITEO_API_VERSION', async () => {
    world.sandbox.setVersionLifecycle('deprecated', SUNSET);
    const checks = await preflight(world.database.db, client());
    expect(checks.every((c) => c.ok)).toBe(true);
    expect(versionCheck(checks)).toEqual({
      name: 'criteo api version',
      ok: true,
      warning: true,
      detail: expect.stringMatching(/^Criteo API version 2026-07 is deprecated by Criteo and stops answering on 2027-07-01 .*set CRITEO_API_VERSION/),
    });
    // The lists were still checked.
    expect(checks.find((c) => c.name.startsWith('list 801'))).toMatchObject({ ok: true });

    const cli = await runCli(['preflight'], world.env);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/^WARN {2}criteo api version: Criteo API version 2026-07 is deprecated by Criteo and stops answering on 2027-07-01/m);
    expect(cli.stdout).toMatch(/^ok {4}list 801/m);
    const json = await runCli(['preflight', '--json'], world.env);
    expect(versionCheck(JSON.parse(json.stdout) as Check[])).toMatchObject({ ok: true, warning: true });
  });

  it('asks with one small search when no active list made it search', async () => {
    world.sandbox.setVersionLifecycle('deprecated', SUNSET);
    const searches = () => world.sandbox.calls.filter((c) => c.operation === 'search').length;
    const before = searches();
    const checks = await preflight(world.database.db, client(), new Date('2100-01-01T00:00:00Z'));
    expect(checks.some((c) => c.name.startsWith('list '))).toBe(false);
    expect(versionCheck(checks)).toMatchObject({ ok: true, warning: true, detail: expect.stringContaining(SUNSET) });
    expect(searches()).toBe(before + 1);
  });

  it('fails once the version is retired (410), naming CRITEO_API_VERSION, and the CLI exits 1', async () => {
    world.sandbox.setVersionLifecycle('retired');
    const checks = await preflight(world.database.db, client());
    expect(checks.find((c) => c.name === 'criteo segment search')).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/^Criteo API version 2026-07 is retired by Criteo \(HTTP 410 api-version-retired\): set CRITEO_API_VERSION/),
    });
    expect(versionCheck(checks)).toEqual({
      name: 'criteo api version',
      ok: false,
      detail: 'Criteo API version 2026-07 is retired by Criteo: set CRITEO_API_VERSION to a supported version',
    });
    const cli = await runCli(['preflight'], world.env);
    expect(cli.status).toBe(1);
    expect(cli.stdout).toMatch(/^FAIL {2}criteo api version: Criteo API version 2026-07 is retired by Criteo: set CRITEO_API_VERSION/m);
    expect(cli.stdout).toMatch(/^ok {4}criteo token/m);
  });
});

// ---------------------------------------------------------------------------

/** The gateway's audience_sync_criteo_api_* series of the run group, by name. */
async function apiSeries(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(audience_sync_criteo_api_\w+)\{[^}]*trigger="test"[^}]*\} (\S+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe.skipIf(!hasPushgateway)('the Pushgateway push', () => {
  it('carries whether the version is deprecated and its sunset, when the lifecycle is passed', async () => {
    const gateway = await startPushgateway();
    try {
      world.sandbox.setVersionLifecycle('deprecated', SUNSET);
      const summary = await world.run();
      const c = client();
      await c.searchSegments({ segmentIds: ['801'] });
      const deps = { db: world.database.db, log: silentLogger, pushgatewayUrl: gateway.url, lowMatchRate: 0.3 };

      await pushRunMetrics(deps, summary, c.lifecycle());
      expect(await apiSeries(gateway.url)).toEqual({
        audience_sync_criteo_api_deprecated: 1,
        audience_sync_criteo_api_sunset_timestamp_seconds: Date.parse(`${SUNSET}T00:00:00Z`) / 1000,
      });
      // Nothing heard: not deprecated, no sunset (the run group is replaced whole).
      await pushRunMetrics(deps, summary, null);
      expect(await apiSeries(gateway.url)).toEqual({ audience_sync_criteo_api_deprecated: 0 });
      // No lifecycle passed: no such series.
      await pushRunMetrics(deps, summary);
      expect(await apiSeries(gateway.url)).toEqual({});
    } finally {
      await gateway.stop();
    }
  });
});

describe('a run', () => {
  it('while the version is deprecated syncs as usual and logs one warning naming the version and the sunset date', async () => {
    world.sandbox.setVersionLifecycle('deprecated', SUNSET);
    const r = await runCli(['run', '--json'], { ...world.env, LOG_LEVEL: 'warn' });
    expect(r.status).toBe(0);
    const warnings = r.stderr.split('\n').filter((line) => line.includes('is deprecated by Criteo'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('2026-07');
    expect(warnings[0]).toContain('2027-07-01');
    expect(warnings[0]).toContain('CRITEO_API_VERSION');
  });

  it('once the version is retired stops at the first 410, in one line saying what to set, and sends nothing', async () => {
    world.sandbox.setVersionLifecycle('retired');
    await seedTargetGroup(world.database.db, 'v1', 50, 60);
    const before = world.sandbox.calls.length;
    const r = await runCli(['run', '--json'], world.env);
    expect(r.status).toBe(1);
    const summary = JSON.parse(r.stdout) as { status: string; error: string; lists: { segmentId: string; status: string; reason: string }[] };
    expect(summary.status).toBe('aborted');
    expect(summary.error).toMatch(/^Criteo API version 2026-07 is retired by Criteo .*set CRITEO_API_VERSION to a supported version/);
    expect(summary.lists).toEqual([
      expect.objectContaining({ segmentId: '801', status: 'incomplete', reason: 'run aborted: the Criteo API version is retired' }),
    ]);
    const calls = world.sandbox.calls.slice(before);
    expect(calls.filter((c) => c.operation === 'patch' || c.operation === 'delete')).toEqual([]);
    // One 410 (the run's search), then nothing more.
    expect(calls.filter((c) => c.operation !== 'token').map((c) => c.status)).toEqual([410]);
  });
});

import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorld, runCli, seedCampaigns, seedCustomers, seedListsOfTen, seedTargetGroup, CLIENT_SECRET, type World } from './helpers.js';
import { ALICE, CONSOLE_TOKEN, aliceAuth, basic, formToken, runEnded, startTestConsole, type TestConsole } from './console-world.js';
import { LeakScanner } from './leak-scan.js';
import { CriteoClient } from '../src/criteo/client.js';
import { silentLogger } from '../src/core/logger.js';
import { MAX_RESYNCS_IN_FLIGHT, ResyncRunner } from '../src/console/resync.js';
import { CHANGE_LOG_LOCK_CLASS } from '../src/db/locks.js';

/**
 * The console over HTTP against a real Postgres and the sandbox: who may
 * read and write, CSRF, headers, a resync through the CLI's code path with
 * who started it recorded, one run for two clicks, a list another run holds,
 * refusals in one line, and no email, identifier or secret on any page.
 */

let world: World;
let console: TestConsole;

beforeAll(async () => {
  world = await createWorld('console', { segments: ['701', '702', '703'].map((id) => ({ id, advertiserId: '1' })) });
  const db = world.database.db;
  await seedCustomers(db, 0, 3000);
  await seedCampaigns(db, [
    { id: 'c701', segmentId: '701' },
    { id: 'c702', segmentId: '702' },
    { id: 'c703', segmentId: '703' },
  ]);
  await seedTargetGroup(db, 'c701', 0, 2000);
  await seedTargetGroup(db, 'c702', 1000, 3000);
  await seedTargetGroup(db, 'c703', 0, 1500);
  expect((await world.run()).status).toBe('succeeded');
  console = await startTestConsole(world, { CONSOLE_BASIC_AUTH: `${ALICE.user}:${ALICE.password}\nbob:bobs-long-password`, CONSOLE_TOKEN });
});
afterAll(async () => {
  await console?.close();
  await world?.close();
});

const runCount = async () => (await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.runs`.execute(world.database.db)).rows[0]!.n;

/** Opens a page as `auth` and posts its first form (with `extra` fields) as the console's own page would. */
async function postFrom(pagePath: string, action: string, auth: string, extra: Record<string, string> = {}) {
  const pageRes = await console.fetch(pagePath, { auth });
  const { token, cookie } = formToken(await pageRes.text(), pageRes.headers.get('set-cookie'));
  return console.fetch(action, {
    auth,
    method: 'POST',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ _csrf: token, ...extra }).toString(),
  });
}

const runIdOf = (res: Response) => Number(/\/runs\/(\d+)/.exec(res.headers.get('location') ?? '')?.[1]);

describe('who may use the console', () => {
  it('refuses to start off loopback without authentication, in one line, and starts with it', async () => {
    const refused = await runCli(['console'], { ...world.env, CONSOLE_HOST: '0.0.0.0', CONSOLE_PORT: '0' });
    expect(refused.status).toBe(2);
    expect(refused.stderr.trim().split('\n')).toEqual([
      'audience-sync: CONSOLE_HOST 0.0.0.0 is not loopback: set CONSOLE_TOKEN_FILE, CONSOLE_BASIC_AUTH_FILE or CONSOLE_TRUSTED_PROXY, or listen on 127.0.0.1',
    ]);
    const open = await startTestConsole(world, { CONSOLE_HOST: '0.0.0.0', CONSOLE_TOKEN });
    try {
      expect((await open.fetch('/lists', { auth: `Bearer ${CONSOLE_TOKEN}` })).status).toBe(200);
      expect((await open.fetch('/lists')).status).toBe(401);
    } finally {
      await open.close();
    }
  });

  it('refuses every unauthenticated or wrongly authenticated request, reads included', async () => {
    for (const path of ['/lists', '/lists/701', '/campaigns', '/criteo-lists', '/runs', '/runs/1', '/runs/1/progress', '/static/progress.js']) {
      const res = await console.fetch(path);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
      expect(await res.text()).toContain('Refused: sign in first');
    }
    for (const auth of [basic('alice', 'wrong-password-123'), basic('mallory', ALICE.password), 'Bearer not-the-token-at-all', `Basic ${CONSOLE_TOKEN}`]) {
      expect((await console.fetch('/lists', { auth })).status, auth).toBe(401);
    }
    const post = await console.fetch('/lists/701/resync', { method: 'POST' });
    expect(post.status).toBe(401);
    const list = await console.fetch('/lists', { auth: aliceAuth });
    expect(list.status).toBe(200);
    expect(await list.text()).toContain('Signed in as <strong data-user>alice</strong>');
    expect(await (await console.fetch('/lists', { auth: `Bearer ${CONSOLE_TOKEN}` })).text()).toContain('data-user>token<');
  });

  it("trusts a proxy's user header only on a connection from that proxy's address", async () => {
    const behindProxy = await startTestConsole(world, { CONSOLE_TRUSTED_PROXY: '127.0.0.1', CONSOLE_USER_HEADER: 'X-Auth-User' });
    const elsewhere = await startTestConsole(world, { CONSOLE_TRUSTED_PROXY: '10.1.2.3', CONSOLE_USER_HEADER: 'X-Auth-User' });
    try {
      const named = await behindProxy.fetch('/runs', { headers: { 'x-auth-user': 'carol' } });
      expect(named.status).toBe(200);
      expect(await named.text()).toContain('data-user>carol<');
      expect((await behindProxy.fetch('/runs')).status).toBe(401);
      expect((await behindProxy.fetch('/runs', { headers: { 'x-auth-user': '<script>' } })).status).toBe(401);
      expect((await elsewhere.fetch('/runs', { headers: { 'x-auth-user': 'carol' } })).status).toBe(401);
    } finally {
      await behindProxy.close();
      await elsewhere.close();
    }
  });

  it('sends a CSP that runs only its own script file, and forbids framing', async () => {
    const res = await console.fetch('/lists/701', { auth: aliceAuth });
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await res.text()).not.toMatch(/<script(?![^>]*\ssrc=)/);
  });
});

describe('writes', () => {
  it('refuses a POST without a CSRF token, with a forged one, or with one issued to another user', async () => {
    const before = await runCount();
    const missing = await console.fetch('/lists/701/resync', { auth: aliceAuth, method: 'POST' });
    expect(missing.status).toBe(403);
    expect(await missing.text()).toContain('This form was not sent from a console page you opened');
    const page = await console.fetch('/lists/701', { auth: aliceAuth });
    const { cookie } = formToken(await page.text(), page.headers.get('set-cookie'));
    const forged = await console.fetch('/lists/701/resync', {
      auth: aliceAuth,
      method: 'POST',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: '_csrf=forged-token-value',
    });
    expect(forged.status).toBe(403);
    const bobsPage = await console.fetch('/lists/701', { auth: basic('bob', 'bobs-long-password') });
    const bobs = formToken(await bobsPage.text(), bobsPage.headers.get('set-cookie'));
    const stolen = await console.fetch('/lists/701/resync', {
      auth: aliceAuth,
      method: 'POST',
      headers: { cookie: bobs.cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${encodeURIComponent(bobs.token)}`,
    });
    expect(stolen.status).toBe(403);
    expect(await runCount()).toBe(before);
  });

  it("resyncs through resync's code path and records who started it", async () => {
    const res = await postFrom('/lists/701', '/lists/701/resync', aliceAuth);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(/^\/runs\/\d+\?started=701$/);
    const runId = runIdOf(res);
    expect((await runEnded(console, runId, aliceAuth)).status).toBe('succeeded');
    const run = await world.database.db.selectFrom('audience_sync.runs').selectAll().where('run_id', '=', runId).executeTakeFirstOrThrow();
    expect(run).toMatchObject({ trigger: 'console:alice', status: 'succeeded', options: { segmentIds: ['701'], full: false, allowMassRemoval: false } });
    const page = await (await console.fetch(`/runs/${runId}`, { auth: aliceAuth })).text();
    expect(page).toContain('Started by <strong data-trigger>console:alice</strong>');
    expect(page).toContain('data-outcome="succeeded"');
    expect(page).not.toContain('progress.js');
    expect(page).not.toContain('newly valid');
    // After a change of email rule, the run's page says how many emails the new rule accepts.
    await world.database.db.updateTable('audience_sync.list_syncs').set({ newly_valid_emails: 7 }).where('run_id', '=', runId).execute();
    expect(await (await console.fetch(`/runs/${runId}`, { auth: aliceAuth })).text()).toContain('7 newly valid emails (email rule)');
    const full = await postFrom('/lists/702/full-resync', '/lists/702/resync', `Bearer ${CONSOLE_TOKEN}`, { full: '1' });
    const fullRun = runIdOf(full);
    await runEnded(console, fullRun, aliceAuth);
    const recorded = await world.database.db.selectFrom('audience_sync.runs').selectAll().where('run_id', '=', fullRun).executeTakeFirstOrThrow();
    expect(recorded).toMatchObject({ trigger: 'console:token', options: { segmentIds: ['702'], full: true } });
  });

  it('starts one run for two clicks on the same list', async () => {
    world.sandbox.setFaults({ random: { slowRate: 1, slowMs: 1000, operations: ['patch'] } });
    try {
      await sql`INSERT INTO audience_sync.campaign_target_groups VALUES ('c703', 'c2600')`.execute(world.database.db);
      const before = await runCount();
      const [first, second] = await Promise.all([
        postFrom('/lists/703', '/lists/703/resync', aliceAuth),
        postFrom('/lists/703', '/lists/703/resync', aliceAuth),
      ]);
      expect(runIdOf(first)).toBe(runIdOf(second));
      expect([first.headers.get('location'), second.headers.get('location')].some((l) => l?.includes('already=703'))).toBe(true);
      await runEnded(console, runIdOf(first), aliceAuth);
      expect(await runCount()).toBe(before + 1);
    } finally {
      world.sandbox.setFaults(undefined);
    }
  });

  it('says so when another run holds the list: the resync waits, then skips it naming the holder', async () => {
    world.sandbox.setFaults({ random: { slowRate: 1, slowMs: 4000, operations: ['patch'] } });
    try {
      await sql`INSERT INTO audience_sync.campaign_target_groups VALUES ('c701', 'c2500')`.execute(world.database.db);
      const holding = world.run({ segmentIds: ['701'], trigger: 'schedule' });
      const holder = await waitForHolder('701');
      const listPage = await (await console.fetch('/lists/701', { auth: aliceAuth })).text();
      expect(listPage).toContain(`Run ${holder}</a> is syncing this list now`);
      const res = await postFrom('/lists/701', '/lists/701/resync', aliceAuth);
      const runId = runIdOf(res);
      expect(await runEnded(console, runId, aliceAuth)).toMatchObject({ status: 'succeeded' });
      const page = await (await console.fetch(`/runs/${runId}`, { auth: aliceAuth })).text();
      expect(page).toContain(`list 701 is being synced by run ${holder}`);
      await holding;
    } finally {
      world.sandbox.setFaults(undefined);
    }
  });

  it('declines in one line a list no campaign feeds, and an unknown page', async () => {
    const res = await postFrom('/lists/701', '/lists/999/resync', aliceAuth);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('List 999 is not fed by any campaign, so there is nothing to resync.');
    expect(await (await console.fetch('/lists/999', { auth: aliceAuth })).text()).toContain('No campaign or run knows list 999.');
    expect((await console.fetch('/lists/abc', { auth: aliceAuth })).status).toBe(404);
    expect((await console.fetch('/runs?status=bogus', { auth: aliceAuth })).status).toBe(400);
  });

  it('creates a Criteo list by advertiser and name once, finds it the second time, and says in one line why Criteo refused one', async () => {
    const first = await postFrom('/criteo-lists', '/criteo-lists', aliceAuth, { advertiser: '1', name: 'Autumn buyers' });
    expect(first.status).toBe(303);
    const id = /created=(\d+)/.exec(first.headers.get('location') ?? '')?.[1];
    expect(id).toBeDefined();
    const second = await postFrom('/criteo-lists', '/criteo-lists', aliceAuth, { advertiser: '1', name: 'Autumn buyers' });
    expect(second.headers.get('location')).toBe(`/criteo-lists?found=${id}`);
    const page = await (await console.fetch(`/criteo-lists?found=${id}`, { auth: aliceAuth })).text();
    expect(page).toContain(`already has a list of that name: list ${id}`);
    expect(page).toContain('Autumn buyers');
    world.sandbox.setFaults({ script: [{ operation: 'create', nth: 1, status: 403 }] });
    try {
      const refused = await postFrom('/criteo-lists', '/criteo-lists', aliceAuth, { advertiser: '1', name: 'Winter buyers' });
      expect(refused.status).toBe(502);
      const message = /data-message>([^<]*)</.exec(await refused.text())?.[1] ?? '';
      expect(message).toMatch(/^Criteo did not create the list: no access to .* under these credentials/);
      expect(message).not.toContain('\n');
    } finally {
      world.sandbox.setFaults(undefined);
    }
    const bad = await postFrom('/criteo-lists', '/criteo-lists', aliceAuth, { advertiser: 'acme', name: 'x' });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('The advertiser is a number');
  });
});

describe('what the pages show', () => {
  it('shows campaigns with their list and valid-email share, and runs filtered by who started them', async () => {
    const campaigns = await (await console.fetch('/campaigns', { auth: aliceAuth })).text();
    expect(campaigns).toContain('data-campaign="c701"');
    expect(campaigns).toMatch(/href="\/lists\/701">list 701<\/a><div class="sub">by id/);
    expect(campaigns).toMatch(/100\.0%<div class="sub">2,0\d\d of 2,0\d\d customers/);
    const runs = await (await console.fetch('/runs?trigger=console%3Aalice&list=701', { auth: aliceAuth })).text();
    const triggers = [...runs.matchAll(/data-col="trigger">([^<]+)</g)].map((m) => m[1]);
    expect(triggers.length).toBeGreaterThan(0);
    expect(new Set(triggers)).toEqual(new Set(['console:alice']));
  });

  it('puts no raw email, identifier or secret on any page or answer', async () => {
    const { rows } = await sql<{ email: string | null }>`SELECT email FROM audience_sync.customers`.execute(world.database.db);
    const scan = new LeakScanner({
      emails: rows.map((r) => r.email),
      secrets: [
        { name: 'criteo client secret', value: CLIENT_SECRET },
        { name: 'console token', value: CONSOLE_TOKEN },
        { name: 'basic password', value: ALICE.password },
      ],
    });
    const lastRun = (await sql<{ id: number }>`SELECT max(run_id)::int AS id FROM audience_sync.runs`.execute(world.database.db)).rows[0]!.id;
    const paths = ['/lists', '/lists/701', '/lists/702', '/lists/701/full-resync', '/campaigns', '/criteo-lists', '/runs', `/runs/${lastRun}`];
    for (const path of [...paths, `/runs/${lastRun}/progress`, '/nowhere', '/lists/999']) {
      const res = await console.fetch(path, { auth: aliceAuth });
      scan.text(path, await res.text(), { identifiers: true });
    }
    scan.text('401 page', await (await console.fetch('/lists')).text(), { identifiers: true });
    expect(scan.emails).toBeGreaterThan(2000);
    expect(scan.leaks).toEqual([]);
  });
});

describe("the run's onStarted hook", () => {
  it('gives the run id once, before the run ends', async () => {
    const seen: number[] = [];
    const summary = await world.run({ segmentIds: ['703'], onStarted: (id) => seen.push(id) });
    expect(seen).toEqual([summary.runId]);
  });
});

async function waitForHolder(segmentId: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await sql<{ run_id: number }>`
      SELECT run_id FROM audience_sync.list_syncs WHERE audience_segment_id = ${segmentId}::bigint AND status IN ('planning', 'sending')`.execute(
      world.database.db,
    );
    if (rows[0]) return rows[0].run_id;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no run took list ${segmentId}`);
}

describe('many console resyncs at once', () => {
  it("sixteen resyncs go, planning LIST_CONCURRENCY at a time, with locks apart from the statements'; a seventeenth is refused", async () => {
    // Each resync holds two connections for its locks while its plan needs a third for its statements: drawn from one
    // pool of 16, eleven resyncs held every connection and waited for one until the pool timed out. And each resync
    // planned at once, whatever the others did, each plan holding a connection of the pool throughout.
    const lists = Array.from({ length: MAX_RESYNCS_IN_FLIGHT + 1 }, (_, i) => String(801 + i));
    const many = await createWorld('console_many', { segments: lists.map((id) => ({ id, advertiserId: '1' })) }, { LIST_CONCURRENCY: '2' });
    const client = new CriteoClient(many.config.criteo, silentLogger);
    // Plans under way, each holding the change log's lock shared for its transaction: sampled from a connection apart.
    const watcher = new pg.Client({ connectionString: many.config.databaseUrl });
    await watcher.connect();
    let mostPlans = 0;
    let watching = true;
    const watched = (async () => {
      while (watching) {
        const { rows } = await watcher.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ShareLock'
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = $1`,
          [CHANGE_LOG_LOCK_CLASS],
        );
        mostPlans = Math.max(mostPlans, rows[0]!.n);
      }
    })();
    try {
      await seedListsOfTen(many.database.db, lists, 'r');
      const runner = new ResyncRunner({ db: many.database.db, locks: many.database.locks, client, config: many.config, log: silentLogger });
      const going = lists.slice(0, MAX_RESYNCS_IN_FLIGHT);
      const starts = lists.map((segmentId) => runner.start({ segmentId, full: false, user: 'alice' }));
      await expect(starts.at(-1)).rejects.toThrow(`${MAX_RESYNCS_IN_FLIGHT} resyncs are already going in this console`);
      const runIds = (await Promise.all(starts.slice(0, -1))).map((s) => s.runId);
      let statuses: string[] = [];
      for (let i = 0; i < 600; i++) {
        const { rows } = await sql<{ status: string }>`SELECT status FROM audience_sync.runs WHERE run_id = ANY(${runIds}::bigint[])`.execute(many.database.db);
        statuses = rows.map((r) => r.status);
        if (statuses.length === going.length && !statuses.includes('running')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(statuses).toEqual(going.map(() => 'succeeded'));
      for (const segmentId of going) expect(many.sandbox.members(segmentId).size).toBe(10);
      expect(many.sandbox.members(lists.at(-1)!).size).toBe(0);
      // However many resyncs, no more plans at once than LIST_CONCURRENCY (sampling can only miss some).
      expect(mostPlans).toBeGreaterThanOrEqual(1);
      expect(mostPlans).toBeLessThanOrEqual(2);
    } finally {
      watching = false;
      await watched.catch(() => {});
      await watcher.end();
      await client.close();
      await many.close();
    }
  });
});

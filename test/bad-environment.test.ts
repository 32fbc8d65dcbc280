import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/core/config.js';
import { ConfigError } from '../src/core/errors.js';
import { startOutageProxy } from './drills/outage-proxy.js';
import {
  convergence,
  createTestDatabase,
  createWorld,
  ledgerOf,
  runCli,
  seedCampaigns,
  seedCustomers,
  seedTargetGroup,
  startCli,
  type World,
} from './helpers.js';

/**
 * A bad environment: settings missing or malformed, Postgres unreachable at
 * start or gone mid-run, Criteo unreachable or refusing the credentials.
 * Each gives one clear line, the documented exit code (2: nothing was
 * written; 1: the run could not complete), and never a half-written ledger:
 * the ledger only ever holds what Criteo confirmed. (test/config.test.ts
 * covers the first settings; these extend it.)
 */

const SENTINEL = 'sentinel-Pw-8c1f';
const good = { DATABASE_URL: `postgres://u:${SENTINEL}@127.0.0.1:5432/db`, CRITEO_CLIENT_ID: 'id', CRITEO_CLIENT_SECRET: `secret-${SENTINEL}` };

function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

const oneLine = (text: string) => text.trim().split('\n');
const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at \S/);

describe('settings', () => {
  it.each([
    [{ LIST_CONCURRENCY: '0' }, 'LIST_CONCURRENCY'],
    [{ CRITEO_CONCURRENCY: '65' }, 'CRITEO_CONCURRENCY'],
    [{ CRITEO_MAX_ATTEMPTS: '1.5' }, 'CRITEO_MAX_ATTEMPTS'],
    [{ CRITEO_TIMEOUT_SECONDS: '2m' }, 'CRITEO_TIMEOUT_SECONDS'],
    [{ CRITEO_RETRY_BASE_MS: '0' }, 'CRITEO_RETRY_BASE_MS'],
    [{ CRITEO_MAX_WAIT_SECONDS: '86401' }, 'CRITEO_MAX_WAIT_SECONDS'],
    [{ LOCK_WAIT_SECONDS: '-1' }, 'LOCK_WAIT_SECONDS'],
    [{ MAX_REMOVAL_RATIO: 'half' }, 'MAX_REMOVAL_RATIO'],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL'],
    [{ CRITEO_API_URL: 'api.criteo.com' }, 'CRITEO_API_URL'],
    [{ PUSHGATEWAY_URL: 'pushgateway:9091' }, 'PUSHGATEWAY_URL'],
    [{ DATABASE_URL: `mysql://u:${SENTINEL}@db/x` }, 'DATABASE_URL: must be a postgres:// URL'],
    [{ DATABASE_URL: `postgres:/u:${SENTINEL}@db/x` }, 'DATABASE_URL: must be a postgres:// URL'],
    [{ CRITEO_CLIENT_SECRET: `two\nlines-${SENTINEL}` }, 'CRITEO_CLIENT_SECRET: must not contain white space or control characters'],
  ])('rejects %o in one line naming the setting, never echoing a value', (override, message) => {
    const text = configError({ ...good, ...override });
    expect(text).toContain(message);
    expect(oneLine(text)).toHaveLength(1);
    expect(text).not.toContain(SENTINEL);
  });

  it('reads secrets from *_FILE paths, strips the trailing line ends an editor or `echo` adds, and says which file it could not read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'as-env-'));
    const { CRITEO_CLIENT_SECRET: _s, DATABASE_URL: _d, ...rest } = good;
    writeFileSync(join(dir, 'secret'), 's3cret-from-file\r\n\n');
    writeFileSync(join(dir, 'url'), 'postgres://u:pw@db.internal:5432/audience\n');
    writeFileSync(join(dir, 'empty'), '\n');
    mkdirSync(join(dir, 'a-directory'));
    const c = loadConfig({ ...rest, CRITEO_CLIENT_SECRET_FILE: join(dir, 'secret'), DATABASE_URL_FILE: join(dir, 'url') });
    expect(c.criteo.clientSecret).toBe('s3cret-from-file');
    expect(c.databaseUrl).toBe('postgres://u:pw@db.internal:5432/audience');
    expect(configError({ ...rest, DATABASE_URL: good.DATABASE_URL, CRITEO_CLIENT_SECRET_FILE: join(dir, 'empty') })).toBe(
      'CRITEO_CLIENT_SECRET (or CRITEO_CLIENT_SECRET_FILE) is not set',
    );
    expect(configError({ ...rest, DATABASE_URL: good.DATABASE_URL, CRITEO_CLIENT_SECRET_FILE: join(dir, 'a-directory') })).toBe(
      `CRITEO_CLIENT_SECRET_FILE: cannot read ${join(dir, 'a-directory')}`,
    );
    expect(configError({ ...good, DATABASE_URL_FILE: join(dir, 'url') })).toBe('set DATABASE_URL or DATABASE_URL_FILE, not both');
  });
});

describe('the CLI in a bad environment', () => {
  let world: World;
  const lists = ['611', '612'];

  beforeAll(async () => {
    world = await createWorld('bad_env', { segments: lists.map((id) => ({ id, advertiserId: '1' })) }, { CRITEO_MAX_ATTEMPTS: '2' });
    const db = world.database.db;
    await seedCustomers(db, 0, 3000);
    await seedCampaigns(db, [
      { id: 'env-a', segmentId: '611' },
      { id: 'env-b', segmentId: '612' },
    ]);
    await seedTargetGroup(db, 'env-a', 0, 2000);
    await seedTargetGroup(db, 'env-b', 1000, 3000);
  });
  afterAll(async () => world?.close());

  /** What the job has written: run rows, batches, ledger entries, Criteo writes. */
  async function footprint() {
    const { rows } = await sql<{ runs: number; batches: number; ledger: number }>`
      SELECT (SELECT count(*) FROM audience_sync.runs)::int AS runs, (SELECT count(*) FROM audience_sync.batches)::int AS batches,
             (SELECT count(*) FROM audience_sync.list_members)::int AS ledger`.execute(world.database.db);
    return { ...rows[0]!, criteoWrites: world.sandbox.calls.filter((c) => c.operation === 'patch' || c.operation === 'delete').length };
  }

  it('a bad setting or an unmigrated schema: exit 2, one line, nothing written', async () => {
    const before = await footprint();
    const empty = await createTestDatabase('bad_env_empty');
    try {
      const [badSetting, unmigrated] = await Promise.all([
        runCli(['run'], { ...world.env, CRITEO_BATCH_SIZE: '60000' }),
        runCli(['run'], { ...world.env, DATABASE_URL: empty.url }),
      ]);
      expect(badSetting.status).toBe(2);
      expect(oneLine(badSetting.stderr)).toEqual([expect.stringMatching(/^audience-sync: CRITEO_BATCH_SIZE: /)]);
      expect(unmigrated.status).toBe(2);
      expect(oneLine(unmigrated.stderr)).toEqual([
        expect.stringMatching(/^audience-sync: the database schema is not up to date .*run `audience-sync migrate`$/),
      ]);
      const c = new pg.Client({ connectionString: empty.url });
      await c.connect();
      const { rows } = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM information_schema.schemata WHERE schema_name = 'audience_sync'`);
      await c.end();
      expect(rows[0]!.n).toBe(0);
    } finally {
      await empty.drop();
    }
    expect(await footprint()).toEqual(before);
  });

  it('Postgres unreachable at start: every command exits 1 with one line naming the host, never the password', async () => {
    const closed = `postgres://u:${SENTINEL}@127.0.0.1:1/db`;
    const noHost = `postgres://u:${SENTINEL}@no-such-host.invalid:5432/db`;
    const noDb = new URL(world.databaseUrl);
    noDb.pathname = '/as_no_such_database';
    const results = await Promise.all([
      ...['migrate', 'run', 'plan', 'runs', 'coverage', 'preflight'].map((cmd) =>
        runCli([cmd], { ...world.env, DATABASE_URL: closed }).then((r) => ({ cmd, r })),
      ),
      runCli(['run'], { ...world.env, DATABASE_URL: noHost }).then((r) => ({ cmd: 'run (unknown host)', r })),
      runCli(['run'], { ...world.env, DATABASE_URL: noDb.toString() }).then((r) => ({ cmd: 'run (no such database)', r })),
    ]);
    for (const { cmd, r } of results) {
      expect(r.status, cmd).toBe(1);
      expect(oneLine(r.stderr), `${cmd}: ${r.stderr}`).toHaveLength(1);
      expect(r.stderr, cmd).toMatch(
        cmd === 'run (no such database)' ? /^audience-sync: Postgres at \S+ has no database / : /^audience-sync: cannot reach Postgres at /,
      );
      expect(r.stderr + r.stdout, cmd).not.toContain(SENTINEL);
    }
    expect(results.find((x) => x.cmd === 'run (unknown host)')!.r.stderr).toContain('no-such-host.invalid:5432/db (ENOTFOUND)');
    expect(results.find((x) => x.cmd === 'run (no such database)')!.r.stderr).toContain('has no database "as_no_such_database" (3D000)');
  });

  describe('Postgres gone mid-run', () => {
    let outcome: { status: number | null; stdout: string; stderr: string } | 'hung' | undefined;

    it('the ledger holds only what Criteo confirmed, nothing is left half-written, and the next run converges', async () => {
      const db = world.database.db;
      const target = new URL(world.databaseUrl);
      const proxy = await startOutageProxy(Number(target.port || 5432), target.hostname);
      const viaProxy = new URL(world.databaseUrl);
      viaProxy.port = String(proxy.port);
      try {
        // Slow answers keep the run sending long enough to lose its database under it.
        world.sandbox.setFaults({ script: [{ operation: 'patch', nth: 1, times: 10_000, delayMs: 150 }] });
        const before = world.sandbox.calls.length;
        const job = startCli(['run', '--json'], { ...world.env, DATABASE_URL: viaProxy.toString(), CRITEO_BATCH_SIZE: '100', CRITEO_CONCURRENCY: '2' });
        for (let i = 0; i < 600 && world.sandbox.calls.slice(before).filter((c) => c.operation === 'patch' && c.status === 200).length < 4; i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        await proxy.down();
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), 90_000)));
        const result = await Promise.race([job.done, timeout]);
        clearTimeout(timer);
        world.sandbox.setFaults(undefined);
        if (result === 'hung') job.child.kill('SIGKILL');
        outcome = result === 'hung' ? 'hung' : { status: result.status, stdout: result.stdout, stderr: result.stderr };
        console.log(
          `Postgres gone mid-run: ${result === 'hung' ? 'hung' : `exit ${result.status}, last line: ${oneLine(result.stderr).slice(-1)[0]?.slice(0, 200)}`}`,
        );
        // Write-ahead: every ledger entry is one Criteo confirmed.
        for (const id of lists) {
          const criteo = world.sandbox.members(id);
          for (const x of await ledgerOf(db, id)) expect(criteo.has(x)).toBe(true);
        }
        await proxy.up();
        const rerun = await runCli(['run', '--json'], world.env);
        expect(rerun.status, rerun.stderr.slice(-1000)).toBe(0);
        for (const id of lists) expect(await convergence(world, id)).toMatchObject({ exact: true });
      } finally {
        world.sandbox.setFaults(undefined);
        await proxy.close();
      }
    });

    // Every pg client has an 'error' listener and batches are read by keyset, not through a cursor
    // that hangs on a dead connection: the run ends with its summary, not a stack trace.
    it('the run itself ends with exit 1, its summary naming each list left, no stack trace, nothing sent after it ended', () => {
      expect(outcome).not.toBe('hung');
      const o = outcome as { status: number | null; stdout: string; stderr: string };
      expect(o.status).toBe(1);
      noStack(o.stderr);
      const summary = JSON.parse(o.stdout) as { status: string; lists: { status: string; reason: string | null }[] };
      expect(summary.status).toBe('failed');
      for (const l of summary.lists) if (l.status !== 'succeeded') expect(l.reason).toBeTruthy();
      const lines = o.stderr.trim().split('\n');
      const finished = lines.findIndex((l) => l.includes('"msg":"run finished"'));
      expect(finished).toBeGreaterThanOrEqual(0);
      expect(lines.slice(finished + 1).filter((l) => l.includes('"criteo call"'))).toEqual([]);
    });
  });

  it('a write-ahead record the database refuses stops the list, and the batches already in flight finish and are recorded before the run ends', async () => {
    const db = world.database.db;
    world.sandbox.addSegment({ id: '613', advertiserId: '1' });
    await seedCampaigns(db, [{ id: 'env-c', segmentId: '613' }]);
    await seedTargetGroup(db, 'env-c', 0, 1000);
    // The database refuses the third batch row of a list sync (a full disk, a failing replica...).
    await sql`
      CREATE FUNCTION audience_sync.refuse_third_batch() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF NEW.seq >= 3 THEN
          RAISE EXCEPTION 'could not extend file (drill)';
        END IF;
        RETURN NEW;
      END $fn$`.execute(db);
    await sql`CREATE TRIGGER refuse_third_batch BEFORE INSERT ON audience_sync.batches FOR EACH ROW EXECUTE FUNCTION audience_sync.refuse_third_batch()`.execute(
      db,
    );
    // The first answer comes quickly, the second slowly: the third row is refused while the second is in flight.
    world.sandbox.setFaults({
      script: [
        { operation: 'patch', nth: 1, delayMs: 100 },
        { operation: 'patch', nth: 2, times: 1000, delayMs: 1500 },
      ],
    });
    try {
      const summary = await world.run({ segmentIds: ['613'] }, { CRITEO_BATCH_SIZE: '100', CRITEO_CONCURRENCY: '2' });
      const { rows } = await sql<{ status: string }>`
        SELECT b.status FROM audience_sync.batches b JOIN audience_sync.list_syncs s USING (list_sync_id) WHERE s.run_id = ${summary.runId}`.execute(db);
      expect(summary.lists[0]).toMatchObject({ status: 'failed', reason: expect.stringContaining('could not extend file (drill)') });
      // Nothing is still on its way to Criteo once the run says it is over: the list's lock is not let go under a batch in flight.
      expect(rows.map((r) => r.status)).toEqual(['confirmed', 'confirmed']);
    } finally {
      world.sandbox.setFaults(undefined);
      await sql`DROP TRIGGER refuse_third_batch ON audience_sync.batches`.execute(db);
      await sql`DROP FUNCTION audience_sync.refuse_third_batch()`.execute(db);
    }
    await world.run({ segmentIds: ['613'] });
    expect(await convergence(world, '613')).toMatchObject({ exact: true, desired: 1000 });
  });

  describe('Criteo', () => {
    let notCriteo: Server;
    let notCriteoUrl: string;
    beforeAll(async () => {
      // A web server that is not Criteo: 404 and an HTML page for everything.
      notCriteo = createServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<html>Not Found</html>'));
      await new Promise<void>((done) => notCriteo.listen(0, '127.0.0.1', () => done()));
      notCriteoUrl = `http://127.0.0.1:${(notCriteo.address() as AddressInfo).port}`;
    });
    afterAll(async () => new Promise<void>((done) => notCriteo.close(() => done())));

    it('unreachable, refusing the credentials, or not Criteo at all: exit 1, a reason for each list, nothing written to the ledger', async () => {
      // Fresh changes to send, so each run has batches to (fail to) send.
      await seedTargetGroup(world.database.db, 'env-a', 2000, 2100);
      await seedTargetGroup(world.database.db, 'env-b', 0, 100);
      const before = await footprint();
      const ledgerBefore = await ledgerOf(world.database.db, '611');
      const tokenCallsBefore = world.sandbox.calls.filter((c) => c.operation === 'token').length;
      const [unreachable, wrongSecret, wrongServer, preflight] = await Promise.all([
        runCli(['run', '--json'], { ...world.env, CRITEO_API_URL: 'http://127.0.0.1:1' }),
        runCli(['run', '--json'], { ...world.env, CRITEO_CLIENT_SECRET: `wrong-${SENTINEL}` }),
        runCli(['run', '--json'], { ...world.env, CRITEO_API_URL: notCriteoUrl }),
        runCli(['preflight'], { ...world.env, CRITEO_CLIENT_SECRET: `wrong-${SENTINEL}` }),
      ]);
      const summary = (r: { stdout: string }) =>
        JSON.parse(r.stdout) as { status: string; error: string | null; lists: { segmentId: string; status: string; reason: string }[] };

      expect(unreachable.status).toBe(1);
      expect(
        summary(unreachable)
          .lists.filter((l) => lists.includes(l.segmentId))
          .map((l) => [l.segmentId, l.status, l.reason]),
      ).toEqual(lists.map((id): unknown[] => [id, 'incomplete', expect.stringMatching(/^Criteo token endpoint unreachable after 2 attempts: ECONNREFUSED/)]));

      expect(wrongSecret.status).toBe(1);
      expect(summary(wrongSecret)).toMatchObject({
        status: 'aborted',
        error: expect.stringContaining('Criteo refused the client credentials (invalid_client): check CRITEO_CLIENT_ID and CRITEO_CLIENT_SECRET'),
      });
      // One token request per process (the run, the preflight), then nothing: no retry storm against a refusing Criteo.
      expect(world.sandbox.calls.filter((c) => c.operation === 'token').length - tokenCallsBefore).toBe(2);

      expect(wrongServer.status).toBe(1);
      console.log(`CRITEO_API_URL not Criteo: ${summary(wrongServer).status}: ${summary(wrongServer).error ?? JSON.stringify(summary(wrongServer).lists)}`);
      expect(summary(wrongServer).status).toBe('aborted');

      expect(preflight.status).toBe(1);
      expect(preflight.stdout).toMatch(/^FAIL {2}criteo token: Criteo refused the client credentials/m);

      for (const r of [unreachable, wrongSecret, wrongServer, preflight]) {
        noStack(r.stderr);
        expect(r.stdout + r.stderr).not.toContain(SENTINEL);
      }
      const after = await footprint();
      expect(after.criteoWrites).toBe(before.criteoWrites);
      expect(after.ledger).toBe(before.ledger);
      expect(await ledgerOf(world.database.db, '611')).toEqual(ledgerBefore);
      // Nothing left uncertain: those batches never left.
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.batches WHERE status IN ('sending', 'unknown')`.execute(
        world.database.db,
      );
      expect(rows[0]!.n).toBe(0);
    });

    // A CRITEO_API_URL that is not Criteo (a typo, a proxy's error page) must not send the
    // operator to rotate a secret that is fine.
    it('a CRITEO_API_URL without a token endpoint is named as such, not as refused credentials', async () => {
      const r = await runCli(['run', '--json'], { ...world.env, CRITEO_API_URL: notCriteoUrl });
      const s = JSON.parse(r.stdout) as { error: string | null };
      expect(s.error).toMatch(/CRITEO_API_URL/);
      expect(s.error).not.toMatch(/refused the client credentials/);
    });
  });
});

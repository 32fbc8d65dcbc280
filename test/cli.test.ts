import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../migrations/index.js';
import { connect, type DbHandle } from '../src/db/connection.js';
import { startSandbox, type Sandbox } from '../src/sandbox/server.js';
import { CLIENT_ID, CLIENT_SECRET, createTestDatabase, runCli, seedCampaigns, seedCustomers, seedTargetGroup } from './helpers.js';

/** The commands as an operator runs them: real processes, a fresh database, the sandbox over HTTP. */
let sandbox: Sandbox;
let database: DbHandle;
let drop: () => Promise<void>;
let env: Record<string, string>;

beforeAll(async () => {
  const t = await createTestDatabase('cli');
  drop = t.drop;
  database = connect(t.url);
  sandbox = await startSandbox({
    clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, advertiserIds: '*' }],
    segments: [{ id: '501', advertiserId: '1' }],
    rateLimitPerMinute: 0,
  });
  env = { DATABASE_URL: t.url, CRITEO_API_URL: sandbox.url, CRITEO_CLIENT_ID: CLIENT_ID, CRITEO_CLIENT_SECRET: CLIENT_SECRET };
});
afterAll(async () => {
  await sandbox?.close();
  await database?.close();
  await drop?.();
});

describe('migrate, then run, from the command line', () => {
  it('refuses to run on an unmigrated database with exit 2 and the command to run', async () => {
    const r = await runCli(['run'], env);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/^audience-sync: the database schema is not up to date \(\d+ migration\(s\) pending\): run `audience-sync migrate`$/);
    expect(sandbox.calls).toEqual([]);
  });

  it('applies each migration once when two migrate processes start at once', async () => {
    const [a, b] = await Promise.all([runCli(['migrate'], env), runCli(['migrate'], env)]);
    expect([a.status, b.status]).toEqual([0, 0]);
    const { rows } = await sql<{ name: string }>`SELECT name FROM audience_sync.migrations ORDER BY name`.execute(database.db);
    const all = Object.keys(migrations);
    expect(rows.map((r) => r.name)).toEqual(all);
    expect([a.stdout, b.stdout].sort()).toEqual([`applied ${all.join(', ')}\n`, 'schema up to date\n'].sort());
  });

  it('`run --json` makes the list exact and exits 0; a second run sends no PATCH or DELETE', async () => {
    const db = database.db;
    await seedCampaigns(db, [{ id: 'c1', segmentId: '501' }]);
    await seedCustomers(db, 0, 2500);
    await seedTargetGroup(db, 'c1', 0, 2500);
    const first = await runCli(['run', '--json'], env);
    expect(first.status).toBe(0);
    const summary = JSON.parse(first.stdout) as { status: string; lists: { segmentId: string; added: number }[] };
    expect(summary).toMatchObject({ status: 'succeeded', lists: [{ segmentId: '501', added: 2500 }] });
    expect(sandbox.members('501').size).toBe(2500);
    // Logs are pino JSON on stderr, one object per line.
    for (const line of first.stderr.trim().split('\n')) expect((): unknown => JSON.parse(line)).not.toThrow();

    const writesBefore = sandbox.calls.filter((c) => c.operation === 'patch' || c.operation === 'delete').length;
    const second = await runCli(['run'], env);
    expect(second.status).toBe(0);
    expect(second.stdout).toMatch(/^run \d+ \(cli\) succeeded/);
    expect(sandbox.calls.filter((c) => c.operation === 'patch' || c.operation === 'delete').length).toBe(writesBefore);
  });

  it('exits 1 naming the list when Criteo does not know it, and still syncs the others', async () => {
    const db = database.db;
    await seedCampaigns(db, [{ id: 'ghost', segmentId: '999' }]);
    await seedTargetGroup(db, 'ghost', 0, 10);
    const r = await runCli(['run', '--json'], env);
    expect(r.status).toBe(1);
    const summary = JSON.parse(r.stdout) as {
      status: string;
      lists: { segmentId: string; status: string; reason: string; errorCode: string; traceId: string }[];
    };
    expect(summary.status).toBe('failed');
    const ghost = summary.lists.find((l) => l.segmentId === '999')!;
    expect(ghost).toMatchObject({ status: 'failed', errorCode: 'audience-segment-not-found' });
    expect(ghost.reason).toContain('Criteo does not know list 999');
    expect(ghost.traceId).toMatch(/^[0-9a-f-]{36}$/);
    expect(summary.lists.find((l) => l.segmentId === '501')).toMatchObject({ status: 'succeeded' });
  });
});

describe('many lists at once', () => {
  it('syncs LIST_CONCURRENCY lists in parallel beyond the statements connections: each list lock has a connection of its own', async () => {
    // 20 lists, each holding its lock on a connection for the whole list, as well as the run's: with the locks drawn
    // from the 16 statements' connections, every plan waited for a connection until the pool timed out.
    const lists = Array.from({ length: 20 }, (_, i) => String(601 + i));
    const t = await createTestDatabase('cli_lists');
    const many = connect(t.url);
    const server = await startSandbox({
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, advertiserIds: '*' }],
      segments: lists.map((id) => ({ id, advertiserId: '1' })),
      rateLimitPerMinute: 0,
    });
    try {
      const manyEnv = { ...env, DATABASE_URL: t.url, CRITEO_API_URL: server.url, LIST_CONCURRENCY: '20' };
      expect((await runCli(['migrate'], manyEnv)).status).toBe(0);
      await seedCampaigns(
        many.db,
        lists.map((segmentId) => ({ id: `m${segmentId}`, segmentId })),
      );
      await seedCustomers(many.db, 0, 200);
      for (const [i, segmentId] of lists.entries()) await seedTargetGroup(many.db, `m${segmentId}`, i * 10, i * 10 + 10);
      const r = await runCli(['run', '--json'], manyEnv);
      const summary = JSON.parse(r.stdout) as { status: string; lists: { segmentId: string; status: string; added: number }[] };
      expect(summary.lists.filter((l) => l.status !== 'succeeded')).toEqual([]);
      expect(summary.status).toBe('succeeded');
      expect(r.status).toBe(0);
      for (const segmentId of lists) expect(server.members(segmentId).size).toBe(10);
    } finally {
      await server.close();
      await many.close();
      await t.drop();
    }
  });
});

describe('the commands on what a newcomer gets wrong', () => {
  it('`runs show ID --json` (and `history --json show ID`) prints the run as JSON', async () => {
    const runs = JSON.parse((await runCli(['runs', '--json', '--limit', '1'], env)).stdout) as { runId: number }[];
    const runId = String(runs[0]!.runId);
    for (const args of [
      ['runs', 'show', runId, '--json'],
      ['history', 'show', runId, '--json'],
      ['history', '--json', 'show', runId],
    ]) {
      const r = await runCli(args, env);
      expect(r.status, args.join(' ')).toBe(0);
      expect((JSON.parse(r.stdout) as { run: { runId: number } }).run.runId, args.join(' ')).toBe(Number(runId));
    }
  });

  it('refuses `--list` of a list no campaign points at and the job never synced, with exit 2 and no run recorded', async () => {
    const runsBefore = await countRuns();
    for (const args of [
      ['run', '--list', '424242'],
      ['resync', '--list', '424242'],
      ['plan', '--list', '501', '424242'],
    ]) {
      const r = await runCli(args, env);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim(), args.join(' ')).toBe('audience-sync: --list: no campaign points at list 424242 and it was never synced');
    }
    expect(await countRuns()).toBe(runsBefore);
  });

  it('runs a list it synced before that no campaign points at any more, and leaves it alone', async () => {
    const db = database.db;
    // 999 was synced (and failed: Criteo does not know it) while the campaign `ghost` pointed at it.
    await db.deleteFrom('audience_sync.campaign_target_groups').where('campaign_id', '=', 'ghost').execute();
    await db.deleteFrom('audience_sync.campaigns').where('campaign_id', '=', 'ghost').execute();
    const r = await runCli(['run', '--json', '--list', '999'], env);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { lists: { segmentId: string; status: string; reason: string }[] };
    expect(summary.lists).toMatchObject([{ segmentId: '999', status: 'skipped', reason: 'no campaign points at list 999; left alone' }]);
  });

  it('says what Postgres refused in one line: a database that does not exist, a role that does not exist, SSL; never the password', async () => {
    const url = new URL(env.DATABASE_URL!);
    const noDatabase = new URL(url);
    noDatabase.pathname = '/as_no_such_database';
    const noRole = new URL(url);
    noRole.username = 'as_no_such_role';
    noRole.password = 'S3cretPw';
    const ssl = new URL(url);
    ssl.searchParams.set('sslmode', 'require');
    const [db, role, tls] = await Promise.all([noDatabase, noRole, ssl].map((u) => runCli(['runs'], { ...env, DATABASE_URL: u.toString() })));
    const server = `${url.hostname}:${url.port || 5432}`;
    expect(db!.status).toBe(1);
    expect(db!.stderr).toBe(`audience-sync: Postgres at ${server} has no database "as_no_such_database" (3D000)\n`);
    expect(role!.status).toBe(1);
    // Trust authentication still refuses a role that does not exist (28000); password authentication may answer 28P01.
    expect(role!.stderr).toMatch(
      new RegExp(`^audience-sync: Postgres at ${server.replace(/\./g, '\\.')}/\\w+ refused the credentials \\((28000|28P01)\\)\\n$`),
    );
    expect(role!.stderr).not.toContain('S3cretPw');
    // pg's SECURITY WARNING about sslmode is not printed; a server without SSL says so.
    expect(tls!.stderr).not.toContain('SECURITY WARNING');
    const { rows } = await sql<{ ssl: string }>`SHOW ssl`.execute(database.db);
    if (rows[0]!.ssl === 'off') {
      expect(tls!.status).toBe(1);
      expect(tls!.stderr).toBe(`audience-sync: Postgres at ${server}${url.pathname} does not support SSL connections, which DATABASE_URL asks for (sslmode)\n`);
    }
  });
});

async function countRuns(): Promise<number> {
  const row = await database.db
    .selectFrom('audience_sync.runs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrateToLatest } from '../src/db/migrate.js';
import { convergence, createWorld, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * An upgrade as a deployment meets it: the release before the internationalised
 * email rule (its own code, from git) migrates and syncs a list whose target
 * group holds addresses beyond ASCII, which it counts invalid; this release
 * then migrates and runs, and the list converges with them added.
 */
const RELEASE_BEFORE = 'd136e30'; // the last commit with the ASCII-only rule (migration 0008)
const root = resolve(import.meta.dirname, '..');

const INTERNATIONAL: [string, string][] = [
  ['i1', 'Dörte@Sörensen.example'],
  ['i2', ' КОЛЯ@ПРИМЕР.РФ '],
  ['i3', 'ΧΡήστΗς@πΑράδειγμΑ.ελ'],
  ['i4', 'user@exämle.com'],
  ['i5', '用户@例子.广告'],
  // Still invalid under the new rule: a zero-width space.
  ['i6', 'ka\u200bte@example.com'],
];

let world: World;
let oldRelease: string;

beforeAll(async () => {
  oldRelease = mkdtempSync(join(tmpdir(), 'audience-sync-release-'));
  try {
    execFileSync('sh', ['-c', `git -C "${root}" archive ${RELEASE_BEFORE} src migrations package.json tsconfig.json | tar -x -C "${oldRelease}"`]);
  } catch {
    throw new Error(`the upgrade test needs commit ${RELEASE_BEFORE} in the clone's history (git fetch --unshallow)`);
  }
  symlinkSync(join(root, 'node_modules'), join(oldRelease, 'node_modules'));
  world = await createWorld('email_upgrade', { segments: [{ id: '601', advertiserId: '1' }] }, {}, { migrate: false });
});

afterAll(async () => {
  await world?.close();
  rmSync(oldRelease, { recursive: true, force: true });
});

/** The earlier release's CLI, as its own process (asynchronously: the in-process sandbox must keep answering). */
async function oldCli(...args: string[]): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: oldRelease,
    env: { PATH: process.env.PATH ?? '', ...world.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const status = await new Promise<number | null>((done) => child.on('close', done));
  expect(status, `${args.join(' ')}: ${stderr}`).toBe(0);
}

it('an upgrade re-judges the addresses beyond ASCII of a synced list and converges, counting them newly valid', async () => {
  const db = world.database.db;
  await oldCli('migrate');
  await seedCampaigns(db, [{ id: 'intl', segmentId: '601' }]);
  await seedCustomers(db, 0, 50);
  await db
    .insertInto('audience_sync.customers')
    .values(INTERNATIONAL.map(([customer_id, email]) => ({ customer_id, email })))
    .execute();
  await seedTargetGroup(db, 'intl', 0, 50);
  await db
    .insertInto('audience_sync.campaign_target_groups')
    .values(INTERNATIONAL.map(([customer_id]) => ({ campaign_id: 'intl', customer_id })))
    .execute();

  await oldCli('run');
  expect(world.sandbox.members('601').size).toBe(50);
  const before = await sql<{ invalid_emails: string }>`SELECT invalid_emails FROM audience_sync.list_syncs ORDER BY list_sync_id DESC LIMIT 1`.execute(db);
  expect(Number(before.rows[0]!.invalid_emails)).toBe(6);

  expect(await migrateToLatest(db)).toContain('0009-international-emails');
  const upgraded = await world.run();
  const list = upgraded.lists.find((l) => l.segmentId === '601')!;
  expect(list).toMatchObject({ status: 'succeeded', toAdd: 5, added: 5, toRemove: 0, newlyValidEmails: 5, sourceRead: 'whole' });
  expect(list.wholeReadReason).toMatch(/email rule changed/);
  expect(list.funnel).toMatchObject({ invalidEmails: 1, uniqueIdentifiers: 55 });
  expect(await convergence(world, '601')).toEqual({ desired: 55, ledger: 55, criteo: 55, exact: true });
  const recorded = await sql<{ n: string }>`SELECT newly_valid_emails AS n FROM audience_sync.list_syncs ORDER BY list_sync_id DESC LIMIT 1`.execute(db);
  expect(Number(recorded.rows[0]!.n)).toBe(5);

  // The rule is judged once: the next day the change log names nothing for the list, which is settled without a plan.
  const next = await world.run();
  expect(next.lists[0]).toMatchObject({ toAdd: 0, toRemove: 0, sourceRead: 'unchanged' });
  expect(next.lists[0]!.newlyValidEmails).toBeUndefined();
});

it('a change of Postgres or ICU under a list (a new stamp) re-judges it whole, and nothing moves when the identifiers did not change', async () => {
  const db = world.database.db;
  await sql`UPDATE audience_sync.lists SET email_rule = 'RFC 6531, Unicode 17.0 case mapping; NFC of Postgres 14; ICU 153.14'`.execute(db);
  const run = await world.run();
  expect(run.lists[0]).toMatchObject({ status: 'succeeded', sourceRead: 'whole', toAdd: 0, toRemove: 0, newlyValidEmails: 0 });
  expect(await convergence(world, '601')).toMatchObject({ exact: true, desired: 55 });
});

it('a server whose ICU changed since the rule was calibrated stops every command with the one to run', async () => {
  const db = world.database.db;
  await sql`UPDATE audience_sync.email_rule SET icu_version = '1.0'`.execute(db);
  const { assertMigrated } = await import('../src/db/migrate.js');
  await expect(assertMigrated(db)).rejects.toThrow(/ICU library changed .* run `audience-sync migrate`/);
  await migrateToLatest(db);
  await expect(assertMigrated(db)).resolves.toBeUndefined();
});

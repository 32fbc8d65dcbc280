import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CASE_FOLDING_ROWS, HOSTILE_CUSTOMER_IDS, expectedOf, hostileRows, type HostileRow } from './drills/hostile-rows.js';
import { classifyEmail } from './drills/reference.js';
import { silentLogger } from '../src/core/logger.js';
import { planSync } from '../src/sync/run.js';
import { createWorld, runCli, seedCampaigns, type World } from './helpers.js';
import { LeakScanner } from './leak-scan.js';

/**
 * Bad input: hostile customer rows, target groups naming customers that do
 * not exist, campaigns that make no sense, source views with ids that are
 * not numbers. Each is counted and reported; none crashes a run; nothing
 * reaches Criteo but SHA-256 identifiers. The job runs as a real process.
 *
 * BAD_INPUT_SCALE=N repeats the hostile categories N times with distinct
 * values (`npm run drill:bad-input` runs 400 passes, about 33,000 rows).
 */

const SCALE = Math.max(1, Number(process.env.BAD_INPUT_SCALE ?? 1));
const DAY = 86_400_000;
let world: World;

beforeAll(async () => {
  world = await createWorld(
    'bad_input',
    {
      recordReceivedIdentifiers: true,
      segments: ['801', '802', '803', '804', '805', '806', '807', '808'].map((id) => ({ id, advertiserId: '1' })),
    },
    { LOG_LEVEL: 'debug' },
  );
});
afterAll(async () => world?.close());

async function insertCustomers(rows: readonly { customerId: string; email: string | null }[]): Promise<void> {
  const db = world.database.db;
  for (let i = 0; i < rows.length; i += 5000) {
    await db
      .insertInto('audience_sync.customers')
      .values(rows.slice(i, i + 5000).map((r) => ({ customer_id: r.customerId, email: r.email })))
      .execute();
  }
}

async function targetGroup(campaignId: string, customerIds: readonly string[]): Promise<void> {
  const db = world.database.db;
  for (let i = 0; i < customerIds.length; i += 5000) {
    await db
      .insertInto('audience_sync.campaign_target_groups')
      .values(customerIds.slice(i, i + 5000).map((customer_id) => ({ campaign_id: campaignId, customer_id })))
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}

interface ListOut {
  segmentId: string;
  status: string;
  reason: string | null;
  errorCode: string | null;
  traceId: string | null;
  funnel: { targetGroupSize: number; missingCustomers: number; withoutEmail: number; invalidEmails: number; uniqueIdentifiers: number } | null;
}
interface Summary {
  runId: number;
  status: string;
  error: string | null;
  lists: ListOut[];
}

describe('hostile customer rows', () => {
  const rows: HostileRow[] = hostileRows(SCALE);
  const idRows = HOSTILE_CUSTOMER_IDS.map((customerId, i) => ({ customerId, email: `hostile.id.${i}@example.com`, category: 'hostile customer id' }));
  const ghosts = ['ghost-1', 'ghost-2', 'H0-0', ' h0-1', 'h0-2 '];

  it('are each counted as missing, invalid or valid, never crash the run, and only their SHA-256 reaches Criteo', async () => {
    const db = world.database.db;
    await insertCustomers([...rows, ...idRows]);
    await seedCampaigns(db, [{ id: 'hostile', segmentId: '801' }]);
    await targetGroup('hostile', [...rows.map((r) => r.customerId), ...HOSTILE_CUSTOMER_IDS, ...ghosts]);
    const expected = expectedOf([...rows, ...idRows]);

    const r = await runCli(['run', '--json', '--list', '801'], world.env);
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const summary = JSON.parse(r.stdout) as Summary;
    const list = summary.lists.find((l) => l.segmentId === '801')!;
    expect(list.status).toBe('succeeded');
    expect(list.funnel).toEqual({
      targetGroupSize: rows.length + idRows.length + ghosts.length,
      missingCustomers: ghosts.length, // 'H0-0', ' h0-1', 'h0-2 ' are not h0-0, h0-1, h0-2: ids are matched exactly
      withoutEmail: expected.withoutEmail,
      invalidEmails: expected.invalidEmails,
      uniqueIdentifiers: expected.uniqueIdentifiers,
    });

    // Row by row, the job's verdict is the recipe's.
    const { rows: states } = await sql<{ customer_id: string; email_state: string; id: string | null }>`
      SELECT customer_id, email_state, encode(identifier, 'hex') AS id FROM audience_sync.list_targets WHERE audience_segment_id = 801`.execute(db);
    const byId = new Map(states.map((s) => [s.customer_id, s]));
    const wrong = [...rows, ...idRows].flatMap((row) => {
      const want = classifyEmail(row.email);
      const got = byId.get(row.customerId);
      const ok = got?.email_state === want.state && (want.state !== 'valid' || got.id === want.identifier);
      return ok ? [] : [{ category: row.category, customer: row.customerId, want: want.state, got: got?.email_state }];
    });
    expect(wrong).toEqual([]);

    // Criteo holds exactly the valid identifiers, and received nothing else.
    expect(new Set(world.sandbox.members('801'))).toEqual(expected.identifiers);
    expect(world.sandbox.identifierAudit()).toMatchObject({ notSha256Hex: 0, samples: [] });
    for (const id of world.sandbox.receivedIdentifiers()) expect(expected.identifiers.has(id)).toBe(true);

    // The SQL fragments were data: the source is whole.
    const { rows: count } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.customers`.execute(db);
    expect(count[0]!.n).toBe(rows.length + idRows.length);

    // No raw value of these rows in the logs, the summary or the job's tables.
    const scan = new LeakScanner({ emails: rows.map((x) => x.email), secrets: [{ name: 'client secret', value: world.env.CRITEO_CLIENT_SECRET! }] });
    scan.text('run stdout', r.stdout, { identifiers: true });
    scan.text('run stderr', r.stderr, { identifiers: true });
    await scan.jobTables(db);
    expect(scan.leaks).toEqual([]);

    console.log(
      `hostile rows: ${rows.length + idRows.length} rows (scale ${SCALE}), ${ghosts.length} missing customers, ` +
        `${expected.withoutEmail} without email, ${expected.invalidEmails} invalid, ${expected.uniqueIdentifiers} identifiers\n` +
        [...expected.byCategory.entries()].map(([c, v]) => `  ${c}: ${v.rows} rows → ${v.missing} missing, ${v.invalid} invalid, ${v.valid} valid`).join('\n'),
    );
  });

  // Postgres lower() under a libc locale folds U+0130 to 'i' and U+212A to 'k'; the rule's lowercase is Unicode's
  // default mapping whatever the locale: the Kelvin sign is canonically K (NFC), so its address is kelvin's, as
  // Criteo's hasher makes it; the dotted capital I becomes i + combining dot, never the ASCII address info@.
  it('folds lookalike capitals by the Unicode rule, never by the server locale', async () => {
    const db = world.database.db;
    await insertCustomers(CASE_FOLDING_ROWS);
    const { rows: got } = await sql<{ id: string | null }>`
      SELECT encode(audience_sync.email_identifier(email), 'hex') AS id FROM audience_sync.customers
      WHERE customer_id = ANY(${CASE_FOLDING_ROWS.map((r) => r.customerId)}::text[]) ORDER BY customer_id`.execute(db);
    const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
    expect(got.map((g) => g.id)).toEqual([sha('i\u0307nfo@dotted-fold.example'), sha('info@kelvin-fold.example')]);
    expect(got[0]!.id).not.toBe(sha('info@dotted-fold.example'));
  });
});

describe('campaigns that make no sense', () => {
  it('a list Criteo does not know fails with its reason and traceId; the other lists are synced', async () => {
    const db = world.database.db;
    await insertCustomers(Array.from({ length: 50 }, (_, i) => ({ customerId: `camp-${i}`, email: `camp.${i}@example.com` })));
    await seedCampaigns(db, [
      { id: 'unknown-list', segmentId: '999' },
      { id: 'beyond-int32', segmentId: '3000000000' },
      { id: 'fine', segmentId: '802' },
    ]);
    const ids = Array.from({ length: 50 }, (_, i) => `camp-${i}`);
    for (const c of ['unknown-list', 'beyond-int32', 'fine']) await targetGroup(c, ids);
    // A target-group row of a campaign that does not exist is ignored.
    await targetGroup('no-such-campaign', ids.slice(0, 5));

    const r = await runCli(['run', '--json', '--list', '999', '3000000000', '802'], world.env);
    expect(r.status).toBe(1);
    const summary = JSON.parse(r.stdout) as Summary;
    expect(summary.status).toBe('failed');
    const by = new Map(summary.lists.map((l) => [l.segmentId, l]));
    expect(by.get('802')).toMatchObject({ status: 'succeeded' });
    expect(by.get('999')).toMatchObject({
      status: 'failed',
      errorCode: 'audience-segment-not-found',
      reason: expect.stringContaining('Criteo does not know list 999'),
    });
    expect(by.get('999')!.traceId).toMatch(/^[0-9a-f-]{36}$/);
    // Criteo's ids are int32: the request is refused as invalid, the list fails, nothing else does.
    expect(by.get('3000000000')).toMatchObject({ status: 'failed', reason: expect.stringContaining('HTTP 400') });
    expect(world.sandbox.members('802').size).toBe(50);
  });

  it('a campaign that ends before it starts never feeds its list', async () => {
    const db = world.database.db;
    const now = Date.now();
    await seedCampaigns(db, [
      { id: 'backwards-past', segmentId: '803', startsAt: new Date(now - DAY), endsAt: new Date(now - 2 * DAY) },
      { id: 'backwards-future', segmentId: '804', startsAt: new Date(now + 2 * DAY), endsAt: new Date(now + DAY) },
    ]);
    const ids = Array.from({ length: 50 }, (_, i) => `camp-${i}`);
    await targetGroup('backwards-past', ids);
    await targetGroup('backwards-future', ids);
    const r = await runCli(['run', '--json', '--list', '803', '804'], world.env);
    expect(r.status, r.stderr.slice(-1000)).toBe(0);
    const summary = JSON.parse(r.stdout) as Summary;
    expect(summary.lists.map((l) => l.status)).toEqual(['succeeded', 'succeeded']);
    expect(world.sandbox.members('803').size).toBe(0);
    expect(world.sandbox.members('804').size).toBe(0);
  });

  // A campaign whose dates are inverted is never active: plan and run say so, by name.
  it('names a campaign that ends before it starts in the plan and the run summary', async () => {
    const plan = await planSync({ db: world.database.db, config: world.config, log: silentLogger }, { segmentIds: ['803', '804'] });
    const run = await world.run({ segmentIds: ['803', '804'] });
    for (const out of [JSON.stringify(plan), JSON.stringify(run)]) {
      expect(out).toMatch(/backwards-past[^\n]*ends before it starts/);
      expect(out).toMatch(/backwards-future[^\n]*ends before it starts/);
    }
  });
});

describe('source views with ids that are not numbers', () => {
  /**
   * Operators may replace a source table with a view of the same name and
   * columns. Here campaigns is a view over a table with text ids, and one
   * campaign's list id is not a number, so the view's cast fails.
   */
  async function campaignsAsView(badSegmentRef: string | null): Promise<() => Promise<void>> {
    const db = world.database.db;
    await sql`ALTER TABLE audience_sync.campaigns RENAME TO campaigns_table`.execute(db);
    await sql`
      CREATE TABLE audience_sync.campaigns_text (
        campaign_id text, name text, advertiser_ref text, segment_ref text, starts_at timestamptz, measurement_ends_at timestamptz)`.execute(db);
    await sql`
      INSERT INTO audience_sync.campaigns_text VALUES
        ('view-ok', 'View OK', '1', '805', now() - interval '1 day', now() + interval '30 days'),
        ('view-bad', 'View bad', '1', ${badSegmentRef}, now() - interval '1 day', now() + interval '30 days')`.execute(db);
    await sql`
      CREATE VIEW audience_sync.campaigns AS
      SELECT campaign_id, name, advertiser_ref::bigint AS advertiser_id, segment_ref::bigint AS audience_segment_id, starts_at, measurement_ends_at
      FROM audience_sync.campaigns_text`.execute(db);
    await insertCustomers(Array.from({ length: 20 }, (_, i) => ({ customerId: `view-${i}`, email: `view.${i}@example.com` }))).catch(() => {});
    await targetGroup(
      'view-ok',
      Array.from({ length: 20 }, (_, i) => `view-${i}`),
    );
    await targetGroup(
      'view-bad',
      Array.from({ length: 10 }, (_, i) => `view-${i}`),
    );
    return async () => {
      await sql`DROP VIEW audience_sync.campaigns`.execute(db);
      await sql`DROP TABLE audience_sync.campaigns_text`.execute(db);
      await sql`ALTER TABLE audience_sync.campaigns_table RENAME TO campaigns`.execute(db);
      await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id LIKE 'view-%'`.execute(db);
    };
  }

  it('a non-numeric list id stops the run before any write, in one line that names the bad value, exit 1', async () => {
    const restore = await campaignsAsView('seg-seven');
    try {
      const writesBefore = world.sandbox.calls.filter((c) => c.operation === 'patch' || c.operation === 'delete').length;
      const r = await runCli(['run'], world.env);
      expect(r.status).toBe(1);
      const lines = r.stderr.trim().split('\n');
      const last = lines[lines.length - 1]!;
      expect(last).toMatch(/^audience-sync: .*"seg-seven"/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(world.sandbox.calls.filter((c) => c.operation === 'patch' || c.operation === 'delete').length).toBe(writesBefore);
      const run = await world.database.db
        .selectFrom('audience_sync.runs')
        .select(['status', 'error'])
        .orderBy('run_id', 'desc')
        .limit(1)
        .executeTakeFirstOrThrow();
      expect(run).toMatchObject({ status: 'failed', error: expect.stringContaining('seg-seven') });
      console.log(`non-numeric list id in a campaigns view: exit ${r.status}, "${last}"`);
    } finally {
      await restore();
    }
  });

  // BUG(issue 7), what the run should do: skip the one bad campaign with one report
  // entry naming it and the column, and sync every other list. Every statement over
  // `campaigns` evaluates the view's cast for every row, so this needs the run to read
  // the campaigns once, row by row on error (see docs/RELIABILITY.md). Flip to it() once fixed.
  it.fails('a non-numeric list id in a view skips that campaign with one report entry and syncs the other lists', async () => {
    const restore = await campaignsAsView('seg-seven');
    try {
      const summary = await world.run();
      expect(summary.lists.find((l) => l.segmentId === '805')).toMatchObject({ status: 'succeeded' });
      expect(JSON.stringify(summary)).toMatch(/view-bad[^\n]*audience_segment_id/);
    } finally {
      await restore();
    }
  });

  it('a list id a view leaves NULL does not crash the run', async () => {
    const restore = await campaignsAsView(null);
    try {
      const r = await runCli(['run', '--json'], world.env);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect([0, 1]).toContain(r.status);
      const summary = JSON.parse(r.stdout) as Summary;
      console.log(`NULL list id in a campaigns view: exit ${r.status}, lists ${JSON.stringify(summary.lists.map((l) => [l.segmentId, l.status, l.reason]))}`);
      expect(summary.lists.find((l) => l.segmentId === '805')).toMatchObject({ status: 'succeeded' });
    } finally {
      await restore();
    }
  });
});

describe('a source view that repeats a key', () => {
  it('a customers view listing one customer twice fails that list in one line naming the contract, and the other lists sync', async () => {
    const db = world.database.db;
    await insertCustomers(Array.from({ length: 30 }, (_, i) => ({ customerId: `dup-${i}`, email: `dup.${i}@example.com` })));
    await seedCampaigns(db, [
      { id: 'dup-twice', segmentId: '806' },
      { id: 'dup-fine', segmentId: '807' },
    ]);
    await targetGroup('dup-twice', ['dup-0', 'dup-1', 'dup-2']);
    await targetGroup('dup-fine', ['dup-10', 'dup-11']);
    await sql`ALTER TABLE audience_sync.customers RENAME TO customers_table`.execute(db);
    // A view that repeats customer dup-1 with a second email (a join gone wrong upstream).
    await sql`
      CREATE VIEW audience_sync.customers AS
      SELECT customer_id, email FROM audience_sync.customers_table
      UNION ALL SELECT 'dup-1', 'other.dup.1@example.com'`.execute(db);
    try {
      const r = await runCli(['run', '--json', '--list', '806', '--list', '807'], world.env);
      expect(r.status).toBe(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const summary = JSON.parse(r.stdout) as Summary;
      expect(summary.lists.find((l) => l.segmentId === '806')).toMatchObject({
        status: 'failed',
        reason: expect.stringMatching(/^the source repeats a target-group row or a customer id for list 806: .*customers on customer_id/),
      });
      expect(summary.lists.find((l) => l.segmentId === '807')).toMatchObject({ status: 'succeeded' });
      expect(world.sandbox.members('806').size).toBe(0);
    } finally {
      await sql`DROP VIEW audience_sync.customers`.execute(db);
      await sql`ALTER TABLE audience_sync.customers_table RENAME TO customers`.execute(db);
    }
  });
});

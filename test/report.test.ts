import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CriteoClient } from '../src/criteo/client.js';
import { silentLogger } from '../src/core/logger.js';
import { buildCoverageReport, coverageByList } from '../src/report/build.js';
import type { CoverageReport } from '../src/report/types.js';
import { CSV_COLUMNS } from '../src/report/render-csv.js';
import { reportToHtml } from '../src/report/render-html.js';
import { matchScore } from '../src/sandbox/server.js';
import type { Db } from '../src/db/connection.js';
import { createWorld, runCli, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * The report's figures against data whose answers are known: a history of
 * runs written straight into the audit tables (every count and instant
 * chosen), and real syncs against the sandbox, whose members and statistics
 * are the truth the report must repeat.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const now = new Date();
const ago = (ms: number) => new Date(now.getTime() - ms);
const LOW_MATCH_RATE = 0.3;

let world: World;

beforeAll(async () => {
  world = await createWorld('report', { segments: ['601', '602'].map((id) => ({ id, advertiserId: '7' })) });
  await writeKnownHistory(world.database.db);
});
afterAll(async () => world?.close());

interface ListSyncSeed {
  segment: string;
  campaigns: string[];
  runAt: Date;
  status?: string;
  action?: 'sync' | 'empty';
  reason?: string;
  newlyValidEmails?: number;
  funnel?: [tg: number, missing: number, withoutEmail: number, invalid: number, unique: number];
  ledgerBefore: number;
  added: number;
  removed: number;
  stats?: [identifiers: number, matched: number];
  campaignFunnels?: Record<string, [number, number, number, number, number]>;
  batches?: { size: number; valid: number; invalid: number; sample?: string[] }[];
}

/** One run holding one list sync, finished a minute after it started, statistics read a minute later. */
async function seedListSync(db: Db, s: ListSyncSeed): Promise<number> {
  const finished = new Date(s.runAt.getTime() + 60_000);
  const read = new Date(s.runAt.getTime() + 120_000);
  const { rows } = await sql<{ run_id: number }>`
    INSERT INTO audience_sync.runs (trigger, status, as_of, started_at, finished_at)
    VALUES ('test', ${s.status === 'succeeded' || !s.status ? 'succeeded' : 'failed'}, ${s.runAt}, ${s.runAt}, ${finished}) RETURNING run_id`.execute(db);
  const runId = rows[0]!.run_id;
  const f = s.funnel ?? [null, null, null, null, null];
  const { rows: ls } = await sql<{ list_sync_id: number }>`
    INSERT INTO audience_sync.list_syncs (run_id, audience_segment_id, advertiser_id, campaign_ids, action, status, reason,
      target_group_size, missing_customers, without_email, invalid_emails, unique_identifiers, ledger_before, to_add, to_remove,
      added, removed, emptied, stats_identifiers, stats_matches, stats_match_rate, stats_read_at, started_at, finished_at, newly_valid_emails)
    VALUES (${runId}, ${s.segment}::bigint, 7, ${s.campaigns}::text[], ${s.action ?? 'sync'}, ${s.status ?? 'succeeded'}, ${s.reason ?? null},
      ${f[0]}, ${f[1]}, ${f[2]}, ${f[3]}, ${f[4]}, ${s.ledgerBefore}, ${s.added}, ${s.removed},
      ${s.added}, ${s.removed}, ${s.action === 'empty'}, ${s.stats?.[0] ?? null}, ${s.stats?.[1] ?? null},
      ${s.stats ? (s.stats[1] / Math.max(1, s.stats[0])) * 100 : null}, ${s.stats ? read : null}, ${s.runAt}, ${finished}, ${s.newlyValidEmails ?? null})
    RETURNING list_sync_id`.execute(db);
  const listSyncId = ls[0]!.list_sync_id;
  for (const [campaign, c] of Object.entries(s.campaignFunnels ?? {})) {
    await sql`INSERT INTO audience_sync.list_sync_campaigns VALUES (${listSyncId}, ${campaign}, ${c[0]}, ${c[1]}, ${c[2]}, ${c[3]}, ${c[4]})`.execute(db);
  }
  let seq = 1;
  for (const b of s.batches ?? []) {
    await sql`
      INSERT INTO audience_sync.batches (list_sync_id, audience_segment_id, seq, operation, size, status, http_status, nb_valid, nb_invalid, sample_invalid)
      VALUES (${listSyncId}, ${s.segment}::bigint, ${seq++}, 'add', ${b.size}, 'confirmed', 200, ${b.valid}, ${b.invalid}, ${b.sample ?? []}::text[])`.execute(
      db,
    );
  }
  return runId;
}

const BAD_1 = 'f'.repeat(63) + 'g';
const BAD_2 = '0'.repeat(10);
const BAD_EMAIL = 'someone@example';
/** As the report shows them: a prefix and the length, never an email-like value. */
const SHOWN = ['ffffffffffff…(64)', '0000000000', '[email-like, 15 chars]'];

/**
 * List 501, campaigns a1 and a2 (both active): three daily runs, the last a
 * --full resync that re-sent all 980 identifiers (added 980, ledger still
 * 980), after which Criteo counts only 600 and matches 150.
 * List 502 (b1 active for 10 days): last success 40 hours ago, a failure since.
 * List 503 (c1 ended yesterday): emptied two days ago.
 * List 504 (d1 started 2 hours ago): never synced, not yet late.
 */
async function writeKnownHistory(db: Db): Promise<void> {
  await seedCampaigns(db, [
    { id: 'a1', segmentId: '501', startsAt: ago(20 * DAY) },
    { id: 'a2', segmentId: '501', startsAt: ago(20 * DAY) },
    { id: 'b1', segmentId: '502', startsAt: ago(10 * DAY) },
    { id: 'c1', segmentId: '503', startsAt: ago(30 * DAY), endsAt: ago(DAY) },
    { id: 'd1', segmentId: '504', startsAt: ago(2 * HOUR) },
  ]);
  await seedListSync(db, {
    segment: '501',
    campaigns: ['a1', 'a2'],
    runAt: ago(3 * DAY),
    funnel: [1000, 10, 40, 50, 880],
    ledgerBefore: 0,
    added: 880,
    removed: 0,
    stats: [880, 200],
  });
  await seedListSync(db, {
    segment: '501',
    campaigns: ['a1', 'a2'],
    runAt: ago(2 * DAY),
    funnel: [1100, 10, 40, 50, 980],
    ledgerBefore: 880,
    added: 120,
    removed: 20,
    stats: [970, 250],
    newlyValidEmails: 12,
  });
  await seedListSync(db, {
    segment: '501',
    campaigns: ['a1', 'a2'],
    runAt: ago(23 * HOUR),
    funnel: [1300, 10, 40, 250, 980],
    ledgerBefore: 980,
    added: 980,
    removed: 0,
    stats: [600, 150],
    campaignFunnels: { a1: [800, 0, 20, 50, 720], a2: [600, 10, 20, 200, 370] },
    batches: [
      { size: 500, valid: 500, invalid: 0 },
      { size: 480, valid: 477, invalid: 3, sample: [BAD_1, BAD_2, BAD_EMAIL] },
    ],
  });
  // The ledger as the resync left it: 980 members.
  await sql`
    INSERT INTO audience_sync.list_members (audience_segment_id, identifier)
    SELECT 501, sha256(convert_to('m' || i, 'UTF8')) FROM generate_series(1, 980) i`.execute(db);

  await seedListSync(db, {
    segment: '502',
    campaigns: ['b1'],
    runAt: ago(40 * HOUR + 60_000),
    funnel: [200, 0, 0, 0, 200],
    ledgerBefore: 0,
    added: 200,
    removed: 0,
    stats: [200, 130],
  });
  await seedListSync(db, {
    segment: '502',
    campaigns: ['b1'],
    runAt: ago(16 * HOUR),
    status: 'failed',
    reason: 'Criteo answered 503 five times',
    funnel: [210, 0, 0, 0, 210],
    ledgerBefore: 200,
    added: 0,
    removed: 0,
  });
  await sql`
    INSERT INTO audience_sync.list_members (audience_segment_id, identifier)
    SELECT 502, sha256(convert_to('b' || i, 'UTF8')) FROM generate_series(1, 200) i`.execute(db);

  await seedListSync(db, { segment: '503', campaigns: ['c1'], runAt: ago(2 * DAY), action: 'empty', ledgerBefore: 300, added: 0, removed: 300, stats: [0, 0] });
}

async function report(options: Partial<Parameters<typeof buildCoverageReport>[1]> = {}): Promise<CoverageReport> {
  return buildCoverageReport(world.database.db, { lowMatchRate: LOW_MATCH_RATE, now, ...options });
}

describe('the report on a known history', () => {
  it('derives each stage of the funnel and reads "synced" as the ledger each list sync left, not ledger_before + added − removed', async () => {
    const r = await report();
    const list = r.lists.find((l) => l.segmentId === '501')!;
    expect(list.runs.map((x) => x.synced)).toEqual([880, 980, 980]); // the resync's formula would say 1,960
    // A change of email rule's newly valid emails, in the JSON and on the run's row of the HTML report.
    expect(list.runs.map((x) => x.newlyValidEmails)).toEqual([null, 12, null]);
    const html = reportToHtml(r);
    const row = (runId: number) => html.slice(html.indexOf(`<tr data-run="${runId}">`), html.indexOf('</tr>', html.indexOf(`<tr data-run="${runId}">`)));
    expect(row(list.runs[1]!.runId)).toContain('12 newly valid emails (email rule)');
    expect(row(list.runs[2]!.runId)).not.toContain('newly valid');
    expect(list.runs[0]).toMatchObject({ matchRate: 200 / 880, coverage: 200 / 1000, criteo: { identifiers: 880, matched: 200 } });
    expect(list.latest).toMatchObject({
      funnel: { targetGroup: 1300, missingCustomers: 10, withoutEmail: 40, withEmail: 1250, invalidEmails: 250, validEmail: 1000, uniqueIdentifiers: 980 },
      synced: 980,
      criteo: { identifiers: 600, matched: 150, readAt: new Date(ago(23 * HOUR).getTime() + 120_000).toISOString() },
      matchRate: 0.25,
      coverage: 150 / 1300,
    });
    expect(list.latest!.campaigns).toEqual([
      {
        campaignId: 'a1',
        name: 'Campaign a1',
        funnel: { targetGroup: 800, missingCustomers: 0, withoutEmail: 20, withEmail: 780, invalidEmails: 50, validEmail: 730, uniqueIdentifiers: 720 },
      },
      {
        campaignId: 'a2',
        name: 'Campaign a2',
        funnel: { targetGroup: 600, missingCustomers: 10, withoutEmail: 20, withEmail: 570, invalidEmails: 200, validEmail: 370, uniqueIdentifiers: 370 },
      },
    ]);
    expect(list.runs[2]).toMatchObject({
      criteoInvalid: 3,
      criteoValid: 977,
      batches: [expect.objectContaining({ nbInvalid: 0 }), expect.objectContaining({ nbInvalid: 3, sampleInvalid: SHOWN })],
    });
    expect(list.active).toBe(true);

    const emptied = r.lists.find((l) => l.segmentId === '503')!;
    expect(emptied).toMatchObject({
      active: false,
      latest: { action: 'empty', funnel: null, synced: 0, matchRate: null, coverage: null, criteo: { identifiers: 0, matched: 0 } },
    });
    expect(r.lists.find((l) => l.segmentId === '504')).toMatchObject({ active: true, latest: null, runs: [] });
  });

  it('warns, with the action to take, of a low match rate, drift, a stale list, invalid emails upstream and identifiers Criteo rejected', async () => {
    const r = await report();
    const codes = r.warnings.map((w) => `${w.segmentId}:${w.code}${w.campaignId ? `:${w.campaignId}` : ''}`).sort();
    expect(codes).toEqual(['501:criteo_rejected_identifiers', '501:drift', '501:invalid_emails:a2', '501:low_match_rate', '502:stale']);
    const by = (code: string) => r.warnings.find((w) => w.code === code)!;
    // 150 ÷ 600 = 25% < 30%.
    expect(by('low_match_rate').message).toContain('25.0% (150 matched of 600 identifiers in Criteo');
    // Read 23 h ago: the day-settled ledger is run 2's (980), and the resync left 980 too; 600 is 38.8% fewer.
    expect(by('drift').message).toContain('38.8% fewer than the 980');
    expect(by('drift').action).toContain('audience-sync resync --list 501 --full');
    // 200 of a2's 570 customers with an email: 35.1% > 20%; a1's 6.4% and the list's 20.0% are not over.
    expect(by('invalid_emails').message).toContain('35.1%');
    expect(by('criteo_rejected_identifiers').message).toContain(`rejected 3 of the 980 identifiers`);
    expect(by('criteo_rejected_identifiers').message).toContain(SHOWN.join(', '));
    // 502: last success 40 h ago (> 36 h); the failure since is named, with what to run.
    expect(by('stale').message).toMatch(/40 hours without a successful sync.*run \d+, ended failed: Criteo answered 503 five times/);
    expect(by('stale').action).toContain('audience-sync resync --list 502');
    // 504's campaign started 2 h ago: not late yet. 503 has ended: never stale.
    expect(r.warnings.some((w) => w.segmentId === '504' || w.segmentId === '503')).toBe(false);
  });

  it('honours LOW_MATCH_RATE, --since, --list and --campaign', async () => {
    expect((await report({ lowMatchRate: 0.2 })).warnings.some((w) => w.code === 'low_match_rate')).toBe(false);

    const recent = await report({ since: ago(2.5 * DAY) });
    expect(recent.lists.find((l) => l.segmentId === '501')!.runs.map((x) => x.synced)).toEqual([980, 980]);

    const one = await report({ segmentId: '502' });
    expect(one.lists.map((l) => l.segmentId)).toEqual(['502']);

    const a2 = await report({ campaignId: 'a2' });
    expect(a2.lists.map((l) => l.segmentId)).toEqual(['501']);
    expect(a2.lists[0]!.campaigns.map((c) => c.campaignId)).toEqual(['a2']);
    expect(a2.lists[0]!.latest!.campaigns.map((c) => c.campaignId)).toEqual(['a2']);
    await expect(report({ campaignId: 'nope' })).rejects.toThrow('--campaign: no campaign named nope');
  });

  it('`report --format json` and `--format csv` from a real process parse back to the same figures', async () => {
    const expected = await report();
    const asJson = await runCli(['report', '--format', 'json'], world.env);
    expect(asJson.status).toBe(0);
    const parsed = JSON.parse(asJson.stdout) as CoverageReport;
    expect(parsed.lists).toEqual(expected.lists);
    expect(parsed.thresholds).toEqual(expected.thresholds);

    const asCsv = await runCli(['report', '--format', 'csv'], world.env);
    expect(asCsv.status).toBe(0);
    const rows = parse<Record<(typeof CSV_COLUMNS)[number], string>>(asCsv.stdout, { columns: true });
    expect(Object.keys(rows[0]!)).toEqual([...CSV_COLUMNS]);
    const num = (v: string) => (v === '' ? null : Number(v));
    const listRows = rows.filter((x) => x.row_type === 'list');
    const runs = expected.lists.flatMap((l) => l.runs.map((run) => ({ l, run })));
    expect(listRows).toHaveLength(runs.length);
    runs.forEach(({ l, run }, i) => {
      const row = listRows[i]!;
      expect(row.segment_id).toBe(l.segmentId);
      expect(num(row.run_id)).toBe(run.runId);
      expect(num(row.target_group_customers)).toBe(run.funnel?.targetGroup ?? null);
      expect(num(row.with_email)).toBe(run.funnel?.withEmail ?? null);
      expect(num(row.with_valid_email)).toBe(run.funnel?.validEmail ?? null);
      expect(num(row.unique_identifiers)).toBe(run.funnel?.uniqueIdentifiers ?? null);
      expect(num(row.list_synced_ledger)).toBe(run.synced);
      expect(num(row.list_criteo_identifiers)).toBe(run.criteo?.identifiers ?? null);
      expect(num(row.list_criteo_matched)).toBe(run.criteo?.matched ?? null);
      expect(num(row.list_match_rate)).toBe(run.matchRate);
      expect(num(row.list_coverage)).toBe(run.coverage);
      expect(row.criteo_read_at || null).toBe(run.criteo?.readAt ?? null);
      expect(num(row.criteo_invalid_identifiers)).toBe(run.criteoInvalid);
    });
    const a2 = rows.find((x) => x.row_type === 'campaign' && x.campaign_id === 'a2')!;
    expect(a2).toMatchObject({
      segment_id: '501',
      target_group_customers: '600',
      with_email: '570',
      with_valid_email: '370',
      unique_identifiers: '370',
      list_synced_ledger: '980',
    });
    expect(rows.find((x) => x.list_sync_status === 'succeeded' && x.criteo_sample_invalid)!.criteo_sample_invalid).toBe(SHOWN.join(' | '));
    // No whole identifier or email-like value in any rendering, Criteo's sample included.
    for (const text of [asJson.stdout, asCsv.stdout]) {
      expect(text).not.toContain(BAD_1);
      expect(text).not.toContain(BAD_EMAIL);
      expect(text).not.toMatch(/(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/i);
    }
  });

  it('`report` prints warnings and funnels on the terminal, writes --out files, and refuses bad usage with exit 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-'));
    const [file, page] = [join(dir, 'r.json'), join(dir, 'r.html')];
    const [table, written, html] = await Promise.all([
      runCli(['report', '--list', '501'], world.env),
      runCli(['report', '--format', 'json', '--out', file], world.env),
      runCli(['report', '--format', 'html', '--out', page], world.env),
    ]);
    expect(table.status).toBe(0);
    expect(table.stdout).toContain('WARNINGS (4)');
    expect(table.stdout).toMatch(/target-group customers\s+1,300\s+100\.0%/);
    expect(table.stdout).toMatch(/synced \(our ledger\)\s+980/);
    expect(table.stdout).toContain('match rate (matched ÷ identifiers in Criteo): 25.0%');
    expect(written).toMatchObject({ status: 0, stdout: '' });
    expect((JSON.parse(readFileSync(file, 'utf8')) as CoverageReport).lists.length).toBe(4);
    expect(html.status).toBe(0);
    for (const text of [table.stdout, readFileSync(page, 'utf8')]) {
      expect(text).toContain(SHOWN[0]);
      expect(text).not.toContain(BAD_EMAIL);
      expect(text).not.toMatch(/(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/i);
    }
    rmSync(dir, { recursive: true, force: true });

    const bad = [
      ['report', '--list', '501', '--campaign', 'a1'],
      ['report', '--since', 'last tuesday'],
      ['report', '--format', 'pdf'],
      ['report', '--campaign', 'nope'],
      ['report', '--list', 'abc'],
    ];
    const outcomes = await Promise.all(bad.map((args) => runCli(args, world.env)));
    outcomes.forEach((out, i) => expect(out.status, bad[i]!.join(' ')).toBe(2));
    expect(outcomes[3]!.stderr).toContain('--campaign: no campaign named nope');
  });
});

describe('the report against the sandbox', () => {
  it('after real syncs repeats what the sandbox holds and reports, and still does after a --full resync re-sent every identifier', async () => {
    const db = world.database.db;
    await seedCampaigns(db, [
      { id: 's1', segmentId: '601', advertiserId: '7' },
      { id: 's2', segmentId: '601', advertiserId: '7' },
    ]);
    await seedCustomers(db, 10_000, 12_000);
    // 100 without an email, 50 invalid, 20 sharing another's email, 30 not in the customer table.
    await sql`UPDATE audience_sync.customers SET email = NULL WHERE customer_id IN (SELECT 'c' || i FROM generate_series(10000, 10099) i)`.execute(db);
    await sql`UPDATE audience_sync.customers SET email = 'no-at-sign' || customer_id WHERE customer_id IN (SELECT 'c' || i FROM generate_series(10100, 10149) i)`.execute(
      db,
    );
    await sql`UPDATE audience_sync.customers SET email = ' USER11999@EXAMPLE.COM' WHERE customer_id IN (SELECT 'c' || i FROM generate_series(10150, 10169) i)`.execute(
      db,
    );
    await seedTargetGroup(db, 's1', 10_000, 11_500);
    await seedTargetGroup(db, 's2', 11_000, 12_030);

    const first = await world.run({ segmentIds: ['601'] });
    expect(first.status).toBe('succeeded');
    const full = await world.run({ segmentIds: ['601'], full: true });
    expect(full.lists[0]).toMatchObject({ status: 'succeeded', ledgerBefore: 1_830, added: 1_830 }); // re-sent, already held

    const list = (await report({ segmentId: '601' })).lists[0]!;
    const held = world.sandbox.members('601');
    // Known answers: c10000..c12029 is 2,030 customers, 30 of them unknown, 100 without an email and 50
    // with an invalid one: 1,900 with an email, 1,850 valid; 20 share c11999's, so 1,830 distinct identifiers.
    expect(list.latest!.funnel).toEqual({
      targetGroup: 2_030,
      missingCustomers: 30,
      withoutEmail: 100,
      invalidEmails: 50,
      withEmail: 1_900,
      validEmail: 1_850,
      uniqueIdentifiers: 1_830,
    });
    expect(list.runs.map((x) => x.synced)).toEqual([held.size, held.size]);
    expect(held.size).toBe(list.latest!.funnel!.uniqueIdentifiers);

    // Criteo's side: the sandbox's own statistics, and an independent count of its matched members.
    const client = new CriteoClient(world.config.criteo, silentLogger);
    const stats = (await client.getStatistics('601')).body;
    await client.close();
    const matched = [...held].filter((id) => matchScore(id) < 0.6).length;
    expect(list.latest!.criteo).toMatchObject({ identifiers: stats.numberOfIdentifiers, matched: stats.numberOfMatches });
    expect(list.latest!.criteo!.matched).toBe(matched);
    expect(list.latest!.matchRate).toBe(matched / held.size);
    expect(list.latest!.coverage).toBe(matched / 2_030);
    expect(list.latest!.campaigns.map((c) => [c.campaignId, c.funnel.targetGroup])).toEqual([
      ['s1', 1_500],
      ['s2', 1_030],
    ]);
    // Every batch was well formed: Criteo rejected nothing.
    expect(list.runs.every((x) => x.criteoInvalid === 0 && x.batches.length > 0)).toBe(true);

    // The `coverage` command's rows say the same.
    expect((await coverageByList(db, { segmentIds: ['601'] }))[0]).toMatchObject({ synced: held.size, matched, targetGroupSize: 2_030 });
  });
});

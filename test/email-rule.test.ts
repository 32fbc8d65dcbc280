import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type DbHandle } from '../src/db/connection.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createTestDatabase, referenceIdentifier } from './helpers.js';

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const HASH = sha('someone@example.com');

// [description, raw value, the normalised email it must hash, or 'hash' to pass unchanged, or null for invalid]
const vectors: [string, string | null, string | null][] = [
  ['plain address', 'user@example.com', 'user@example.com'],
  ['mixed case is lowercased', 'User.Name@Example.COM', 'user.name@example.com'],
  ['surrounding ASCII white space is trimmed', ' \t user@example.com \r\n', 'user@example.com'],
  ['plus tags and dots in the local part', 'first.last+promo@sub.example.co.uk', 'first.last+promo@sub.example.co.uk'],
  ['WHATWG specials in the local part', "o'brien#!$%&*/=?^_`{|}~-@example.com", "o'brien#!$%&*/=?^_`{|}~-@example.com"],
  ['punycode domain', 'user@xn--exmple-cua.com', 'user@xn--exmple-cua.com'],
  ['numeric labels', 'user@123.456.com', 'user@123.456.com'],
  ['local part of exactly 64', `${'a'.repeat(64)}@example.com`, `${'a'.repeat(64)}@example.com`],
  [
    '254 characters in all',
    `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`,
    `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`,
  ],
  ['a label of 63', `u@${'x'.repeat(63)}.com`, `u@${'x'.repeat(63)}.com`],
  ['NULL', null, null],
  ['empty', '', null],
  ['only white space', ' \t\n ', null],
  ['no dot in the domain', 'user@localhost', null],
  ['no @', 'user.example.com', null],
  ['two @', 'user@@example.com', null],
  ['empty local part', '@example.com', null],
  ['empty domain', 'user@', null],
  ['local part of 65', `${'a'.repeat(65)}@example.com`, null],
  ['255 characters in all', `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(58)}.com`, null],
  ['a label of 64', `u@${'x'.repeat(64)}.com`, null],
  ['label starting with a hyphen', 'user@-example.com', null],
  ['label ending with a hyphen', 'user@example-.com', null],
  ['trailing dot', 'user@example.com.', null],
  ['empty label', 'user@example..com', null],
  ['underscore in the domain', 'user@exa_mple.com', null],
  ['space inside', 'user name@example.com', null],
  ['quoted local part', '"user"@example.com', null],
  ['unicode local part', 'usér@example.com', null],
  ['IDN domain not in punycode', 'user@exämple.com', null],
  ['emoji', '😀@example.com', null],
  ['SQL fragment', "user@example.com'; DROP TABLE customers;--", null],
  ['newline inside', 'user@exam\nple.com', null],
  ['non-breaking space is not ASCII white space', '\u00a0user@example.com', null],
  ['KELVIN SIGN lowercases to k, but is not ASCII', 'user@\u212Aexample.com', null],
  ['dotted capital I lowercases to i, but is not ASCII', '\u0130nfo@example.com', null],
  ['already a SHA-256: passes unchanged', HASH, 'hash'],
  ['upper-case SHA-256: lowercased, not hashed again', HASH.toUpperCase(), 'hash'],
  ['SHA-256 with white space', `  ${HASH}\n`, 'hash'],
  ['63 hex characters is not a hash', HASH.slice(1), null],
  ['65 hex characters is not a hash', `${HASH}a`, null],
];

let database: DbHandle;
let drop: () => Promise<void>;

beforeAll(async () => {
  const t = await createTestDatabase('email_rule');
  drop = t.drop;
  database = connect(t.url);
  await migrateToLatest(database.db);
});

afterAll(async () => {
  await database?.close();
  await drop?.();
});

describe('the identifier recipe (audience_sync.email_identifier)', () => {
  it.each(vectors)('%s', async (_label, raw, expected) => {
    const { rows } = await sql<{ id: string | null }>`SELECT encode(audience_sync.email_identifier(${raw}::text), 'hex') AS id`.execute(database.db);
    const want = expected === null ? null : expected === 'hash' ? HASH : sha(expected);
    expect(rows[0]!.id).toBe(want);
    // The independent Node implementation used by the other tests agrees.
    expect(referenceIdentifier(raw, createHash)).toBe(want);
  });

  /** Plans list 900 (fed by campaign k) through the job's own planList, committed, and returns the plan. */
  async function planListNow() {
    const { planList } = await import('../src/sync/run.js');
    const config = { criteo: { batchSize: 50_000 }, maxRemovalRatio: 1, sourceWholeReadDays: 7 } as Parameters<typeof planList>[0]['config'];
    const target = { segmentId: '900', campaignIds: ['k'], activeCampaignIds: ['k'], advertiserIds: ['1'], allEnded: false, invertedCampaignIds: [] };
    return planList({ db: database.db, config }, { target, asOf: new Date(), options: { trigger: 'test' } }, -1, { batchIds: [], wholeList: false });
  }

  it('classifies target-group rows as missing, invalid or valid, and shares one identifier between customers with one email', async () => {
    await sql`INSERT INTO audience_sync.customers VALUES ('a', NULL), ('b', '  '), ('c', 'bad@nodot'), ('d', 'Same@Example.com'), ('e', ' same@example.com')`.execute(
      database.db,
    );
    await sql`INSERT INTO audience_sync.campaign_target_groups VALUES ('k', 'a'), ('k', 'b'), ('k', 'c'), ('k', 'd'), ('k', 'e'), ('k', 'ghost')`.execute(
      database.db,
    );
    const plan = await planListNow();
    expect(plan.changedRows).toBe(6);
    expect(plan.funnel).toEqual({ targetGroupSize: 6, missingCustomers: 1, withoutEmail: 2, invalidEmails: 1, uniqueIdentifiers: 1 });
    const { rows } = await sql<{ customer_id: string; email_state: string; id: string | null }>`
      SELECT customer_id, email_state, encode(identifier, 'hex') AS id FROM audience_sync.list_targets ORDER BY customer_id`.execute(database.db);
    expect(rows.map((r) => r.email_state)).toEqual(['missing', 'missing', 'invalid', 'valid', 'valid', 'no_customer']);
    expect(rows[3]!.id).toBe(sha('same@example.com'));
    expect(rows[4]!.id).toBe(rows[3]!.id);
  });

  it('re-validates only the rows whose email changed, appeared or disappeared', async () => {
    expect((await planListNow()).changedRows).toBe(0);
    await sql`UPDATE audience_sync.customers SET email = 'fixed@example.com' WHERE customer_id = 'c'`.execute(database.db);
    await sql`DELETE FROM audience_sync.customers WHERE customer_id = 'a'`.execute(database.db);
    await sql`DELETE FROM audience_sync.campaign_target_groups WHERE customer_id = 'b'`.execute(database.db);
    const plan = await planListNow();
    expect(plan.changedRows).toBe(3);
    expect(plan.funnel).toEqual({ targetGroupSize: 5, missingCustomers: 2, withoutEmail: 0, invalidEmails: 0, uniqueIdentifiers: 2 });
    const { rows } = await sql<{ customer_id: string; email_state: string }>`
      SELECT customer_id, email_state FROM audience_sync.list_targets ORDER BY customer_id`.execute(database.db);
    expect(rows).toEqual([
      { customer_id: 'a', email_state: 'no_customer' },
      { customer_id: 'c', email_state: 'valid' },
      { customer_id: 'd', email_state: 'valid' },
      { customer_id: 'e', email_state: 'valid' },
      { customer_id: 'ghost', email_state: 'no_customer' },
    ]);
  });
});

import type pg from 'pg';

/**
 * The benchmark's source data, generated in Postgres in a few set-based
 * statements (no row leaves the server).
 *
 * N customers `C0000000001`… with a realistic mix of emails, drawn from a hash
 * of the customer number so that the mix is the same in every campaign:
 *   6.5 % no email (5 % NULL, 1 % empty, 0.5 % blank)
 *   2.5 % invalid (dotless domain, space, double @, local part over 64, empty label)
 *   1 %   valid only after trimming and lowercasing
 *   1 %   the same email as the previous customer (one member for two customers)
 *   0.5 % already a SHA-256 (64 hex), sent as is
 *   88.5 % plain valid emails on a dozen domains; with `--international S`,
 *          S of all customers (taken from these) have an address beyond ASCII
 *          instead: German, Nordic, Greek, Cyrillic, Chinese and Turkish
 *          names and domains, half with capitals to lowercase
 *
 * Lists:
 *   1001 fed by two campaigns sharing it: bench-a targets customers 1..0.7N,
 *        bench-b 0.5N+1..N (0.2N in both), plus 0.1 % of N rows naming
 *        customers that do not exist. So the list is about 0.92 N members.
 *   1002 fed by bench-c, customers 1..0.01N; its campaign ends before the
 *        daily run, so the daily run empties it with one DELETE.
 *
 * Daily churn R (default 0.01): 0.4 R N members leave bench-a, 0.4 R N new
 * customers join bench-b, 0.1 R N customers change email (a remove and an
 * add each). About 0.5 R N adds and 0.5 R N removes in all.
 */

export const BIG_LIST = '1001';
export const SMALL_LIST = '1002';
export const SCRATCH_LIST = '1999';
export const ADVERTISER = '77';

const DOMAINS = [
  'gmail.com',
  'yahoo.fr',
  'orange.fr',
  'hotmail.com',
  'outlook.com',
  'free.fr',
  'laposte.net',
  'icloud.com',
  'example.co.uk',
  'mail.example-shop.de',
  'sfr.fr',
  'web.de',
];
const FIRST = ['marie', 'jean', 'lea', 'lucas', 'emma', 'hugo', 'chloe', 'louis', 'ines', 'jules', 'anna', 'paul'];

const INTERNATIONAL_FIRST = ['dörte', 'Jürgen', 'коля', 'ΧΡήστΗς', 'søren', 'JOSÉ', 'zoë', '张伟', 'İnci', 'Łukasz'];
const INTERNATIONAL_DOMAINS = ['sörensen.example', 'gmail.com', 'пример.рф', 'ΠΑΡΆΔΕΙΓΜΑ.ελ', 'web.de', '例子.广告', 'mail.ru', 'münchen.de'];

/** The email of customer i (an SQL expression over the integer column `i`), per the mix above; `international` per mille beyond ASCII. */
export function emailExpression(i: string, international = 0): string {
  const r = `(abs(hashint4(${i})) % 1000)`;
  const first = (n: string) => `(ARRAY[${FIRST.map((f) => `'${f}'`).join(',')}])[1 + abs(hashint4(${n} + 17)) % ${FIRST.length}]`;
  const domain = (n: string) => `(ARRAY[${DOMAINS.map((d) => `'${d}'`).join(',')}])[1 + abs(hashint4(${n} + 31)) % ${DOMAINS.length}]`;
  const base = (n: string) => `${first(n)} || '.' || ${n} || CASE WHEN ${n} % 7 = 0 THEN '+news' ELSE '' END || '@' || ${domain(n)}`;
  return `CASE
      WHEN ${r} < 50  THEN NULL
      WHEN ${r} < 60  THEN ''
      WHEN ${r} < 65  THEN '   '
      WHEN ${r} < 75  THEN 'user' || ${i} || '@mailhost'
      WHEN ${r} < 80  THEN 'user ' || ${i} || '@example.com'
      WHEN ${r} < 85  THEN 'user' || ${i} || '@@example.com'
      WHEN ${r} < 88  THEN repeat('x', 64) || ${i} || '@example.com'
      WHEN ${r} < 90  THEN 'user' || ${i} || '@example..com'
      WHEN ${r} < 100 THEN E'  ' || upper(${base(i)}) || E'\\t'
      WHEN ${r} < 110 THEN ${base(`(${i} - 1)`)}
      WHEN ${r} < 115 THEN encode(sha256(convert_to(${base(i)}, 'UTF8')), 'hex')
      WHEN ${r} < ${115 + international} THEN ${internationalAddress(i)}
      ELSE ${base(i)}
    END`;
}

function internationalAddress(i: string): string {
  const pick = (list: string[], salt: number) => `(ARRAY[${list.map((f) => `'${f}'`).join(',')}])[1 + abs(hashint4(${i} + ${salt})) % ${list.length}]`;
  return `${pick(INTERNATIONAL_FIRST, 41)} || '.' || ${i} || '@' || ${pick(INTERNATIONAL_DOMAINS, 43)}`;
}

export const customerId = (i: string) => `'C' || lpad((${i})::text, 10, '0')`;

/** `international`: the share of customers whose address is beyond ASCII (0 to 0.88). */
export async function generateSource(client: pg.Client, n: number, international = 0): Promise<void> {
  // Loaded without their primary keys, which are then built by one sort each:
  // ten million ordered inserts into a B-tree take minutes, a build seconds.
  // The keys are the migration's own (same columns, same default names).
  await client.query('ALTER TABLE audience_sync.customers DROP CONSTRAINT customers_pkey');
  await client.query('ALTER TABLE audience_sync.campaign_target_groups DROP CONSTRAINT campaign_target_groups_pkey');
  await client.query(`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT ${customerId('i')}, ${emailExpression('i', Math.round(international * 1000))}
    FROM generate_series(1, ${n}) i`);
  const DAY = "interval '1 day'";
  await client.query(`
    INSERT INTO audience_sync.campaigns (campaign_id, name, advertiser_id, audience_segment_id, starts_at, measurement_ends_at)
    VALUES ('bench-a', 'Bench A', ${ADVERTISER}, ${BIG_LIST}, now() - 3 * ${DAY}, now() + 30 * ${DAY}),
           ('bench-b', 'Bench B', ${ADVERTISER}, ${BIG_LIST}, now() - 1 * ${DAY}, now() + 45 * ${DAY}),
           ('bench-c', 'Bench C', ${ADVERTISER}, ${SMALL_LIST}, now() - 7 * ${DAY}, now() + 10 * ${DAY})`);
  await client.query(`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'bench-a', ${customerId('i')} FROM generate_series(1, ${Math.floor(0.7 * n)}) i
    UNION ALL
    SELECT 'bench-b', ${customerId('i')} FROM generate_series(${Math.floor(0.5 * n) + 1}, ${n}) i
    UNION ALL
    SELECT 'bench-b', 'X' || lpad(i::text, 10, '0') FROM generate_series(1, ${Math.max(1, Math.floor(0.001 * n))}) i
    UNION ALL
    SELECT 'bench-c', ${customerId('i')} FROM generate_series(1, ${Math.max(1, Math.floor(0.01 * n))}) i`);
  await client.query("SET maintenance_work_mem = '512MB'");
  await client.query('ALTER TABLE audience_sync.customers ADD PRIMARY KEY (customer_id)');
  await client.query('ALTER TABLE audience_sync.campaign_target_groups ADD PRIMARY KEY (campaign_id, customer_id)');
  await client.query('RESET maintenance_work_mem');
}

export interface ChurnShape {
  leave: number;
  join: number;
  emailChanges: number;
}

/** A day of churn (see above); day 1 also ends bench-c's measurement period. Later days churn other customers. */
export async function applyChurn(client: pg.Client, n: number, churn: number, day = 1, international = 0): Promise<ChurnShape> {
  const leaveEvery = Math.max(1, Math.round(0.5 / (0.4 * churn))); // among customers 1..0.5N (bench-a only)
  const changeEvery = Math.max(1, Math.round(0.5 / (0.1 * churn))); // among 0.5N+1..N
  const joins = Math.floor(0.4 * churn * n);
  const shift = day - 1;
  const firstNew = n + shift * joins + 1;
  const left = await client.query(`
    DELETE FROM audience_sync.campaign_target_groups
    WHERE campaign_id = 'bench-a'
      AND customer_id IN (SELECT ${customerId('i')} FROM generate_series(${Math.max(1, leaveEvery - shift)}, ${Math.floor(0.5 * n)}, ${leaveEvery}) i)`);
  await client.query(`
    INSERT INTO audience_sync.customers (customer_id, email)
    SELECT ${customerId('i')}, ${emailExpression('i', Math.round(international * 1000))} FROM generate_series(${firstNew}, ${firstNew + joins - 1}) i`);
  await client.query(`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'bench-b', ${customerId('i')} FROM generate_series(${firstNew}, ${firstNew + joins - 1}) i`);
  const changed = await client.query(`
    UPDATE audience_sync.customers SET email = 'moved${day}.' || substr(customer_id, 2) || '@example.org'
    WHERE customer_id IN (SELECT ${customerId('i')} FROM generate_series(${Math.floor(0.5 * n) + Math.max(1, changeEvery - shift)}, ${n}, ${changeEvery}) i)`);
  if (day === 1) await client.query(`UPDATE audience_sync.campaigns SET measurement_ends_at = now() - interval '1 minute' WHERE campaign_id = 'bench-c'`);
  return { leave: left.rowCount ?? 0, join: joins, emailChanges: changed.rowCount ?? 0 };
}

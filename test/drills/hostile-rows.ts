import { createHash } from 'node:crypto';
import { classifyEmail, type EmailVerdict } from './reference.js';

/**
 * A table of hostile customer rows: every shape of bad, odd or adversarial
 * value an operator's customer table has been known to hold, by category,
 * with what the README's recipe says each must become (missing, invalid, or
 * a valid identifier). `scale` repeats the generated categories (with
 * distinct values) for the large version.
 */

export interface HostileRow {
  customerId: string;
  email: string | null;
  category: string;
}

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const SHARED = 'shared.person@example.com';

/** One pass of every category; `n` makes the values of this pass distinct from the others'. */
function pass(n: number): HostileRow[] {
  const rows: HostileRow[] = [];
  const add = (category: string, ...emails: (string | null)[]) => {
    for (const email of emails) rows.push({ customerId: `h${n}-${rows.length}`, email, category });
  };
  const u = (s: string) => s.replace('{n}', String(n));
  add('null', null);
  add('empty', '');
  add('white space only', ' ', '\t', '\n \r\n', '\f\f', '   \t  ');
  add('padded with ASCII white space', u('  padded{n}.user@example.com\t\n'), u('\r\nline{n}@example.org\r\n'));
  add('mixed case', u('MiXeD.CaSe{n}@ExAmPlE.CoM'), u('UPPER{n}@EXAMPLE.NET'));
  add('unicode local part', u('jöhn{n}.doe@example.com'), u('δοκιμή{n}@example.com'), u('用户{n}@example.com'));
  add('IDN domain (not punycode)', u('user{n}@bücher.de'), u('user{n}@пример.рф'));
  add('IDN domain as punycode', u('user{n}@xn--bcher-kva.de'));
  add('unicode white space', u('\u00a0nbsp{n}@example.com'), u('em{n}\u2003space@example.com'), u('zero{n}\u200bwidth@example.com'));
  add('emoji', u('😀{n}@example.com'), u('user{n}@😀.com'), u('smile{n}😀@example.com'));
  add(
    'too long',
    u(`${'a'.repeat(65)}{n}@example.com`), // local part over 64
    u(`l{n}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(60)}.${'g'.repeat(60)}.com`), // over 254
    u(`${'x'.repeat(300)}{n}@example.com`),
    'y'.repeat(10_000),
    u(`lbl{n}@${'z'.repeat(64)}.com`), // a domain label over 63
  );
  add('at the length limits', `${'a'.repeat(64 - String(n).length)}${n}@example.com`, `b${n}@${'c'.repeat(63)}.com`);
  add(
    'quotes and SQL fragments',
    u("o'brien{n}@example.com"), // an apostrophe is valid in the local part
    u('"quoted{n}"@example.com'),
    u("x{n}'); DROP TABLE audience_sync.customers; --@example.com"),
    u("robert{n}@example.com'; DELETE FROM audience_sync.list_members; --"),
    u('pct{n}%_under@example.com'), // LIKE wildcards, valid
    u('back{n}\\slash@example.com'),
    u("' OR '1'='1{n}@example.com"),
    u('$$ SELECT pg_sleep(10) $${n}@example.com'),
  );
  add('newlines and tabs inside', u('new{n}\nline@example.com'), u('tab{n}\t@example.com'), u('cr{n}\r@example.com'));
  add(
    'not an address',
    u('plainaddress{n}'),
    u('@example{n}.com'),
    u('user{n}@'),
    u('user{n}@localhost'),
    u('user{n}@@example.com'),
    u('user{n}@.example.com'),
    u('user{n}@example..com'),
    u('user{n}@-example.com'),
    u('user{n}@example.com.'),
    u('a@b{n}@example.com'),
  );
  add('duplicates across customers', u(`shared{n}.person@example.com`), u(` Shared{n}.Person@Example.com `), u(`SHARED{n}.PERSON@EXAMPLE.COM`));
  add('already hashed', sha(u(`shared{n}.person@example.com`)), sha(u('hashed{n}@example.com')));
  add('upper-case hex', sha(u('upperhex{n}@example.com')).toUpperCase(), ` ${sha(u('padhex{n}@example.com'))} `);
  add('almost hex', sha(u('x{n}')).slice(0, 63), `${sha(u('y{n}'))}0`, `${sha(u('z{n}')).slice(0, 63)}g`);
  add('ordinary', u('ordinary{n}@example.com'), u('first.last+tag{n}@sub.example.co.uk'));
  return rows;
}

export function hostileRows(scale = 1): HostileRow[] {
  const rows: HostileRow[] = [];
  for (let n = 0; n < scale; n++) rows.push(...pass(n));
  // Shared across passes: the same person under several customers, and as a hash.
  rows.push({ customerId: 'dup-a', email: SHARED, category: 'duplicates across customers' });
  rows.push({ customerId: "dup-'b'", email: ` ${SHARED.toUpperCase()}\t`, category: 'duplicates across customers' });
  rows.push({ customerId: 'dup-ç', email: sha(SHARED), category: 'already hashed' });
  return rows;
}

/** Case-folding that turns non-ASCII letters into ASCII ones (the Kelvin sign, dotted capital I). */
export const CASE_FOLDING_ROWS: HostileRow[] = [
  { customerId: 'fold-kelvin', email: 'info@\u212Aelvin-fold.example', category: 'unicode case folding' },
  { customerId: 'fold-dotted-i', email: '\u0130nfo@dotted-fold.example', category: 'unicode case folding' },
];

/** Customer ids that are themselves hostile; their emails are ordinary. */
export const HOSTILE_CUSTOMER_IDS = ["c'quote", 'c"dq', ' padded-id ', 'ç-ü-ß', '😀', "'; DROP TABLE x; --", 'tab\tid', ''];

export interface Expected {
  targetGroupSize: number;
  withoutEmail: number;
  invalidEmails: number;
  uniqueIdentifiers: number;
  identifiers: Set<string>;
  byCategory: Map<string, { rows: number; missing: number; invalid: number; valid: number }>;
}

/** What the recipe says a target group of these rows must give (missing customers not included). */
export function expectedOf(rows: readonly HostileRow[]): Expected {
  const identifiers = new Set<string>();
  const byCategory = new Map<string, { rows: number; missing: number; invalid: number; valid: number }>();
  let withoutEmail = 0;
  let invalidEmails = 0;
  for (const r of rows) {
    const v: EmailVerdict = classifyEmail(r.email);
    const c = byCategory.get(r.category) ?? { rows: 0, missing: 0, invalid: 0, valid: 0 };
    c.rows++;
    c[v.state]++;
    byCategory.set(r.category, c);
    if (v.state === 'missing') withoutEmail++;
    else if (v.state === 'invalid') invalidEmails++;
    else identifiers.add(v.identifier);
  }
  return { targetGroupSize: rows.length, withoutEmail, invalidEmails, uniqueIdentifiers: identifiers.size, identifiers, byCategory };
}

import { createHash } from 'node:crypto';

/**
 * The identifier recipe of the README, written once more in Node,
 * independently of the job's SQL (audience_sync.email_identifier), so the
 * tests and drills judge the job against the contract and not against
 * itself. Node's own Unicode data does the work here (String.normalize,
 * toLowerCase, \p{...} classes); the SQL pins Unicode 17.0, so the two agree
 * for every character both know.
 */
const WHATWG = /^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const ATEXT = /^[a-z0-9.!#$%&'*+/=?^_`{|}~-]$/;
// Set subtraction needs the v flag (ES2024), written as a string for the compiler's ES2022 target.
const LOCAL_BEYOND_ASCII = new RegExp('^[[\\p{L}\\p{M}\\p{N}\\p{P}\\p{S}]--[\\p{ASCII}\\p{Default_Ignorable_Code_Point}]]$', 'v');
const LABEL_BEYOND_ASCII = new RegExp('^[[\\p{L}\\p{M}\\p{Nd}]--[\\p{ASCII}\\p{Default_Ignorable_Code_Point}]]$', 'v');
const localCharacter = (c: string) => ATEXT.test(c) || LOCAL_BEYOND_ASCII.test(c);
const labelCharacter = (c: string) => /^[a-z0-9-]$/.test(c) || LABEL_BEYOND_ASCII.test(c);
const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8');

export type EmailVerdict = { state: 'missing' } | { state: 'invalid' } | { state: 'valid'; identifier: string };

export function classifyEmail(email: string | null): EmailVerdict {
  if (email === null) return { state: 'missing' };
  const e = email.replace(/^[ \t\n\r\f]+|[ \t\n\r\f]+$/g, '');
  if (e === '') return { state: 'missing' };
  if (/^[0-9a-fA-F]{64}$/.test(e)) return { state: 'valid', identifier: e.toLowerCase() };
  // Any character beyond ASCII (NUL never reaches here: Postgres text holds none).
  const normalised = /[^\p{ASCII}]/u.test(e) ? internationalEmail(e) : asciiEmail(e);
  return normalised === null ? { state: 'invalid' } : { state: 'valid', identifier: createHash('sha256').update(normalised, 'utf8').digest('hex') };
}

/** An ASCII value: the WHATWG syntax with a dot in the domain and RFC 5321's lengths, checked before lowercasing. */
function asciiEmail(e: string): string | null {
  const at = e.indexOf('@');
  const lower = e.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  if (e.length > 254 || at < 1 || at > 64 || !e.slice(at + 1).includes('.') || !WHATWG.test(lower)) return null;
  return lower;
}

/** A value beyond ASCII: Unicode white space trimmed, NFC, Unicode lowercase, then RFC 6531's syntax with the hidden and invisible left out. */
export function internationalEmail(raw: string): string | null {
  const e = raw
    .replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '')
    .normalize('NFC')
    .toLowerCase();
  const at = e.indexOf('@');
  const local = e.slice(0, at);
  const domain = e.slice(at + 1);
  if (at < 1 || utf8Length(e) > 254 || utf8Length(local) > 64 || ![...local].every(localCharacter)) return null;
  const labels = domain.split('.');
  if (labels.length < 2 || domain !== domain.normalize('NFKC')) return null;
  for (const label of labels) {
    const chars = [...label];
    if (chars.length === 0 || chars.length > 63 || !chars.every(labelCharacter)) return null;
    if (label.startsWith('-') || label.endsWith('-') || /^\p{M}/u.test(label)) return null;
  }
  return e;
}

export function referenceIdentifier(email: string | null): string | null {
  const v = classifyEmail(email);
  return v.state === 'valid' ? v.identifier : null;
}

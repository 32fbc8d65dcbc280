import { createHash } from 'node:crypto';

/**
 * The identifier recipe of the README, written once more in Node,
 * independently of the job's SQL (audience_sync.email_identifier), so the
 * drills judge the job against the contract and not against itself.
 */
const WHATWG = /^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export type EmailVerdict = { state: 'missing' } | { state: 'invalid' } | { state: 'valid'; identifier: string };

export function classifyEmail(email: string | null): EmailVerdict {
  if (email === null) return { state: 'missing' };
  // Trim ASCII white space only (space, tab, newline, carriage return, form feed),
  // then ASCII-lowercase: the WHATWG syntax is ASCII, and a Unicode lowercasing
  // would turn 'İ' or the Kelvin sign into ASCII letters the customer never typed.
  const e = email.replace(/^[ \t\n\r\f]+|[ \t\n\r\f]+$/g, '').replace(/[A-Z]+/g, (s) => s.toLowerCase());
  if (e === '') return { state: 'missing' };
  if (/^[0-9a-f]{64}$/.test(e)) return { state: 'valid', identifier: e };
  const at = e.indexOf('@');
  if (e.length > 254 || at < 1 || at > 64 || !e.slice(at + 1).includes('.') || !WHATWG.test(e)) return { state: 'invalid' };
  return { state: 'valid', identifier: createHash('sha256').update(e, 'utf8').digest('hex') };
}

export function referenceIdentifier(email: string | null): string | null {
  const v = classifyEmail(email);
  return v.state === 'valid' ? v.identifier : null;
}

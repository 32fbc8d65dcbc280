/**
 * The identifiers a contact list holds: whether they are the SHA-256 hex the job must
 * send, whether Criteo would call them well formed, whether Criteo would "match" them,
 * and the audit of what the sandbox received.
 */
import type { IdentifierAudit } from './types.js';

export type IdentifierType = 'email' | 'madid' | 'identityLink' | 'gum' | 'phoneNumber';

const PLAUSIBLE_EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const E164 = /^\+?[1-9]\d{6,14}$/;

/** 1 for the UTF-16 code units 0-9 and a-f; a full 64K table avoids a range branch in the hot loop. */
const HEX_DIGIT = (() => {
  const table = new Uint8Array(65_536);
  for (const ch of '0123456789abcdef') table[ch.charCodeAt(0)] = 1;
  return table;
})();

/**
 * 64 lowercase hex characters, i.e. what the job must send. A table loop: about twice
 * as fast as the equivalent regex, and this runs for every identifier of every PATCH.
 */
export function isSha256Hex(s: string): boolean {
  if (s.length !== 64) return false;
  let ok = 1;
  for (let i = 0; i < 64; i++) ok &= HEX_DIGIT[s.charCodeAt(i)] as number;
  return ok === 1;
}

/**
 * What Criteo would call well formed, for identifiers that are not SHA-256 hex (those
 * are valid for email and phoneNumber, and for the free-form types). A stand-in:
 * Criteo does not publish its rules.
 */
export function nonHexValidator(type: IdentifierType): (s: string) => boolean {
  switch (type) {
    case 'email':
      return (s) => s.length <= 254 && PLAUSIBLE_EMAIL.test(s);
    case 'phoneNumber':
      return (s) => E164.test(s);
    default:
      return (s) => s.length > 0 && s.length <= 256 && !/\s/.test(s);
  }
}

/** FNV-1a, for a deterministic score of identifiers that are not hex digests. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Value of the first 8 hex characters, without slice + parseInt allocations. */
function hexPrefix32(s: string): number {
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const c = s.charCodeAt(i);
    v = v * 16 + (c <= 57 ? c - 48 : c - 87);
  }
  return v;
}

/** A stable number in [0, 1) per identifier: "would Criteo match this user". */
export function matchScore(identifier: string, hex = isSha256Hex(identifier)): number {
  return (hex ? hexPrefix32(identifier) : fnv1a(identifier)) / 2 ** 32;
}

/** What the sandbox keeps of the identifiers received in PATCH bodies. */
export class IdentifierAuditor {
  private readonly audit: IdentifierAudit = { received: 0, notSha256Hex: 0, samples: [] };
  /** Every distinct identifier, when the sandbox was asked to keep them. */
  private readonly seen: Set<string> | undefined;

  constructor(keepAll: boolean | undefined) {
    this.seen = keepAll ? new Set() : undefined;
  }

  /** Counts the identifiers of one PATCH body, before they are looked at one by one. */
  count(n: number): void {
    this.audit.received += n;
  }

  /** Notes one received identifier; `hex` is isSha256Hex(id), already known to the caller. */
  note(id: string, hex: boolean): void {
    if (!hex) {
      this.audit.notSha256Hex++;
      if (this.audit.samples.length < 10) this.audit.samples.push(id);
    }
    this.seen?.add(id);
  }

  snapshot(): IdentifierAudit {
    return { ...this.audit, samples: [...this.audit.samples] };
  }

  all(): Iterable<string> {
    if (!this.seen) {
      throw new Error('sandbox: start it with recordReceivedIdentifiers: true to keep every identifier, or use identifierAudit()');
    }
    return this.seen;
  }
}

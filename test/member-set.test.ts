import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemberSet } from '../src/sandbox/member-set.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('the sandbox member set', () => {
  it('holds what a Set would, through growth, deletes and re-adds', () => {
    const members = new MemberSet();
    const reference = new Set<string>();
    // Made-up identifiers that differ only in their last words, and real digests.
    const ids = [...Array.from({ length: 3000 }, (_, i) => i.toString(16).padStart(64, '0')), ...Array.from({ length: 3000 }, (_, i) => sha(`c${i}`))];
    for (const id of ids) expect(members.add(id)).toBe(!reference.has(id) && reference.add(id) !== undefined);
    for (const id of ids.slice(0, 100)) expect(members.add(id)).toBe(false);
    for (const id of ids.filter((_, i) => i % 3 === 0)) {
      expect(members.delete(id)).toBe(true);
      reference.delete(id);
    }
    expect(members.delete(ids[0]!)).toBe(false);
    // Deleted slots are reused and skipped: a re-added member is found once, a deleted one not at all.
    for (const id of ids.filter((_, i) => i % 6 === 0)) {
      expect(members.add(id)).toBe(true);
      reference.add(id);
    }
    expect(members.size).toBe(reference.size);
    expect(new Set(members)).toEqual(reference);
    expect(members.has(ids[3]!)).toBe(false);
    expect(members.has(ids[6]!)).toBe(true);
    expect(members.has(sha('never sent'))).toBe(false);
  });

  it('keeps other identifiers as they came, and empties', () => {
    const members = new MemberSet();
    const digest = sha('a');
    expect(members.add('plain@example.com')).toBe(true);
    expect(members.add('plain@example.com')).toBe(false);
    expect(members.add(digest)).toBe(true);
    // An upper-case digest is not the hex the job sends: kept as a string, apart from its lower-case twin.
    expect(members.add(digest.toUpperCase())).toBe(true);
    expect(new Set(members)).toEqual(new Set(['plain@example.com', digest, digest.toUpperCase()]));
    expect(members.delete('plain@example.com')).toBe(true);
    expect(members.size).toBe(2);
    members.clear();
    expect(members.size).toBe(0);
    expect([...members]).toEqual([]);
    expect(members.add(digest)).toBe(true);
  });
});

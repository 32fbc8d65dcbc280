import { isSha256Hex } from './identifiers.js';

/** Slots a new table starts with (a power of two). */
const FIRST_CAPACITY = 1024;
/** The table grows (doubles) when its full and deleted slots pass this share. */
const MAX_LOAD = 0.6;
/** Each SHA-256 digest is eight 32-bit words. */
const WORDS = 8;

const EMPTY = 0;
const FULL = 1;
const DELETED = 2;

/** The value of hex digit code `c` (0-9, a-f), for strings isSha256Hex accepted. */
const digit = (c: number) => (c <= 57 ? c - 48 : c - 87);

/** A digest's probe start: all eight words mixed (murmur3's finalizer), so that made-up identifiers spread too. */
function hashOf(words: Uint32Array, base: number): number {
  let h = 0;
  for (let w = 0; w < WORDS; w++) h ^= words[base + w]!;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The members of one contact list. SHA-256 hex identifiers, nearly all of
 * them, are kept as their 32 bytes in an open-addressing table of linear
 * probes, off the JavaScript heap; any other identifier (a plain email, a
 * mobile id) goes in a Set. Ten million members take 0.5 GB instead of
 * 2 GB of strings that every major collection would walk, so the sandbox
 * takes less of the cores it shares with the job in the benchmarks.
 */
export class MemberSet implements Iterable<string> {
  private capacity = FIRST_CAPACITY;
  private words = new Uint32Array(FIRST_CAPACITY * WORDS);
  private slots = new Uint8Array(FIRST_CAPACITY);
  private hexCount = 0;
  private deleted = 0;
  private readonly others = new Set<string>();
  /** The digest being looked up, decoded once per call. */
  private readonly key = new Uint32Array(WORDS);

  get size(): number {
    return this.hexCount + this.others.size;
  }

  /** Adds `id`; true if it was not a member. `hex`: isSha256Hex(id), when the caller knows it. */
  add(id: string, hex = isSha256Hex(id)): boolean {
    if (!hex) {
      const before = this.others.size;
      this.others.add(id);
      return this.others.size !== before;
    }
    this.decode(id);
    let free = -1;
    for (let slot = hashOf(this.key, 0) & (this.capacity - 1); ; slot = (slot + 1) & (this.capacity - 1)) {
      const state = this.slots[slot]!;
      if (state === EMPTY) {
        this.store(free === -1 ? slot : free);
        return true;
      }
      if (state === DELETED) {
        if (free === -1) free = slot;
      } else if (this.matches(slot)) {
        return false;
      }
    }
  }

  /** Removes `id`; true if it was a member. */
  delete(id: string, hex = isSha256Hex(id)): boolean {
    if (!hex) return this.others.delete(id);
    const slot = this.find(id);
    if (slot === -1) return false;
    this.slots[slot] = DELETED;
    this.hexCount--;
    this.deleted++;
    return true;
  }

  has(id: string): boolean {
    return isSha256Hex(id) ? this.find(id) !== -1 : this.others.has(id);
  }

  clear(): void {
    this.capacity = FIRST_CAPACITY;
    this.words = new Uint32Array(FIRST_CAPACITY * WORDS);
    this.slots = new Uint8Array(FIRST_CAPACITY);
    this.hexCount = 0;
    this.deleted = 0;
    this.others.clear();
  }

  *[Symbol.iterator](): Iterator<string> {
    for (let slot = 0; slot < this.capacity; slot++) {
      if (this.slots[slot] !== FULL) continue;
      let hex = '';
      for (let w = 0; w < WORDS; w++) hex += this.words[slot * WORDS + w]!.toString(16).padStart(8, '0');
      yield hex;
    }
    yield* this.others;
  }

  /** The slot holding `id` (SHA-256 hex), or -1. */
  private find(id: string): number {
    this.decode(id);
    for (let slot = hashOf(this.key, 0) & (this.capacity - 1); ; slot = (slot + 1) & (this.capacity - 1)) {
      const state = this.slots[slot]!;
      if (state === EMPTY) return -1;
      if (state === FULL && this.matches(slot)) return slot;
    }
  }

  private decode(hex: string): void {
    for (let w = 0; w < WORDS; w++) {
      let v = 0;
      for (let i = w * 8; i < w * 8 + 8; i++) v = (v << 4) | digit(hex.charCodeAt(i));
      this.key[w] = v >>> 0;
    }
  }

  private matches(slot: number): boolean {
    const base = slot * WORDS;
    for (let w = 0; w < WORDS; w++) if (this.words[base + w] !== this.key[w]) return false;
    return true;
  }

  /** Writes the decoded key into `slot`, growing the table first when it is full enough. */
  private store(slot: number): void {
    if (this.slots[slot] === DELETED) this.deleted--;
    this.words.set(this.key, slot * WORDS);
    this.slots[slot] = FULL;
    this.hexCount++;
    if (this.hexCount + this.deleted > this.capacity * MAX_LOAD) this.rehash(this.hexCount * 2 > this.capacity * MAX_LOAD ? this.capacity * 2 : this.capacity);
  }

  /** Moves every member into a table of `capacity` slots, leaving the deleted ones behind. */
  private rehash(capacity: number): void {
    const { words, slots, capacity: old } = this;
    this.capacity = capacity;
    this.words = new Uint32Array(capacity * WORDS);
    this.slots = new Uint8Array(capacity);
    this.deleted = 0;
    for (let from = 0; from < old; from++) {
      if (slots[from] !== FULL) continue;
      let to = hashOf(words, from * WORDS) & (capacity - 1);
      while (this.slots[to] !== EMPTY) to = (to + 1) & (capacity - 1);
      this.words.set(words.subarray(from * WORDS, from * WORDS + WORDS), to * WORDS);
      this.slots[to] = FULL;
    }
  }
}

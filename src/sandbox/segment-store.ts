/**
 * The audience segments (contact lists) Criteo holds, with their members and a running
 * count of matched members, so statistics are O(1).
 */
import { isInt32String } from './contract.js';
import { isSha256Hex, matchScore } from './identifiers.js';
import { MemberSet } from './member-set.js';
import type { SandboxSegment } from './types.js';

export interface SegmentState {
  id: string;
  advertiserId: string;
  name: string;
  description: string | null;
  members: MemberSet;
  /** Members whose match score is under matchShare; kept up to date so statistics are O(1). */
  matched: number;
  createdAt: string;
  updatedAt: string;
}

/** Segment ids are positive int32 numbers written as strings (the contract says so). */
export function isSegmentId(id: string): boolean {
  return isInt32String(id) && Number(id) > 0;
}

export class SegmentStore {
  private readonly byId = new Map<string, SegmentState>();

  /** `matchShare`: share of identifiers counted as matched (by matchScore). */
  constructor(private readonly matchShare: number) {}

  get(id: string): SegmentState | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  values(): IterableIterator<SegmentState> {
    return this.byId.values();
  }

  /** Adds a segment, or updates its advertiser / name if it exists (members are kept, then extended). */
  add(s: SandboxSegment): SegmentState {
    if (!isSegmentId(s.id)) {
      throw new Error(`sandbox: segment id must be a positive int32 as a string (the contract says so), got ${JSON.stringify(s.id)}`);
    }
    if (typeof s.advertiserId !== 'string' || s.advertiserId === '') throw new Error(`sandbox: segment ${s.id} needs an advertiserId`);
    const now = new Date().toISOString();
    let segment = this.byId.get(s.id);
    if (segment) {
      segment.advertiserId = s.advertiserId;
      if (s.name !== undefined) segment.name = s.name;
      segment.updatedAt = now;
    } else {
      segment = {
        id: s.id,
        advertiserId: s.advertiserId,
        name: s.name ?? `Sandbox list ${s.id}`,
        description: null,
        members: new MemberSet(),
        matched: 0,
        createdAt: now,
        updatedAt: now,
      };
      this.byId.set(s.id, segment);
    }
    for (const id of s.members ?? []) this.addMember(segment, id);
    return segment;
  }

  addMember(segment: SegmentState, id: string, hex = isSha256Hex(id)): void {
    if (segment.members.add(id, hex) && matchScore(id, hex) < this.matchShare) segment.matched++;
  }

  removeMember(segment: SegmentState, id: string, hex = isSha256Hex(id)): void {
    if (segment.members.delete(id, hex) && matchScore(id, hex) < this.matchShare) segment.matched--;
  }

  /** The id for a created segment: one past the highest held, and at least 100001. */
  nextId(): string {
    let max = 100_000;
    for (const id of this.byId.keys()) max = Math.max(max, Number(id));
    return String(max + 1);
  }
}

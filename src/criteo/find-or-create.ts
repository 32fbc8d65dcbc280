import { NameTakenError } from '../core/errors.js';
import type { CriteoClient } from './client.js';
import type { NewContactList, SegmentInfo } from './segments.js';

/**
 * A contact list found by its advertiser and name, or created when there is
 * none: idempotent, and safe when two creators race. Criteo's search has no
 * name filter, so a name is found by reading the advertiser's contact lists;
 * a create that meets `name-must-be-unique` searches again and takes the list
 * the other creator made.
 */

export type ListByName = { kind: 'found' | 'created'; list: SegmentInfo } | { kind: 'ambiguous'; ids: string[] } | { kind: 'absent' };

/** The advertiser's contact lists called `name`. */
export async function listsNamed(client: CriteoClient, advertiserId: string, name: string): Promise<SegmentInfo[]> {
  const lists = await client.searchSegments({ advertiserIds: [advertiserId], types: ['ContactList'] });
  return matching(lists, advertiserId, name);
}

/** Among segments already searched, the advertiser's contact lists called `name`, by id. */
export function matching(segments: readonly SegmentInfo[], advertiserId: string, name: string): SegmentInfo[] {
  return segments.filter((s) => s.advertiserId === advertiserId && s.name === name).sort((a, b) => Number(a.id) - Number(b.id));
}

/** What a search of the advertiser's lists says of `name`. */
export function byName(found: readonly SegmentInfo[]): ListByName {
  if (found.length > 1) return { kind: 'ambiguous', ids: found.map((s) => s.id) };
  return found[0] ? { kind: 'found', list: found[0] } : { kind: 'absent' };
}

/**
 * Finds the advertiser's contact list called `list.name`, or creates it.
 * `known` is a search already made this run (the advertiser's lists), to save
 * one; without it the advertiser's lists are searched first.
 */
export async function findOrCreateList(client: CriteoClient, list: NewContactList, known?: readonly SegmentInfo[]): Promise<ListByName> {
  const first = byName(known ? matching(known, list.advertiserId, list.name) : await listsNamed(client, list.advertiserId, list.name));
  if (first.kind !== 'absent') return first;
  try {
    return { kind: 'created', list: await client.createContactList(list) };
  } catch (error) {
    if (!(error instanceof NameTakenError)) throw error;
    // Another creator won the race (or an earlier attempt went through unanswered): its list is the one.
    const again = byName(await listsNamed(client, list.advertiserId, list.name));
    if (again.kind === 'absent') throw error;
    return again;
  }
}

/** One line for a name that matches several lists of the advertiser. */
export function ambiguousName(advertiserId: string, name: string, ids: readonly string[]): string {
  return `advertiser ${advertiserId} has ${ids.length} contact lists named ${JSON.stringify(name)} (ids ${ids.join(', ')}): rename all but one in Criteo, or give the campaign audience_segment_id`;
}

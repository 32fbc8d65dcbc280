import type { CriteoClient } from '../criteo/client.js';
import type { ListTarget } from '../source/target-groups.js';

/**
 * A list never takes another advertiser's customers: an app with access to
 * several advertisers (an agency's) could write advertiser 12's customers into
 * advertiser 11's list, and Criteo would accept it. Before a run writes, one
 * search (every page) says which advertiser owns each list; a list whose
 * campaigns name another advertiser, or several, is refused.
 */

/** Why a list must not be written to, in preflight's words, or null. `owner` is the advertiser Criteo reports (undefined: not found). */
export function advertiserMismatch(target: ListTarget, owner: string | null | undefined): string | null {
  if (owner && !target.advertiserIds.includes(owner))
    return `belongs to advertiser ${owner}, but its campaigns name advertiser ${target.advertiserIds.join(', ')}`;
  if (target.advertiserIds.length > 1) return `campaigns feeding it name several advertisers (${target.advertiserIds.join(', ')})`;
  return null;
}

/**
 * The advertiser of each list Criteo's search returns (a list it does not
 * return is absent: its writes meet Criteo's own answer). A search that fails
 * throws: no list is written to unchecked.
 */
export async function findListOwners(client: CriteoClient, targets: readonly ListTarget[]): Promise<Map<string, string | null>> {
  // Criteo's ids are int32: any other id is refused by the list's own calls, and would only make the search invalid.
  const ids = targets.map((t) => t.segmentId).filter((id) => /^[1-9]\d{0,9}$/.test(id) && Number(id) <= 2 ** 31 - 1);
  if (ids.length === 0) return new Map();
  const found = await client.findSegments(ids);
  return new Map(found.map((s) => [s.id, s.advertiserId]));
}

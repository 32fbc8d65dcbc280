import { ListRejectedError, NameTakenError, type CriteoError } from '../core/errors.js';
import { parseProblem, safeJson } from './problems.js';

/**
 * Audience segments as resources: the bodies of Criteo's segment search and
 * create, and the reading of their answers (shared/criteo/README.md, "Finding
 * a list by name"). Search filters only by advertiser, segment id and type, at
 * most 100 a page; a name is found by reading every page and comparing.
 */

/** Criteo's page size limit for segment search. */
export const SEARCH_PAGE_SIZE = 100;

/** The segment kinds this job searches for; the only kind it creates is a contact list. */
export type SegmentType = 'ContactList';

export interface SegmentInfo {
  id: string;
  advertiserId: string | null;
  name: string | null;
  type: string | null;
  description: string | null;
  /** ISO instants as Criteo gives them. */
  createdAt: string | null;
  updatedAt: string | null;
}

/** Search filters; each one given narrows the search (Criteo ANDs them). */
export interface SegmentFilters {
  advertiserIds?: readonly string[];
  segmentIds?: readonly string[];
  types?: readonly SegmentType[];
}

export interface NewContactList {
  advertiserId: string;
  name: string;
  description?: string;
}

/** A segment resource as search and create answer it. */
interface SegmentResource {
  id?: string | null;
  attributes?: {
    advertiserId?: string | null;
    name?: string | null;
    type?: string | null;
    description?: string | null;
    createdAt?: string | null;
    updatedAt?: string | null;
  } | null;
}

/** One page of a search answer. */
export interface SearchPage {
  data?: SegmentResource[] | null;
  meta?: { totalItems?: number | null } | null;
}

/** A create answer: the created segments, and an error for each one that was not. */
export interface CreateAnswer {
  data?: SegmentResource[] | null;
}

/** A filter given as an empty list matches nothing: no call is needed to know it. */
export function matchesNothing(filters: SegmentFilters): boolean {
  return [filters.advertiserIds, filters.segmentIds, filters.types].some((f) => f !== undefined && f.length === 0);
}

export function searchBody(filters: SegmentFilters): string {
  const attributes: Record<string, readonly string[]> = {};
  if (filters.advertiserIds) attributes['advertiserIds'] = filters.advertiserIds;
  if (filters.segmentIds) attributes['audienceSegmentIds'] = filters.segmentIds;
  if (filters.types) attributes['audienceSegmentTypes'] = filters.types;
  return JSON.stringify({ data: { type: 'AudienceSegment', attributes } });
}

/** The bulk create body with one contact list in it. */
export function createBody(list: NewContactList): string {
  const attributes = {
    advertiserId: list.advertiserId,
    name: list.name,
    ...(list.description === undefined ? {} : { description: list.description }),
    contactList: {},
  };
  return JSON.stringify({ data: [{ type: 'AudienceSegment', attributes }] });
}

export function segmentInfo(resource: SegmentResource): SegmentInfo | undefined {
  if (!resource.id) return undefined;
  const a = resource.attributes ?? {};
  return {
    id: resource.id,
    advertiserId: a.advertiserId ?? null,
    name: a.name ?? null,
    type: a.type ?? null,
    description: a.description ?? null,
    createdAt: a.createdAt ?? null,
    updatedAt: a.updatedAt ?? null,
  };
}

/**
 * How a create answer refuses `list`, if it does: Criteo answers a bulk create
 * 200 with an error per segment it did not create, or a 4xx for the request.
 * `name-must-be-unique` is a NameTakenError (search again: another creator won
 * the race); a 200 that created nothing is a ListRejectedError; any other 4xx
 * is left to the client's usual reading (undefined).
 */
export function createRefusal(list: NewContactList, status: number, text: string): CriteoError | undefined {
  const created = status >= 200 && status < 300 && (safeJson<CreateAnswer>(text)?.data ?? []).some((s) => s.id);
  if (created) return undefined;
  const problem = parseProblem(status, text);
  const trace = `traceId ${problem.traceId ?? 'none'}`;
  if (problem.code === 'name-must-be-unique') {
    const message = `Criteo already has a segment named ${JSON.stringify(list.name)} under advertiser ${list.advertiserId} (name-must-be-unique); ${trace}`;
    return new NameTakenError(message, problem, list.advertiserId, list.name);
  }
  if (status >= 300) return undefined;
  const why = problem.code ? `${problem.code}${problem.title ? ` ${problem.title}` : ''}` : 'no segment and no error in the answer';
  return new ListRejectedError(
    `Criteo did not create the contact list ${JSON.stringify(list.name)} under advertiser ${list.advertiserId}: ${why}; ${trace}`,
    problem,
  );
}

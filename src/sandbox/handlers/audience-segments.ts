/**
 * Audience segments as resources: search them, and create contact lists (the only
 * kind of segment the sandbox supports).
 */
import { mayUse } from '../auth.js';
import type { Reply } from '../http.js';
import { accessDenied, ApiProblem } from '../problems.js';
import type { SegmentState } from '../segment-store.js';
import type { SandboxState } from '../state.js';
import type { SandboxClient } from '../types.js';

interface SearchFilters {
  advertiserIds?: string[];
  audienceSegmentIds?: string[];
  audienceSegmentTypes?: string[];
}

type CreateItem = { attributes?: { advertiserId: string; name: string; description?: string; contactList?: object } & Record<string, unknown> };

/** Segment kinds other than contact lists, refused by create. */
const OTHER_KINDS = ['inMarket', 'location', 'lookalike', 'prospecting', 'retargeting', 'behavioral'];

function segmentResource(segment: SegmentState): Record<string, unknown> {
  return {
    id: segment.id,
    type: 'AudienceSegment',
    attributes: {
      advertiserId: segment.advertiserId,
      name: segment.name,
      description: segment.description,
      type: 'ContactList',
      createdAt: segment.createdAt,
      updatedAt: segment.updatedAt,
      contactList: { isReadOnly: false },
    },
  };
}

export function search(state: SandboxState, client: SandboxClient, body: unknown, url: URL): Reply {
  const filters = (body as { data?: { attributes?: SearchFilters } } | undefined)?.data?.attributes ?? {};
  const limit = Number(url.searchParams.get('limit') ?? 50);
  const offset = Number(url.searchParams.get('offset') ?? 0);
  if (offset < 0) {
    throw new ApiProblem(400, 'validation', 'invalid-request', 'The request does not match the API contract', '/query/offset must be >= 0', {
      parameter: 'offset',
    });
  }
  const denied = filters.advertiserIds?.filter((a) => !mayUse(client, a)) ?? [];
  if (denied.length > 0) throw accessDenied(`This application has no consent for advertiser(s) ${denied.join(', ')}`);
  const matches = searchMatches(state, client, filters);
  return {
    status: 200,
    body: {
      data: matches.slice(offset, offset + limit).map((s) => segmentResource(s)),
      errors: [],
      warnings: [],
      meta: { limit, offset, totalItems: matches.length },
    },
  };
}

/** The segments the app may see that pass the filters, by id; faulted-away segments are hidden. */
function searchMatches(state: SandboxState, client: SandboxClient, filters: SearchFilters): SegmentState[] {
  const ids = filters.audienceSegmentIds ? new Set(filters.audienceSegmentIds) : undefined;
  const advertisers = filters.advertiserIds ? new Set(filters.advertiserIds) : undefined;
  const typeOk = !filters.audienceSegmentTypes || filters.audienceSegmentTypes.includes('ContactList');
  if (!typeOk) return [];
  return [...state.segments.values()]
    .filter(
      (s) =>
        mayUse(client, s.advertiserId) &&
        !state.injector?.isUnknown(s.id) &&
        !state.injector?.isForbidden(s.id) &&
        (!ids || ids.has(s.id)) &&
        (!advertisers || advertisers.has(s.advertiserId)),
    )
    .sort((a, b) => Number(a.id) - Number(b.id));
}

export function create(state: SandboxState, client: SandboxClient, body: unknown): Reply {
  const items = (body as { data?: CreateItem[] } | undefined)?.data ?? [];
  if (items.length === 0) {
    throw new ApiProblem(400, 'validation', 'invalid-request', 'Nothing to create', 'data must hold at least one segment', { pointer: '/data' });
  }
  items.forEach((item, index) => checkCreateItem(state, client, items, index));
  const created = items.map((item) => {
    const a = item.attributes as { advertiserId: string; name: string; description?: string };
    const segment = state.segments.add({ id: state.segments.nextId(), advertiserId: a.advertiserId, name: a.name });
    segment.description = a.description ?? null;
    return segmentResource(segment);
  });
  return { status: 200, body: { data: created, errors: [], warnings: [] } };
}

/** Throws the problem Criteo answers for item `index`: not a contact list, no consent, or a name already used (name-must-be-unique). */
function checkCreateItem(state: SandboxState, client: SandboxClient, items: readonly CreateItem[], index: number): void {
  const a = (items[index] as CreateItem).attributes;
  const pointer = `/data/${index}/attributes`;
  if (!a) throw new ApiProblem(400, 'validation', 'invalid-request', 'Missing attributes', `${pointer} is required`, { pointer });
  if (!a.contactList || OTHER_KINDS.some((k) => a[k] !== undefined)) {
    throw new ApiProblem(
      400,
      'validation',
      'unsupported-segment-type',
      'Only contact lists are supported by the sandbox',
      `${pointer} must have contactList and nothing else`,
      { pointer },
    );
  }
  if (!mayUse(client, a.advertiserId)) throw accessDenied(`This application has no consent for advertiser ${a.advertiserId}`);
  const duplicate = [...state.segments.values()].some((s) => s.advertiserId === a.advertiserId && s.name === a.name);
  const duplicateInRequest = items.findIndex((other) => other.attributes?.advertiserId === a.advertiserId && other.attributes?.name === a.name) !== index;
  if (duplicate || duplicateInRequest) {
    throw new ApiProblem(
      400,
      'validation',
      'name-must-be-unique',
      'Segment name already used',
      `Advertiser ${a.advertiserId} already has a segment named ${JSON.stringify(a.name)}`,
      { pointer: `${pointer}/name` },
    );
  }
}

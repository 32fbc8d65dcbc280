/**
 * The contact list of one audience segment: amend it (PATCH, add or remove), wipe it
 * (DELETE), read its statistics. The segment is already found and access-checked.
 */
import type { Reply } from '../http.js';
import { isSha256Hex, nonHexValidator, type IdentifierType } from '../identifiers.js';
import { ApiProblem } from '../problems.js';
import type { SegmentState } from '../segment-store.js';
import type { SandboxState } from '../state.js';
import type { SandboxCall } from '../types.js';

const MAX_IDENTIFIERS_PER_PATCH = 50_000;

/** The attributes of a ContactlistAmendmentRequest; contract validation guarantees the shape. */
interface Amendment {
  operation: 'add' | 'remove';
  identifierType?: IdentifierType;
  identifiers: string[];
  gumCallerId?: number;
}

interface AmendmentOutcome {
  valid: number;
  invalidCount: number;
  /** The first few invalid identifiers. */
  invalid: string[];
}

export function patch(state: SandboxState, segment: SegmentState, body: unknown, call: SandboxCall): Reply {
  const attributes = (body as { data: { attributes: Amendment } }).data.attributes;
  const { operation, identifiers } = attributes;
  const identifierType = attributes.identifierType ?? 'email';
  call.op = operation;
  state.identifiers.count(identifiers.length);
  refuseUnacceptable(state, attributes, identifierType);
  const outcome = amend(state, segment, operation === 'add', identifiers, identifierType);
  segment.updatedAt = new Date().toISOString();
  return {
    status: 200,
    body: {
      data: {
        type: 'ContactlistAmendment',
        attributes: {
          operation,
          contactListId: Number(segment.id),
          requestDate: new Date().toISOString(),
          identifierType,
          nbValidIdentifiers: outcome.valid,
          nbInvalidIdentifiers: outcome.invalidCount,
          sampleInvalidIdentifiers: outcome.invalid,
        },
      },
      errors: [],
      warnings: [],
    },
  };
}

/** Throws the 400 for a request Criteo refuses as a whole; its identifiers are still audited. */
function refuseUnacceptable(state: SandboxState, attributes: Amendment, identifierType: IdentifierType): void {
  const { identifiers } = attributes;
  if (identifiers.length > MAX_IDENTIFIERS_PER_PATCH) {
    for (const id of identifiers) state.identifiers.note(id, isSha256Hex(id));
    throw new ApiProblem(
      400,
      'validation',
      'too-many-identifiers',
      'Too many identifiers',
      `At most ${MAX_IDENTIFIERS_PER_PATCH} identifiers per request; got ${identifiers.length}`,
      { pointer: '/data/attributes/identifiers' },
    );
  }
  if (identifierType === 'gum' && attributes.gumCallerId === undefined) {
    for (const id of identifiers) state.identifiers.note(id, isSha256Hex(id));
    throw new ApiProblem(400, 'validation', 'gum-caller-id-required', 'gumCallerId is required', 'identifierType gum needs gumCallerId', {
      pointer: '/data/attributes/gumCallerId',
    });
  }
}

/** Adds or removes every well-formed identifier; invalid ones are counted and sampled. */
function amend(state: SandboxState, segment: SegmentState, adding: boolean, identifiers: readonly string[], identifierType: IdentifierType): AmendmentOutcome {
  const isValidNonHex = nonHexValidator(identifierType);
  const { segments } = state;
  let valid = 0;
  let invalidCount = 0;
  const invalid: string[] = [];
  // One pass per identifier: this loop is the sandbox's hot path in benchmarks.
  for (const id of identifiers) {
    const hex = isSha256Hex(id);
    state.identifiers.note(id, hex);
    if (!hex && !isValidNonHex(id)) {
      invalidCount++;
      if (invalid.length < 5) invalid.push(id);
      continue;
    }
    valid++;
    if (adding) segments.addMember(segment, id, hex);
    else segments.removeMember(segment, id, hex);
  }
  return { valid, invalidCount, invalid };
}

export function deleteAll(segment: SegmentState): Reply {
  segment.members.clear();
  segment.matched = 0;
  segment.updatedAt = new Date().toISOString();
  return { status: 200, body: { data: { id: segment.id, type: 'AudienceContactlist' }, errors: [], warnings: [] } };
}

export function statistics(segment: SegmentState): Reply {
  const size = segment.members.size;
  return {
    status: 200,
    body: {
      data: {
        id: segment.id,
        type: 'ContactlistStatistics',
        attributes: {
          numberOfIdentifiers: size,
          numberOfMatches: segment.matched,
          // A percentage (0–100); the README leaves the real scale unconfirmed.
          matchRate: size === 0 ? 0 : (segment.matched / size) * 100,
        },
      },
      errors: [],
      warnings: [],
    },
  };
}

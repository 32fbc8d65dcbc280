import type { BufferedBody } from './transport.js';

/**
 * The contact list of one segment: the PATCH body around identifiers already
 * encoded, and what the amendment and statistics answers hold.
 */

/** Identifiers already encoded as the bytes of a JSON array of strings, and how many it holds. */
export interface EncodedIdentifiers {
  json: Buffer;
  size: number;
}

/** The PATCH body around encoded identifiers. */
export function amendmentBody(operation: 'add' | 'remove', encoded: EncodedIdentifiers): BufferedBody {
  const head = Buffer.from(
    `{"data":{"type":"ContactlistAmendment","attributes":{"operation":${JSON.stringify(operation)},"identifierType":"email","identifiers":`,
  );
  const tail = Buffer.from('}}}');
  return { length: head.length + encoded.json.length + tail.length, chunks: [head, encoded.json, tail] };
}

export function isEncoded(x: readonly string[] | EncodedIdentifiers): x is EncodedIdentifiers {
  return !Array.isArray(x);
}

export interface AmendmentResult {
  nbValidIdentifiers: number | null;
  nbInvalidIdentifiers: number | null;
  sampleInvalidIdentifiers: string[];
}

export interface ListStatistics {
  numberOfIdentifiers: number | null;
  numberOfMatches: number | null;
  matchRate: number | null;
}

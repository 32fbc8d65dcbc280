import type { BufferedBody } from './transport.js';

/**
 * The contact list of one segment: the PATCH body around identifiers already
 * encoded, and what the amendment and statistics answers hold.
 */

/** Identifiers already encoded as a JSON array of strings, in buffers sent one after another, and how many it holds. */
export interface EncodedIdentifiers {
  chunks: readonly Buffer[];
  /** Bytes in all the chunks. */
  length: number;
  size: number;
}

/** Identifiers as one chunk of a JSON array. */
export function encodeIdentifiers(identifiers: readonly string[]): EncodedIdentifiers {
  const json = Buffer.from(JSON.stringify(identifiers));
  return { chunks: [json], length: json.length, size: identifiers.length };
}

/** The PATCH body around encoded identifiers. */
export function amendmentBody(operation: 'add' | 'remove', encoded: EncodedIdentifiers): BufferedBody {
  const head = Buffer.from(
    `{"data":{"type":"ContactlistAmendment","attributes":{"operation":${JSON.stringify(operation)},"identifierType":"email","identifiers":`,
  );
  const tail = Buffer.from('}}}');
  return { length: head.length + encoded.length + tail.length, chunks: [head, ...encoded.chunks, tail] };
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

/**
 * HTTP plumbing shared by every route: reading bodies, writing JSON, and reading
 * the credentials out of the Authorization header.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An answer before it is written: status, JSON body, extra headers. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** Reads the whole body; past `limit` it keeps draining (so keep-alive survives) and returns null. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  if (size > limit) return null;
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

export function sendJson(res: ServerResponse, reply: Reply): void {
  if (res.destroyed || res.writableEnded) return;
  const text = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...reply.headers,
  });
  res.end(text);
}

/** Streams a large sorted array as JSON without building one giant string (10M ids ≈ 670 MB). */
export async function streamJsonArray(res: ServerResponse, items: readonly string[]): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
  const CHUNK = 10_000;
  res.write('[');
  for (let i = 0; i < items.length; i += CHUNK) {
    const part = items
      .slice(i, i + CHUNK)
      .map((s) => JSON.stringify(s))
      .join(',');
    const ok = res.write(i === 0 ? part : `,${part}`);
    if (!ok) await new Promise<void>((done) => res.once('drain', done));
    if (res.destroyed) return;
  }
  res.end(']');
}

/** decodeURIComponent that leaves malformed escapes as they are (the contract check then rejects them). */
export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

export function basicCredentials(req: IncomingMessage): { id: string; secret: string } | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    // RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
    return { id: decodeURIComponent(decoded.slice(0, colon)), secret: decodeURIComponent(decoded.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}

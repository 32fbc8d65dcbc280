import { createServer, createConnection, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import type { Db } from '../src/db/connection.js';

/**
 * The leak check any test can run over what it captured: process output,
 * error messages, reports, the bytes that went to Criteo, the job's own
 * tables. It looks for every raw email of the test data (case-insensitively,
 * trimmed), every secret (client secret, database password, each access
 * token the sandbox issued) and, in text meant for people (logs, reports),
 * any whole 64-hex identifier. A finding names the source and the kind of
 * needle and shows a masked excerpt: the check itself never prints a secret.
 *
 *   const scan = new LeakScanner({ emails, secrets: [{ name: 'client secret', value }] });
 *   scan.text('run stderr', stderr, { identifiers: true });
 *   await scan.jobTables(db);
 *   scan.wire(tap);
 *   expect(scan.leaks).toEqual([]);
 */

export interface Secret {
  name: string;
  value: string;
}

export interface Leak {
  source: string;
  kind: 'email' | 'secret' | 'identifier';
  /** Which needle: 'email #12', the secret's name, or 'identifier'. */
  what: string;
  /** A masked excerpt around the finding. */
  excerpt: string;
}

export interface LeakNeedles {
  /** Raw email values of the test data (values without '@' or under 6 characters are not emails and are skipped). */
  emails?: Iterable<string | null>;
  secrets?: Secret[];
}

const ASCII_WS = /^[ \t\n\r\f]+|[ \t\n\r\f]+$/g;
const IDENTIFIER = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/i;

export class LeakScanner {
  readonly leaks: Leak[] = [];
  /** Sources scanned and their sizes, for the test's own report. */
  readonly scanned: { source: string; chars: number }[] = [];
  private readonly secrets: Secret[] = [];
  /** Emails indexed by the up-to-4 characters before '@' and the 4 after: maps[k] holds keys with k characters before. */
  private readonly byKey: Map<string, { email: string; at: number; index: number }[]>[] = [0, 1, 2, 3, 4].map(
    () => new Map<string, { email: string; at: number; index: number }[]>(),
  );
  private emailCount = 0;

  constructor(needles: LeakNeedles = {}) {
    for (const e of needles.emails ?? []) this.addEmail(e);
    for (const s of needles.secrets ?? []) this.addSecret(s.name, s.value);
  }

  get emails(): number {
    return this.emailCount;
  }

  addEmail(raw: string | null): void {
    if (raw === null) return;
    const email = raw.replace(ASCII_WS, '').toLowerCase();
    const at = email.indexOf('@');
    if (at < 0 || email.length < 6 || email.length - at < 2) return;
    const k = Math.min(at, 4);
    const key = email.slice(at - k, at + 4);
    const bucket = this.byKey[k]!.get(key) ?? [];
    bucket.push({ email, at, index: this.emailCount++ });
    this.byKey[k]!.set(key, bucket);
  }

  addSecret(name: string, value: string): void {
    if (value.length < 4) throw new Error(`leak scan: secret ${name} is too short to look for`);
    // As written, and as it would appear JSON-escaped or form/URL-encoded.
    const forms = new Set([value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]);
    for (const v of forms) this.secrets.push({ name, value: v });
  }

  /** Scans one text. `identifiers`: text for people (logs, reports), where no whole identifier belongs either. */
  text(source: string, text: string, opts: { identifiers?: boolean; allowSecrets?: boolean } = {}): Leak[] {
    const found: Leak[] = [];
    this.scanned.push({ source, chars: text.length });
    const lower = text.toLowerCase();
    for (let p = lower.indexOf('@'); p >= 0; p = lower.indexOf('@', p + 1)) {
      for (let k = 0; k <= 4; k++) {
        if (p - k < 0) break;
        const bucket = this.byKey[k]!.get(lower.slice(p - k, p + 4));
        if (!bucket) continue;
        for (const n of bucket) {
          if (lower.startsWith(n.email, p - n.at)) {
            found.push({ source, kind: 'email', what: `email #${n.index}`, excerpt: mask(text, p - n.at, n.email.length) });
          }
        }
      }
    }
    if (!opts.allowSecrets) {
      for (const s of this.secrets) {
        const i = text.indexOf(s.value);
        if (i >= 0) found.push({ source, kind: 'secret', what: s.name, excerpt: mask(text, i, s.value.length) });
      }
    }
    if (opts.identifiers) {
      const m = IDENTIFIER.exec(text);
      if (m) found.push({ source, kind: 'identifier', what: 'identifier', excerpt: mask(text, m.index, 64) });
    }
    this.leaks.push(...found);
    return found;
  }

  /** Every text the job's own tables hold (source tables excluded), bytea shown with printable bytes as is. */
  async jobTables(db: Db, sourceTables: readonly string[] = ['customers', 'campaigns', 'campaign_target_groups']): Promise<Leak[]> {
    const found: Leak[] = [];
    for (const { table, text } of await jobTablesText(db, sourceTables)) found.push(...this.text(`table ${table}`, text));
    return found;
  }

  /**
   * What went over the wire to the Criteo side. Raw emails may appear
   * nowhere; the client secret only in a token request's body; an access
   * token only in an Authorization header (or the token answer itself).
   */
  wire(tap: Wiretap): Leak[] {
    const found: Leak[] = [];
    for (const [i, request] of splitRequests(tap.sent()).entries()) {
      const isToken = /^POST \/oauth2\/token /.test(request);
      const withoutAuth = request.replace(/^authorization: *bearer +\S+\r?$/gim, 'authorization: [token]');
      found.push(...this.text(`request ${i + 1} to Criteo${isToken ? ' (token)' : ''}`, isToken ? withoutSecretField(request) : withoutAuth));
    }
    for (const [i, answer] of splitResponses(tap.received()).entries()) {
      const withoutTokenAnswer = answer.replace(/"access_token":"[^"]*"/g, '"access_token":"[token]"');
      found.push(...this.text(`answer ${i + 1} from Criteo`, withoutTokenAnswer));
    }
    return found;
  }
}

/** `len` characters at `at`, masked but for their first and last character, with a little context. */
function mask(text: string, at: number, len: number): string {
  const hit = text.slice(at, at + len);
  const masked = hit.length <= 2 ? '**' : `${hit[0]}${'*'.repeat(Math.min(hit.length - 2, 12))}${hit[hit.length - 1]}`;
  const before = text.slice(Math.max(0, at - 30), at).replace(/\s+/g, ' ');
  const after = text.slice(at + len, at + len + 30).replace(/\s+/g, ' ');
  return `…${before}${masked}${after}…`;
}

function withoutSecretField(request: string): string {
  // The one place the secret belongs: the client_secret field of the token form.
  return request.replace(/client_secret=[^&\s]*/g, 'client_secret=[secret]');
}

// Pipelined messages follow the previous body directly (no line end): split on the start line wherever it is.
const REQUEST_START = /(?=(?:GET|POST|PATCH|DELETE|PUT) \/\S* HTTP\/1\.[01]\r\n)/;
const RESPONSE_START = /(?=HTTP\/1\.[01] \d{3} [^\r\n]*\r\n)/;

function splitRequests(stream: string): string[] {
  return stream.split(REQUEST_START).filter((s) => s.length > 0);
}

function splitResponses(stream: string): string[] {
  return stream.split(RESPONSE_START).filter((s) => s.length > 0);
}

/** Every access token in the token answers that went over the wire. */
export function issuedTokens(tap: Wiretap): string[] {
  return [...tap.received().matchAll(/"access_token":"([^"]+)"/g)].map((m) => m[1]!);
}

// --- The job's tables -------------------------------------------------------------

export async function jobTablesText(db: Db, sourceTables: readonly string[]): Promise<{ table: string; text: string }[]> {
  const { rows: tables } = await sql<{ table_name: string }>`
    SELECT table_name FROM information_schema.tables
    WHERE table_schema = 'audience_sync' AND table_type = 'BASE TABLE' AND NOT (table_name = ANY(${[...sourceTables]}::text[]))
    ORDER BY table_name`.execute(db);
  const out: { table: string; text: string }[] = [];
  for (const { table_name: table } of tables) {
    const { rows: columns } = await sql<{ column_name: string; udt_name: string }>`
      SELECT column_name, udt_name FROM information_schema.columns
      WHERE table_schema = 'audience_sync' AND table_name = ${table} ORDER BY ordinal_position`.execute(db);
    if (columns.length === 0) continue;
    // bytea through encode(…, 'escape'): printable bytes (an email stored as bytes) stay readable.
    const parts = columns.map(({ column_name: c, udt_name: t }) =>
      t === 'bytea'
        ? sql`coalesce(encode(${sql.ref(c)}, 'escape'), '')`
        : t === '_bytea'
          ? sql`coalesce((SELECT string_agg(encode(x, 'escape'), ' ') FROM unnest(${sql.ref(c)}) x), '')`
          : sql`coalesce(${sql.ref(c)}::text, '')`,
    );
    const { rows } = await sql<{ line: string }>`
      SELECT concat_ws(' | ', ${sql.join(parts)}) AS line FROM ${sql.table(`audience_sync.${table}`)}`.execute(db);
    out.push({ table, text: rows.map((r) => r.line).join('\n') });
  }
  return out;
}

// --- Wiretap: what went over the wire ------------------------------------------------

export interface Wiretap {
  url: string;
  /** Everything the client sent (requests), and everything it got back, as latin1 text. */
  sent(): string;
  received(): string;
  close(): Promise<void>;
}

/** A TCP relay in front of `targetPort` that keeps a copy of both directions. */
export async function startWiretap(targetPort: number, targetHost = '127.0.0.1'): Promise<Wiretap> {
  const sockets = new Set<Socket>();
  // Per connection, so interleaved requests on parallel connections stay whole.
  const connections: { up: Buffer[]; down: Buffer[] }[] = [];
  const server = createServer((client) => {
    const conn = { up: [] as Buffer[], down: [] as Buffer[] };
    connections.push(conn);
    const upstream = createConnection({ port: targetPort, host: targetHost });
    sockets.add(client).add(upstream);
    client.on('data', (chunk: Buffer) => {
      conn.up.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      conn.down.push(chunk);
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', () => {});
    upstream.on('close', end).on('error', () => {});
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  const text = (dir: 'up' | 'down') => connections.map((c) => Buffer.concat(c[dir]).toString('utf8')).join('\n');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sent: () => text('up'),
    received: () => text('down'),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

/**
 * A loopback fake of Criteo's Marketing Solutions API (contact lists only), for the
 * job's tests, demo and benchmarks. It follows /work/shared/criteo/README.md and
 * validates every request and response body of the contract paths against the
 * vendored OpenAPI excerpt, so the job is tested against Criteo's contract rather
 * than against our own reading of it.
 *
 * Besides the Criteo routes it serves admin routes under /_sandbox/ so tests
 * running in another process can inspect and steer it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OpenAPIBackend, ValidationContext, type AjvCustomizer, type Document } from 'openapi-backend';
import { z } from 'zod';
import { FaultInjector, parseFaultPlan, type FaultDecision, type FaultOperation, type FaultPlan, type ResolvedFaultPlan } from './faults.js';

export type { FaultPlan, ResolvedFaultPlan } from './faults.js';
export { parseFaultPlan, FaultPlanError } from './faults.js';

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

export const SANDBOX_API_VERSION = '2026-07';
export const MAX_IDENTIFIERS_PER_PATCH = 50_000;
export const DEFAULT_CONTRACT_FILE = 'contract/criteo-marketing-solutions-2026-07.contact-list.openapi.json';

export interface SandboxSegment {
  /** Criteo ids are int32 numbers sent as strings; the contract's path param says so. */
  id: string;
  advertiserId: string;
  name?: string;
  /** Identifiers the list already holds when the sandbox starts (e.g. for removal benchmarks). */
  members?: Iterable<string>;
}

export interface SandboxClient {
  clientId: string;
  clientSecret: string;
  /** Advertisers whose lists this app may touch; '*' for all. */
  advertiserIds: string[] | '*';
}

export type SandboxLogger = (msg: string, fields?: object) => void;

export interface SandboxOptions {
  port?: number;
  host?: string;
  clients?: SandboxClient[];
  segments?: SandboxSegment[];
  tokenTtlSeconds?: number;
  /** Per client, sliding 60 s window; 0, null or Infinity = no limit. Default 250. */
  rateLimitPerMinute?: number | null;
  /** Deterministic share of identifiers counted as matched in statistics. Default 0.6. */
  matchShare?: number;
  faults?: FaultPlan;
  validateResponses?: boolean;
  contractPath?: string;
  /** Largest request body accepted; larger ones get 413. Default 16 MiB. */
  maxBodyBytes?: number;
  /** Keep every distinct identifier received, for `receivedIdentifiers()`. Costs memory; default false. */
  recordReceivedIdentifiers?: boolean;
  log?: SandboxLogger;
}

export type SandboxOperation = 'token' | 'patch' | 'delete' | 'statistics' | 'search' | 'create' | 'unknown';

export interface SandboxCall {
  /** Arrival time, ms since epoch. */
  at: number;
  clientId: string | null;
  operation: SandboxOperation;
  segmentId?: string;
  /** Status answered; 0 while pending or when the call was never answered (hang). */
  status: number;
  identifiers?: number;
  op?: 'add' | 'remove';
  method: string;
  path: string;
  /** Fault injected into this call, if any. */
  fault?: 'fail' | 'hang' | 'apply-then-fail' | 'apply-then-hang' | 'slow';
  traceId?: string;
  durationMs?: number;
}

export interface IdentifierAudit {
  /** Identifier values received in PATCH bodies (with repeats). */
  received: number;
  /** How many of them were not 64 lowercase hex characters (i.e. not SHA-256 as the job must send). */
  notSha256Hex: number;
  /** The first few offending values. */
  samples: string[];
}

export interface ContractViolation {
  at: number;
  operation: SandboxOperation;
  status: number;
  errors: string[];
}

export interface WindowCountOptions {
  /** Count token calls too (default false: Criteo's limit ignores them). */
  includeTokenCalls?: boolean;
  /** Count calls answered 429 (default true: they were still sent). */
  includeRejected?: boolean;
}

export interface Sandbox {
  url: string;
  port: number;
  /** The live member set Criteo holds for that list. Throws for an unknown segment. */
  members(segmentId: string): ReadonlySet<string>;
  /** Adds a segment, or updates its advertiser / name if it exists (members are kept, then extended). */
  addSegment(s: SandboxSegment): void;
  /** Every Criteo request (admin routes excluded), in arrival order. */
  calls: SandboxCall[];
  /** Every distinct identifier received in a PATCH; needs `recordReceivedIdentifiers: true`. */
  receivedIdentifiers(): Iterable<string>;
  /** Cheap check that every identifier received was 64 lowercase hex. */
  identifierAudit(): IdentifierAudit;
  /** Responses that failed contract validation (answered 500). Should stay empty. */
  contractViolations: ContractViolation[];
  maxCallsInAnyWindow(clientId?: string, windowMs?: number, opts?: WindowCountOptions): number;
  setFaults(plan: FaultPlan | undefined): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Contract (OpenAPI) loading and validation
// ---------------------------------------------------------------------------

/** Synthetic operation, added in memory, validating error envelopes with the contract's AudienceError. */
const ENVELOPE_OPERATION = 'SandboxErrorEnvelope';

const OPERATION_IDS: Record<string, SandboxOperation> = {
  UpdateContactListByAudienceSegment: 'patch',
  DeleteContactListByAudienceSegment: 'delete',
  GetAudienceSegmentContactListStatistics: 'statistics',
  SearchAudienceSegments: 'search',
  CreateAudienceSegments: 'create',
};

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function isIsoDateTime(s: string): boolean {
  return ISO_DATE_TIME.test(s) && !Number.isNaN(Date.parse(s));
}

function isInt32String(s: string): boolean {
  if (!/^-?\d{1,10}$/.test(s)) return false;
  const n = Number(s);
  return n >= -(2 ** 31) && n < 2 ** 31;
}

/**
 * openapi-backend only knows OAS numeric formats; the contract also uses `date-time`
 * and puts `format: int32` on a *string* path parameter (segment ids), which ajv would
 * silently skip because openapi-backend's int32 applies to numbers only. For params we
 * re-declare int32 for strings (the only numeric int32 params, limit/offset, keep their
 * min/max and are range-checked by the handler).
 */
const customizeAjv: AjvCustomizer = (ajv, _opts, context) => {
  ajv.addFormat('date-time', { type: 'string', validate: isIsoDateTime });
  if (context === ValidationContext.Params) ajv.addFormat('int32', { type: 'string', validate: isInt32String });
  return ajv;
};

const contractCache = new Map<string, Promise<OpenAPIBackend>>();

/** Finds the contract next to the package root, from src/ (tsx) as well as dist/ (built). */
export function defaultContractPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, DEFAULT_CONTRACT_FILE);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`sandbox: cannot find ${DEFAULT_CONTRACT_FILE} above ${fileURLToPath(import.meta.url)}`);
}

function withEnvelopeOperation(definition: Record<string, unknown>): Record<string, unknown> {
  const paths = (definition['paths'] ?? {}) as Record<string, unknown>;
  const envelopeSchema = {
    type: 'object',
    required: ['errors', 'warnings'],
    properties: {
      errors: { type: 'array', minItems: 1, items: { $ref: '#/components/schemas/AudienceError' } },
      warnings: { type: 'array', items: { $ref: '#/components/schemas/AudienceWarning' } },
    },
  };
  return {
    ...definition,
    paths: {
      ...paths,
      '/__sandbox__/error-envelope': {
        get: {
          operationId: ENVELOPE_OPERATION,
          responses: { '200': { description: 'error envelope', content: { 'application/json': { schema: envelopeSchema } } } },
        },
      },
    },
  };
}

async function buildContract(path: string): Promise<OpenAPIBackend> {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const api = new OpenAPIBackend({
    definition: withEnvelopeOperation(raw) as unknown as Document,
    strict: true,
    validate: true,
    ajvOpts: { strict: false, logger: false },
    customizeAjv,
  });
  await api.init();
  return api;
}

/** Parsing and compiling the contract takes ~0.7 s: do it once per process and path. */
function loadContract(path: string): Promise<OpenAPIBackend> {
  let pending = contractCache.get(path);
  if (!pending) {
    pending = buildContract(path);
    contractCache.set(path, pending);
    pending.catch(() => contractCache.delete(path));
  }
  return pending;
}

interface AjvErrorLike {
  instancePath?: string;
  message?: string;
  params?: unknown;
}

function describeAjvErrors(errors: readonly AjvErrorLike[] | null | undefined): string[] {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'} ${JSON.stringify(e.params ?? {})}`);
}

// ---------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------

const PLAUSIBLE_EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const E164 = /^\+?[1-9]\d{6,14}$/;

/** 1 for the UTF-16 code units 0-9 and a-f; a full 64K table avoids a range branch in the hot loop. */
const HEX_DIGIT = (() => {
  const table = new Uint8Array(65_536);
  for (const ch of '0123456789abcdef') table[ch.charCodeAt(0)] = 1;
  return table;
})();

/**
 * 64 lowercase hex characters, i.e. what the job must send. A table loop: about twice
 * as fast as the equivalent regex, and this runs for every identifier of every PATCH.
 */
export function isSha256Hex(s: string): boolean {
  if (s.length !== 64) return false;
  let ok = 1;
  for (let i = 0; i < 64; i++) ok &= HEX_DIGIT[s.charCodeAt(i)] as number;
  return ok === 1;
}

type IdentifierType = 'email' | 'madid' | 'identityLink' | 'gum' | 'phoneNumber';

/**
 * What Criteo would call well formed, for identifiers that are not SHA-256 hex (those
 * are valid for email and phoneNumber, and for the free-form types). A stand-in:
 * Criteo does not publish its rules.
 */
function nonHexValidator(type: IdentifierType): (s: string) => boolean {
  switch (type) {
    case 'email':
      return (s) => s.length <= 254 && PLAUSIBLE_EMAIL.test(s);
    case 'phoneNumber':
      return (s) => E164.test(s);
    default:
      return (s) => s.length > 0 && s.length <= 256 && !/\s/.test(s);
  }
}

/** FNV-1a, for a deterministic score of identifiers that are not hex digests. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Value of the first 8 hex characters, without slice + parseInt allocations. */
function hexPrefix32(s: string): number {
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const c = s.charCodeAt(i);
    v = v * 16 + (c <= 57 ? c - 48 : c - 87);
  }
  return v;
}

/** A stable number in [0, 1) per identifier: "would Criteo match this user". */
export function matchScore(identifier: string, hex = isSha256Hex(identifier)): number {
  return (hex ? hexPrefix32(identifier) : fnv1a(identifier)) / 2 ** 32;
}

// ---------------------------------------------------------------------------
// Errors and replies
// ---------------------------------------------------------------------------

type ProblemType = 'access-control' | 'authentication' | 'authorization' | 'availability' | 'deprecation' | 'quota' | 'validation';

/** Thrown inside handlers; turned into Criteo's error envelope. */
class ApiProblem extends Error {
  constructor(
    readonly status: number,
    readonly type: ProblemType,
    readonly code: string,
    readonly title: string,
    readonly detail: string = title,
    readonly source?: Record<string, string>,
    readonly headers?: Record<string, string>,
  ) {
    super(`${status} ${code}: ${detail}`);
  }
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

function envelope(problem: ApiProblem, instance: string): { reply: Reply; traceId: string } {
  const traceId = randomUUID();
  const error: Record<string, unknown> = {
    traceId,
    type: problem.type,
    code: problem.code,
    instance,
    title: problem.title,
    detail: problem.detail,
  };
  if (problem.source) error['source'] = problem.source;
  return { traceId, reply: { status: problem.status, body: { errors: [error], warnings: [] }, headers: problem.headers } };
}

/** The envelope an injected fault answers with, by status class. */
function faultProblem(status: number, rateLimitHeaders: Record<string, string>): ApiProblem {
  if (status === 429) {
    return new ApiProblem(429, 'quota', 'rate-limit-exceeded', 'Too many requests', 'Rate limit exceeded (injected)', undefined, rateLimitHeaders);
  }
  if (status >= 500) {
    return new ApiProblem(status, 'availability', 'service-unavailable', 'Service unavailable', `Injected fault: HTTP ${status}`);
  }
  if (status === 401) {
    return new ApiProblem(401, 'authentication', 'authorization-token-expired', 'Authorization token expired', 'Injected fault: token expired');
  }
  if (status === 403) {
    return new ApiProblem(403, 'access-control', 'advertiser-access-denied', 'Access denied', 'Injected fault: access denied');
  }
  if (status === 404) {
    return new ApiProblem(404, 'validation', 'audience-segment-not-found', 'Audience segment not found', 'Injected fault: not found');
  }
  return new ApiProblem(status, 'validation', 'invalid-request', 'Invalid request', `Injected fault: HTTP ${status}`);
}

/** RFC 6749 bodies for the token endpoint; quota and availability errors use the envelope. */
function tokenFaultReply(status: number, rateLimitHeaders: Record<string, string>): Reply | ApiProblem {
  if (status === 401) return { status, body: { error: 'invalid_client', error_description: 'Injected fault: client refused' } };
  if (status >= 400 && status < 500 && status !== 429) {
    return { status, body: { error: 'invalid_request', error_description: `Injected fault: HTTP ${status}` } };
  }
  return faultProblem(status, rateLimitHeaders);
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

/** Reads the whole body; past `limit` it keeps draining (so keep-alive survives) and returns null. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  if (size > limit) return null;
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

function sendJson(res: ServerResponse, reply: Reply): void {
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
async function streamJsonArray(res: ServerResponse, items: readonly string[]): Promise<void> {
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
function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

function basicCredentials(req: IncomingMessage): { id: string; secret: string } | undefined {
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

// ---------------------------------------------------------------------------
// State: segments, tokens, rate limit
// ---------------------------------------------------------------------------

interface SegmentState {
  id: string;
  advertiserId: string;
  name: string;
  description: string | null;
  members: Set<string>;
  /** Members whose match score is under matchShare; kept up to date so statistics are O(1). */
  matched: number;
  createdAt: string;
  updatedAt: string;
}

interface IssuedToken {
  clientId: string;
  expiresAt: number;
}

interface RateVerdict {
  allowed: boolean;
  headers: Record<string, string>;
}

/** Per-client sliding window of accepted call times; rejected calls are not recorded. */
class SlidingWindowLimiter {
  private readonly windows = new Map<string, number[]>();

  constructor(
    readonly limit: number,
    private readonly windowMs = 60_000,
  ) {}

  check(clientId: string, now: number): RateVerdict {
    let times = this.windows.get(clientId);
    if (!times) {
      times = [];
      this.windows.set(clientId, times);
    }
    while (times.length > 0 && (times[0] as number) <= now - this.windowMs) times.shift();
    const allowed = times.length < this.limit;
    if (allowed) times.push(now);
    const oldest = times[0] ?? now;
    const resetSeconds = Math.ceil((oldest + this.windowMs) / 1000);
    return {
      allowed,
      headers: {
        'x-ratelimit-limit': String(this.limit),
        'x-ratelimit-remaining': String(Math.max(0, this.limit - times.length)),
        'x-ratelimit-reset': String(resetSeconds),
      },
    };
  }
}

function assertSegmentId(id: string): void {
  if (!isInt32String(id) || Number(id) <= 0) {
    throw new Error(`sandbox: segment id must be a positive int32 as a string (the contract says so), got ${JSON.stringify(id)}`);
  }
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

const DEFAULT_CLIENT: SandboxClient = { clientId: 'sandbox-client', clientSecret: 'sandbox-secret', advertiserIds: '*' };
const API_PREFIX = /^\/([^/]+)\/marketing-solutions(?:\/.*)?$/;
const TOKEN_PATH = '/oauth2/token';
const ADMIN_PREFIX = '/_sandbox/';

interface ApiContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  body: Buffer | null;
  call: SandboxCall;
  operationId: string | undefined;
  rateHeaders: Record<string, string>;
}

class SandboxServer implements Sandbox {
  url = '';
  port = 0;
  readonly calls: SandboxCall[] = [];
  readonly contractViolations: ContractViolation[] = [];

  private readonly server: Server;
  private readonly segments = new Map<string, SegmentState>();
  private readonly tokens = new Map<string, IssuedToken>();
  private readonly clients: Map<string, SandboxClient>;
  private readonly limiter: SlidingWindowLimiter | undefined;
  private readonly matchShare: number;
  private readonly tokenTtlSeconds: number;
  private readonly validateResponses: boolean;
  private readonly maxBodyBytes: number;
  private readonly log: SandboxLogger;
  private readonly logProvided: boolean;
  private readonly pending = new Set<ServerResponse>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly audit: IdentifierAudit = { received: 0, notSha256Hex: 0, samples: [] };
  private readonly received: Set<string> | undefined;
  private injector: FaultInjector | undefined;
  private closed = false;

  constructor(
    private readonly contract: OpenAPIBackend,
    opts: SandboxOptions,
  ) {
    this.clients = new Map((opts.clients ?? [DEFAULT_CLIENT]).map((c) => [c.clientId, c]));
    const limit = opts.rateLimitPerMinute ?? 250;
    this.limiter = limit > 0 && Number.isFinite(limit) ? new SlidingWindowLimiter(limit) : undefined;
    this.matchShare = opts.matchShare ?? 0.6;
    this.tokenTtlSeconds = opts.tokenTtlSeconds ?? 900;
    this.validateResponses = opts.validateResponses ?? true;
    this.maxBodyBytes = opts.maxBodyBytes ?? 16 * 1024 * 1024;
    this.log = opts.log ?? (() => {});
    this.logProvided = opts.log !== undefined;
    this.received = opts.recordReceivedIdentifiers ? new Set() : undefined;
    for (const s of opts.segments ?? []) this.addSegment(s);
    this.setFaults(opts.faults);
    this.server = createServer((req, res) => {
      this.dispatch(req, res).catch((error: unknown) => this.crash(req, res, error));
    });
    // Node's default (5 s) would cut pooled connections between a job's batches; Node
    // announces this value in the Keep-Alive header, so clients retire sockets before we do.
    this.server.keepAliveTimeout = 30_000;
  }

  async listen(port: number, host: string): Promise<void> {
    await new Promise<void>((done, fail) => {
      this.server.once('error', fail);
      this.server.listen(port, host, () => {
        this.server.off('error', fail);
        done();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.port = address.port;
    const shownHost = host.includes(':') ? `[${host}]` : host;
    this.url = `http://${shownHost}:${this.port}`;
  }

  // --- public API ---------------------------------------------------------

  members(segmentId: string): ReadonlySet<string> {
    const segment = this.segments.get(segmentId);
    if (!segment) throw new Error(`sandbox: unknown segment ${segmentId}`);
    return segment.members;
  }

  addSegment(s: SandboxSegment): void {
    assertSegmentId(s.id);
    if (typeof s.advertiserId !== 'string' || s.advertiserId === '') throw new Error(`sandbox: segment ${s.id} needs an advertiserId`);
    const now = new Date().toISOString();
    let segment = this.segments.get(s.id);
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
        members: new Set(),
        matched: 0,
        createdAt: now,
        updatedAt: now,
      };
      this.segments.set(s.id, segment);
    }
    for (const id of s.members ?? []) this.addMember(segment, id);
  }

  receivedIdentifiers(): Iterable<string> {
    if (!this.received) {
      throw new Error('sandbox: start it with recordReceivedIdentifiers: true to keep every identifier, or use identifierAudit()');
    }
    return this.received;
  }

  identifierAudit(): IdentifierAudit {
    return { ...this.audit, samples: [...this.audit.samples] };
  }

  maxCallsInAnyWindow(clientId?: string, windowMs = 60_000, opts: WindowCountOptions = {}): number {
    const times = this.calls
      .filter(
        (c) =>
          (clientId === undefined || c.clientId === clientId) &&
          (opts.includeTokenCalls === true || c.operation !== 'token') &&
          (opts.includeRejected !== false || c.status !== 429),
      )
      .map((c) => c.at)
      .sort((a, b) => a - b);
    let best = 0;
    let lo = 0;
    for (let hi = 0; hi < times.length; hi++) {
      while ((times[hi] as number) - (times[lo] as number) >= windowMs) lo++;
      best = Math.max(best, hi - lo + 1);
    }
    return best;
  }

  setFaults(plan: FaultPlan | undefined): void {
    // Re-validating TS literals too: a typo in a test's plan should fail loudly, not be ignored.
    this.injector = plan ? new FaultInjector(parseFaultPlan(plan)) : undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const res of this.pending) res.socket?.destroy();
    this.pending.clear();
    await new Promise<void>((done) => {
      this.server.close(() => done());
      this.server.closeAllConnections();
    });
  }

  // --- dispatch -------------------------------------------------------------

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sandbox.invalid');
    if (url.pathname.startsWith(ADMIN_PREFIX)) return this.handleAdmin(req, res, url);
    // Calls are timed from their arrival, not from the end of a 3 MB upload.
    const arrivedAt = Date.now();
    const body = await readBody(req, this.maxBodyBytes);
    if (url.pathname === TOKEN_PATH) return this.handleToken(req, res, body, arrivedAt);
    return this.handleApi(req, res, url, body, arrivedAt);
  }

  /** An exception escaped a handler: a sandbox bug, unless the client simply went away. */
  private crash(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    if (req.destroyed || res.destroyed) return; // aborted upload or closed socket: nobody to answer
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.loud(`SANDBOX INTERNAL ERROR: ${message}`, { error: message });
    const { reply } = envelope(new ApiProblem(500, 'availability', 'internal-error', 'Sandbox internal error', message.slice(0, 500)), '/');
    if (!res.headersSent) sendJson(res, reply);
    else res.destroy();
  }

  /** Sandbox bugs must not go unnoticed: the logger if there is one, else stderr. */
  private loud(message: string, fields: object): void {
    if (this.logProvided) this.log(message, fields);
    else process.stderr.write(`${message}\n`);
  }

  private record(req: IncomingMessage, path: string, operation: SandboxOperation, clientId: string | null, at: number): SandboxCall {
    const call: SandboxCall = { at, clientId, operation, status: 0, method: req.method ?? 'GET', path };
    this.calls.push(call);
    return call;
  }

  /** Writes a reply (after an optional delay) and completes the call record. */
  private respond(res: ServerResponse, call: SandboxCall, reply: Reply, delayMs = 0): void {
    const write = () => {
      call.status = reply.status;
      call.durationMs = Date.now() - call.at;
      sendJson(res, reply);
    };
    if (delayMs <= 0) return write();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      write();
    }, delayMs);
    this.timers.add(timer);
  }

  /** Never answers: the client is left to time out. The socket is freed on close(). */
  private hang(res: ServerResponse): void {
    this.pending.add(res);
    res.once('close', () => this.pending.delete(res));
  }

  private decide(op: FaultOperation): FaultDecision | undefined {
    return this.injector?.decide(op);
  }

  /** Headers of an injected 429: reset a few seconds ahead, as a real limiter would say. */
  private injectedRateHeaders(): Record<string, string> {
    const resetSeconds = this.injector?.plan.rateLimitResetSeconds ?? 2;
    return {
      'x-ratelimit-limit': String(this.limiter?.limit ?? 250),
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + resetSeconds),
    };
  }

  // --- token endpoint -------------------------------------------------------

  private handleToken(req: IncomingMessage, res: ServerResponse, body: Buffer | null, arrivedAt: number): void {
    const form = new URLSearchParams(body?.toString('utf8') ?? '');
    const basic = basicCredentials(req);
    const clientId = basic?.id ?? form.get('client_id') ?? '';
    const secret = basic?.secret ?? form.get('client_secret') ?? '';
    const call = this.record(req, TOKEN_PATH, 'token', this.clients.has(clientId) ? clientId : null, arrivedAt);
    const decision = this.decide('token');
    if (decision?.action === 'hang') {
      call.fault = 'hang';
      return this.hang(res);
    }
    if (decision?.action === 'fail' && decision.status !== undefined) {
      call.fault = 'fail';
      return this.respond(res, call, this.tokenReplyFor(tokenFaultReply(decision.status, this.injectedRateHeaders()), call), decision.delayMs);
    }

    const reply = this.issueToken(req, body, form, clientId, secret);
    if (decision?.action === 'apply-then-hang') {
      call.fault = 'apply-then-hang';
      return this.hang(res);
    }
    if (decision?.action === 'apply-then-fail' && decision.status !== undefined) {
      call.fault = 'apply-then-fail';
      return this.respond(res, call, this.tokenReplyFor(tokenFaultReply(decision.status, this.injectedRateHeaders()), call), decision.delayMs);
    }
    if (decision && decision.delayMs > 0) call.fault = 'slow';
    this.respond(res, call, reply, decision?.delayMs ?? 0);
  }

  private tokenReplyFor(result: Reply | ApiProblem, call: SandboxCall): Reply {
    if (!(result instanceof ApiProblem)) return result;
    return this.checkedEnvelope(result, TOKEN_PATH, 'token', call);
  }

  private issueToken(req: IncomingMessage, body: Buffer | null, form: URLSearchParams, clientId: string, secret: string): Reply {
    const oauthError = (status: number, error: string, description: string): Reply => ({
      status,
      body: { error, error_description: description },
      headers: { 'cache-control': 'no-store' },
    });
    if (req.method !== 'POST') return oauthError(405, 'invalid_request', 'Use POST');
    if (body === null) return oauthError(413, 'invalid_request', 'Body too large');
    const contentType = req.headers['content-type'] ?? '';
    if (!contentType.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
      return oauthError(400, 'invalid_request', 'Content-Type must be application/x-www-form-urlencoded');
    }
    if (form.get('grant_type') !== 'client_credentials') {
      return oauthError(400, 'unsupported_grant_type', 'grant_type must be client_credentials');
    }
    if (this.injector?.plan.refuseCredentials) return oauthError(401, 'invalid_client', 'Client authentication failed');
    const client = this.clients.get(clientId);
    if (!client || client.clientSecret !== secret) return oauthError(401, 'invalid_client', 'Client authentication failed');

    const ttl = this.injector?.plan.tokenTtlSeconds ?? this.tokenTtlSeconds;
    const token = randomBytes(24).toString('base64url');
    this.pruneTokens();
    this.tokens.set(token, { clientId: client.clientId, expiresAt: Date.now() + ttl * 1000 });
    return {
      status: 200,
      body: { access_token: token, token_type: 'Bearer', expires_in: ttl },
      headers: { 'cache-control': 'no-store' },
    };
  }

  /** Long runs with short TTLs mint many tokens; forget ones expired for over an hour. */
  private pruneTokens(): void {
    if (this.tokens.size < 1000) return;
    const cutoff = Date.now() - 3_600_000;
    for (const [token, issued] of this.tokens) if (issued.expiresAt < cutoff) this.tokens.delete(token);
  }

  // --- Criteo API -----------------------------------------------------------

  private handleApi(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer | null, arrivedAt: number): void {
    const method = (req.method ?? 'GET').toUpperCase();
    const operationId = this.contract.matchOperation({ method, path: url.pathname, headers: {} })?.operationId;
    const operation: SandboxOperation = (operationId && OPERATION_IDS[operationId]) || 'unknown';
    const token = bearerToken(req);
    const known = token ? this.tokens.get(token) : undefined;
    const call = this.record(req, url.pathname, operation, known?.clientId ?? null, arrivedAt);
    const segmentId = /\/audience-segments\/([^/]+)\/contact-list/.exec(url.pathname)?.[1];
    if (segmentId !== undefined) call.segmentId = safeDecode(segmentId);
    const ctx: ApiContext = { req, res, url, body, call, operationId, rateHeaders: {} };

    const decision = operation === 'unknown' ? undefined : this.decide(operation);
    if (decision?.action === 'hang') {
      call.fault = 'hang';
      return this.hang(res);
    }
    if (decision?.action === 'fail' && decision.status !== undefined) {
      call.fault = 'fail';
      const problem = faultProblem(decision.status, this.injectedRateHeaders());
      return this.respond(res, call, this.checkedEnvelope(problem, url.pathname, operation, call), decision.delayMs);
    }

    let reply: Reply;
    try {
      reply = this.checkReply(this.serveApi(ctx), operation, operationId);
    } catch (error) {
      if (!(error instanceof ApiProblem)) throw error;
      reply = this.checkedEnvelope(error, url.pathname, operation, ctx.call);
    }
    reply.headers = { ...ctx.rateHeaders, ...reply.headers };

    if (decision?.action === 'apply-then-hang') {
      call.fault = 'apply-then-hang';
      return this.hang(res);
    }
    if (decision?.action === 'apply-then-fail' && decision.status !== undefined) {
      call.fault = 'apply-then-fail';
      const problem = faultProblem(decision.status, this.injectedRateHeaders());
      return this.respond(res, call, this.checkedEnvelope(problem, url.pathname, operation, call), decision.delayMs);
    }
    if (decision && decision.delayMs > 0) call.fault = 'slow';
    this.respond(res, call, reply, decision?.delayMs ?? 0);
  }

  /** Routing, auth, rate limit, validation, then the operation itself. Throws ApiProblem. */
  private serveApi(ctx: ApiContext): Reply {
    const { url, call } = ctx;
    const version = API_PREFIX.exec(url.pathname)?.[1];
    if (version === undefined) throw new ApiProblem(404, 'validation', 'route-not-found', 'Not found', `No route ${url.pathname}`);
    if (version !== SANDBOX_API_VERSION) {
      throw new ApiProblem(
        404,
        'validation',
        'api-version-not-found',
        'Unknown API version',
        `API version ${version} is not available; use ${SANDBOX_API_VERSION}`,
      );
    }
    if (!ctx.operationId) throw this.routeProblem(ctx);

    const client = this.authenticate(ctx.req);
    call.clientId = client.clientId;
    this.enforceRateLimit(ctx, client.clientId);

    const parsedBody = this.parseJsonBody(ctx);
    this.validateRequest(ctx, parsedBody);

    switch (call.operation) {
      case 'patch':
        return this.patch(this.accessibleSegment(client, call.segmentId), parsedBody, call);
      case 'delete':
        return this.deleteAll(this.accessibleSegment(client, call.segmentId));
      case 'statistics':
        return this.statistics(this.accessibleSegment(client, call.segmentId));
      case 'search':
        return this.search(client, parsedBody, url);
      case 'create':
        return this.create(client, parsedBody);
      default:
        throw new ApiProblem(404, 'validation', 'route-not-found', 'Not found', `No route ${url.pathname}`);
    }
  }

  /** 405 when the path exists for another method, else 404. */
  private routeProblem(ctx: ApiContext): ApiProblem {
    const otherMethod = ['GET', 'POST', 'PATCH', 'DELETE', 'PUT'].some(
      (m) => this.contract.matchOperation({ method: m, path: ctx.url.pathname, headers: {} }) !== undefined,
    );
    if (otherMethod) {
      return new ApiProblem(405, 'validation', 'method-not-allowed', 'Method not allowed', `${ctx.req.method} is not allowed on ${ctx.url.pathname}`);
    }
    return new ApiProblem(404, 'validation', 'route-not-found', 'Not found', `No route ${ctx.url.pathname}`);
  }

  private authenticate(req: IncomingMessage): SandboxClient {
    const token = bearerToken(req);
    const issued = token ? this.tokens.get(token) : undefined;
    if (!issued) {
      throw new ApiProblem(401, 'authentication', 'authorization-token-invalid', 'Authorization token is invalid', 'Missing or unknown bearer token');
    }
    if (Date.now() >= issued.expiresAt) {
      throw new ApiProblem(
        401,
        'authentication',
        'authorization-token-expired',
        'Authorization token has expired',
        'The bearer token has expired; request a new one',
      );
    }
    const client = this.clients.get(issued.clientId);
    if (!client) throw new ApiProblem(401, 'authentication', 'authorization-token-invalid', 'Authorization token is invalid', 'Client no longer exists');
    return client;
  }

  private enforceRateLimit(ctx: ApiContext, clientId: string): void {
    if (!this.limiter) return;
    const verdict = this.limiter.check(clientId, Date.now());
    ctx.rateHeaders = verdict.headers;
    if (!verdict.allowed) {
      throw new ApiProblem(
        429,
        'quota',
        'rate-limit-exceeded',
        'Too many requests',
        `More than ${this.limiter.limit} calls in 60 seconds`,
        undefined,
        verdict.headers,
      );
    }
  }

  private parseJsonBody(ctx: ApiContext): unknown {
    if (ctx.body === null) {
      throw new ApiProblem(413, 'validation', 'payload-too-large', 'Payload too large', `Request bodies are limited to ${this.maxBodyBytes} bytes`, undefined, {
        connection: 'close',
      });
    }
    if (ctx.body.length === 0) return undefined;
    // DELETE and statistics take no body; a stray one is ignored as Criteo's gateway would.
    if (ctx.call.operation === 'delete' || ctx.call.operation === 'statistics') return undefined;
    try {
      return JSON.parse(ctx.body.toString('utf8')) as unknown;
    } catch (error) {
      throw new ApiProblem(400, 'validation', 'invalid-json', 'Malformed JSON body', error instanceof Error ? error.message : 'Malformed JSON');
    }
  }

  private validateRequest(ctx: ApiContext, body: unknown): void {
    const identifiers = (body as { data?: { attributes?: { identifiers?: unknown } } } | undefined)?.data?.attributes?.identifiers;
    if (Array.isArray(identifiers)) ctx.call.identifiers = identifiers.length;
    const result = this.contract.validateRequest(
      {
        method: ctx.req.method ?? 'GET',
        path: ctx.url.pathname,
        query: ctx.url.search.replace(/^\?/, ''),
        headers: { 'content-type': 'application/json' },
        body,
      },
      ctx.operationId,
    );
    if (result.valid) return;
    const first = result.errors?.[0];
    const pointer = (first?.instancePath ?? '').replace(/^\/requestBody/, '') || '/';
    const detail = `${pointer} ${first?.message ?? 'is invalid'}`;
    const source: Record<string, string> =
      pointer.startsWith('/path/') || pointer.startsWith('/query/') ? { parameter: pointer.split('/')[2] ?? '' } : { pointer };
    throw new ApiProblem(400, 'validation', 'invalid-request', 'The request does not match the API contract', detail, source);
  }

  private accessibleSegment(client: SandboxClient, segmentId: string | undefined): SegmentState {
    const id = segmentId ?? '';
    const segment = this.segments.get(id);
    if (!segment || this.injector?.isUnknown(id)) {
      throw new ApiProblem(404, 'validation', 'audience-segment-not-found', 'Audience segment not found', `Audience segment ${id} does not exist`);
    }
    if (this.injector?.isForbidden(id) || !this.mayUse(client, segment.advertiserId)) {
      throw new ApiProblem(
        403,
        'access-control',
        'advertiser-access-denied',
        'Access denied',
        `This application has no consent for advertiser ${segment.advertiserId} (audience segment ${id})`,
      );
    }
    return segment;
  }

  private mayUse(client: SandboxClient, advertiserId: string): boolean {
    return client.advertiserIds === '*' || client.advertiserIds.includes(advertiserId);
  }

  // --- operations -----------------------------------------------------------

  private addMember(segment: SegmentState, id: string, hex = isSha256Hex(id)): void {
    const before = segment.members.size;
    segment.members.add(id);
    if (segment.members.size !== before && matchScore(id, hex) < this.matchShare) segment.matched++;
  }

  private removeMember(segment: SegmentState, id: string, hex = isSha256Hex(id)): void {
    if (segment.members.delete(id) && matchScore(id, hex) < this.matchShare) segment.matched--;
  }

  /** Notes one received identifier for identifierAudit() / receivedIdentifiers(). */
  private auditIdentifier(id: string, hex: boolean): void {
    if (!hex) {
      this.audit.notSha256Hex++;
      if (this.audit.samples.length < 10) this.audit.samples.push(id);
    }
    this.received?.add(id);
  }

  private patch(segment: SegmentState, body: unknown, call: SandboxCall): Reply {
    // Shape guaranteed by contract validation of ContactlistAmendmentRequest.
    const attributes = (
      body as { data: { attributes: { operation: 'add' | 'remove'; identifierType?: IdentifierType; identifiers: string[]; gumCallerId?: number } } }
    ).data.attributes;
    const { operation, identifiers } = attributes;
    const identifierType = attributes.identifierType ?? 'email';
    call.op = operation;
    this.audit.received += identifiers.length;
    if (identifiers.length > MAX_IDENTIFIERS_PER_PATCH) {
      for (const id of identifiers) this.auditIdentifier(id, isSha256Hex(id));
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
      for (const id of identifiers) this.auditIdentifier(id, isSha256Hex(id));
      throw new ApiProblem(400, 'validation', 'gum-caller-id-required', 'gumCallerId is required', 'identifierType gum needs gumCallerId', {
        pointer: '/data/attributes/gumCallerId',
      });
    }
    const isValidNonHex = nonHexValidator(identifierType);
    const adding = operation === 'add';
    let valid = 0;
    let invalidCount = 0;
    const invalid: string[] = [];
    // One pass per identifier: this loop is the sandbox's hot path in benchmarks.
    for (const id of identifiers) {
      const hex = isSha256Hex(id);
      this.auditIdentifier(id, hex);
      if (!hex && !isValidNonHex(id)) {
        invalidCount++;
        if (invalid.length < 5) invalid.push(id);
        continue;
      }
      valid++;
      if (adding) this.addMember(segment, id, hex);
      else this.removeMember(segment, id, hex);
    }
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
            nbValidIdentifiers: valid,
            nbInvalidIdentifiers: invalidCount,
            sampleInvalidIdentifiers: invalid,
          },
        },
        errors: [],
        warnings: [],
      },
    };
  }

  private deleteAll(segment: SegmentState): Reply {
    segment.members.clear();
    segment.matched = 0;
    segment.updatedAt = new Date().toISOString();
    return { status: 200, body: { data: { id: segment.id, type: 'AudienceContactlist' }, errors: [], warnings: [] } };
  }

  private statistics(segment: SegmentState): Reply {
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

  private segmentResource(segment: SegmentState): Record<string, unknown> {
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

  private search(client: SandboxClient, body: unknown, url: URL): Reply {
    const filters =
      (body as { data?: { attributes?: { advertiserIds?: string[]; audienceSegmentIds?: string[]; audienceSegmentTypes?: string[] } } } | undefined)?.data
        ?.attributes ?? {};
    const limit = Number(url.searchParams.get('limit') ?? 50);
    const offset = Number(url.searchParams.get('offset') ?? 0);
    if (offset < 0) {
      throw new ApiProblem(400, 'validation', 'invalid-request', 'The request does not match the API contract', '/query/offset must be >= 0', {
        parameter: 'offset',
      });
    }
    const denied = filters.advertiserIds?.filter((a) => !this.mayUse(client, a)) ?? [];
    if (denied.length > 0) {
      throw new ApiProblem(
        403,
        'access-control',
        'advertiser-access-denied',
        'Access denied',
        `This application has no consent for advertiser(s) ${denied.join(', ')}`,
      );
    }
    const ids = filters.audienceSegmentIds ? new Set(filters.audienceSegmentIds) : undefined;
    const advertisers = filters.advertiserIds ? new Set(filters.advertiserIds) : undefined;
    const typeOk = !filters.audienceSegmentTypes || filters.audienceSegmentTypes.includes('ContactList');
    const matches = typeOk
      ? [...this.segments.values()]
          .filter(
            (s) =>
              this.mayUse(client, s.advertiserId) &&
              !this.injector?.isUnknown(s.id) &&
              !this.injector?.isForbidden(s.id) &&
              (!ids || ids.has(s.id)) &&
              (!advertisers || advertisers.has(s.advertiserId)),
          )
          .sort((a, b) => Number(a.id) - Number(b.id))
      : [];
    return {
      status: 200,
      body: {
        data: matches.slice(offset, offset + limit).map((s) => this.segmentResource(s)),
        errors: [],
        warnings: [],
        meta: { limit, offset, totalItems: matches.length },
      },
    };
  }

  private create(client: SandboxClient, body: unknown): Reply {
    type CreateItem = { attributes?: { advertiserId: string; name: string; description?: string; contactList?: object } & Record<string, unknown> };
    const items = (body as { data?: CreateItem[] } | undefined)?.data ?? [];
    if (items.length === 0) {
      throw new ApiProblem(400, 'validation', 'invalid-request', 'Nothing to create', 'data must hold at least one segment', { pointer: '/data' });
    }
    const otherKinds = ['inMarket', 'location', 'lookalike', 'prospecting', 'retargeting', 'behavioral'];
    items.forEach((item, index) => {
      const a = item.attributes;
      const pointer = `/data/${index}/attributes`;
      if (!a) throw new ApiProblem(400, 'validation', 'invalid-request', 'Missing attributes', `${pointer} is required`, { pointer });
      if (!a.contactList || otherKinds.some((k) => a[k] !== undefined)) {
        throw new ApiProblem(
          400,
          'validation',
          'unsupported-segment-type',
          'Only contact lists are supported by the sandbox',
          `${pointer} must have contactList and nothing else`,
          { pointer },
        );
      }
      if (!this.mayUse(client, a.advertiserId)) {
        throw new ApiProblem(
          403,
          'access-control',
          'advertiser-access-denied',
          'Access denied',
          `This application has no consent for advertiser ${a.advertiserId}`,
        );
      }
      const duplicate = [...this.segments.values()].some((s) => s.advertiserId === a.advertiserId && s.name === a.name);
      const duplicateInRequest = items.findIndex((other) => other.attributes?.advertiserId === a.advertiserId && other.attributes?.name === a.name) !== index;
      if (duplicate || duplicateInRequest) {
        throw new ApiProblem(
          400,
          'validation',
          'duplicate-name',
          'Segment name already used',
          `Advertiser ${a.advertiserId} already has a segment named ${JSON.stringify(a.name)}`,
          {
            pointer: `${pointer}/name`,
          },
        );
      }
    });
    const created = items.map((item) => {
      const a = item.attributes as { advertiserId: string; name: string; description?: string };
      const id = this.nextSegmentId();
      this.addSegment({ id, advertiserId: a.advertiserId, name: a.name });
      const segment = this.segments.get(id) as SegmentState;
      segment.description = a.description ?? null;
      return this.segmentResource(segment);
    });
    return { status: 200, body: { data: created, errors: [], warnings: [] } };
  }

  private nextSegmentId(): string {
    let max = 100_000;
    for (const id of this.segments.keys()) max = Math.max(max, Number(id));
    return String(max + 1);
  }

  // --- contract checks on answers ----------------------------------------

  /** Builds the envelope for a problem and checks it (and the call record) before it goes out. */
  private checkedEnvelope(problem: ApiProblem, instance: string, operation: SandboxOperation, call?: SandboxCall): Reply {
    const { reply, traceId } = envelope(problem, instance);
    if (call) call.traceId = traceId;
    return this.checkReply(reply, operation, undefined);
  }

  /**
   * A response the contract rejects is a sandbox bug: answer 500 so the test that
   * triggered it fails, and keep the violation for inspection.
   */
  private checkReply(reply: Reply, operation: SandboxOperation, operationId: string | undefined): Reply {
    if (!this.validateResponses) return reply;
    const isEnvelope = reply.status >= 400;
    const target = isEnvelope ? ENVELOPE_OPERATION : operationId;
    if (!target) return reply;
    const result = this.contract.validateResponse(reply.body, target, isEnvelope ? 200 : reply.status);
    if (result.valid) return reply;
    const errors = describeAjvErrors(result.errors);
    this.contractViolations.push({ at: Date.now(), operation, status: reply.status, errors });
    const message = `SANDBOX CONTRACT VIOLATION: ${operation} ${reply.status} response does not match the OpenAPI contract: ${errors.join('; ')}`;
    this.loud(message, { operation, status: reply.status, errors });
    return envelope(
      new ApiProblem(500, 'availability', 'sandbox-contract-violation', 'Sandbox answered outside the contract', errors.join('; ').slice(0, 1000)),
      '/',
    ).reply;
  }

  // --- admin routes -------------------------------------------------------

  private async handleAdmin(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const body = await readBody(req, this.maxBodyBytes);
    const route = url.pathname.slice(ADMIN_PREFIX.length).replace(/\/$/, '');
    const method = req.method ?? 'GET';
    const adminError = (status: number, error: string) => sendJson(res, { status, body: { error } });
    try {
      const membersMatch = /^segments\/([^/]+)\/members$/.exec(route);
      if (method === 'GET' && membersMatch?.[1]) {
        const id = safeDecode(membersMatch[1]);
        if (!this.segments.has(id)) return adminError(404, `unknown segment ${id}`);
        return await streamJsonArray(res, [...this.members(id)].sort());
      }
      if (route === 'segments' && method === 'GET') {
        const list = [...this.segments.values()].map((s) => ({
          id: s.id,
          advertiserId: s.advertiserId,
          name: s.name,
          size: s.members.size,
          matched: s.matched,
        }));
        return sendJson(res, { status: 200, body: list });
      }
      if (route === 'segments' && method === 'POST') {
        const segment = adminSegmentSchema.parse(JSON.parse(body?.toString('utf8') || 'null'));
        this.addSegment(segment);
        return sendJson(res, { status: 201, body: { id: segment.id, advertiserId: segment.advertiserId, name: this.segments.get(segment.id)?.name } });
      }
      if (route === 'calls' && method === 'GET') return sendJson(res, { status: 200, body: this.calls });
      if (route === 'identifier-audit' && method === 'GET') return sendJson(res, { status: 200, body: this.identifierAudit() });
      if (route === 'faults' && method === 'PUT') {
        const parsed = JSON.parse(body?.toString('utf8') || 'null') as unknown;
        this.setFaults(parsed === null ? undefined : parseFaultPlan(parsed));
        return sendJson(res, { status: 200, body: { faults: this.injector?.plan ?? null } });
      }
      return adminError(404, `no admin route ${method} ${url.pathname}`);
    } catch (error) {
      const message = error instanceof z.ZodError ? formatZodError(error) : error instanceof Error ? error.message : String(error);
      return adminError(400, message);
    }
  }
}

// ---------------------------------------------------------------------------
// Options, files, entry point
// ---------------------------------------------------------------------------

function formatZodError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid input';
  const path = issue.path
    .map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`))
    .join('')
    .replace(/^\./, '');
  return `${path || '(root)'}: ${issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')}` : issue.message}`;
}

const segmentIdSchema = z
  .union([z.string(), z.number().int()])
  .transform(String)
  .refine((id) => isInt32String(id) && Number(id) > 0, {
    message: 'segment ids are positive int32 numbers written as strings',
  });

const adminSegmentSchema = z.strictObject({
  id: segmentIdSchema,
  advertiserId: z.union([z.string().min(1), z.number().int()]).transform(String),
  name: z.string().optional(),
  members: z.array(z.string()).optional(),
});

const optionsFileSchema = z.strictObject({
  port: z.number().int().min(0).max(65535).optional(),
  host: z.string().min(1).optional(),
  clients: z
    .array(
      z.strictObject({
        clientId: z.string().min(1),
        clientSecret: z.string().min(1),
        advertiserIds: z.union([z.literal('*'), z.array(z.string())]),
      }),
    )
    .optional(),
  segments: z.array(adminSegmentSchema).optional(),
  tokenTtlSeconds: z.number().int().min(1).optional(),
  rateLimitPerMinute: z.number().min(0).nullable().optional(),
  matchShare: z.number().min(0).max(1).optional(),
  faults: z.unknown().optional(),
  validateResponses: z.boolean().optional(),
  contractPath: z.string().optional(),
  maxBodyBytes: z.number().int().min(1024).optional(),
  recordReceivedIdentifiers: z.boolean().optional(),
});

/**
 * Reads sandbox options from a JSON file (for the CLI / demo). `contractPath` is
 * resolved relative to the file; `faults` is checked with parseFaultPlan.
 */
export function loadSandboxOptionsFromFile(path: string): SandboxOptions {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`sandbox options ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const result = optionsFileSchema.safeParse(json);
  if (!result.success) throw new Error(`sandbox options ${path}: ${formatZodError(result.error)}`);
  const { faults, contractPath, rateLimitPerMinute, ...rest } = result.data;
  const options: SandboxOptions = { ...rest };
  if (rateLimitPerMinute !== undefined) options.rateLimitPerMinute = rateLimitPerMinute ?? 0;
  if (contractPath !== undefined) options.contractPath = isAbsolute(contractPath) ? contractPath : resolve(dirname(path), contractPath);
  if (faults !== undefined && faults !== null) {
    try {
      options.faults = parseFaultPlan(faults);
    } catch (error) {
      throw new Error(`sandbox options ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return options;
}

function checkOptions(opts: SandboxOptions): void {
  if (opts.matchShare !== undefined && !(opts.matchShare >= 0 && opts.matchShare <= 1)) throw new Error('sandbox: matchShare must be within 0..1');
  if (opts.tokenTtlSeconds !== undefined && !(opts.tokenTtlSeconds > 0)) throw new Error('sandbox: tokenTtlSeconds must be > 0');
  if (opts.clients !== undefined && opts.clients.length === 0) throw new Error('sandbox: clients must not be empty');
  if (opts.rateLimitPerMinute !== undefined && opts.rateLimitPerMinute !== null && !(opts.rateLimitPerMinute >= 0)) {
    throw new Error('sandbox: rateLimitPerMinute must be >= 0 (0, null or Infinity = no limit)');
  }
}

/** Starts a sandbox listening on `host:port` (default 127.0.0.1, ephemeral port). */
export async function startSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  checkOptions(opts);
  const contract = await loadContract(opts.contractPath ?? defaultContractPath());
  const sandbox = new SandboxServer(contract, opts);
  await sandbox.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
  return sandbox;
}

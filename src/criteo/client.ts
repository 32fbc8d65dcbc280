import { Readable } from 'node:stream';
import pLimit, { type LimitFunction } from 'p-limit';
import { Agent, request, type Dispatcher } from 'undici';
import type { CriteoSettings } from '../core/config.js';
import { AudienceSyncError, AuthenticationError, ListRejectedError, TransientError, type CriteoProblem } from '../core/errors.js';
import { redactValue, type Logger } from '../core/logger.js';
import { RateLimiter, sleep } from './rate-limiter.js';

/**
 * Criteo's contact-list API: token, PATCH add/remove, DELETE, statistics,
 * segment search. One instance per process: it owns the token, the
 * keep-alive connections, the concurrency bound and the rate limiter that
 * every list shares.
 *
 * Retry policy, per the contract in shared/criteo/README.md:
 * - 429 waits (Retry-After, else x-ratelimit-reset, else exponential backoff)
 *   without using the attempt budget, and lowers the limiter's rate for the
 *   rest of the run; the total 429 wait of one call is bounded
 *   (CRITEO_MAX_WAIT_SECONDS), then the call fails as transient.
 * - 5xx, 408, timeouts and broken connections back off with full jitter, up
 *   to `maxAttempts` attempts; then the call fails as transient, flagged
 *   "may have applied".
 * - 401 with a token code renews the token once and retries; a second 401,
 *   or a token endpoint refusing the credentials, is an AuthenticationError,
 *   and the client then refuses every call for a while without sending it
 *   (no retry storm while the run winds down).
 * - 400, 403, 404 and other 4xx are final for the list: no retry.
 *
 * Each HTTP request (token requests included) is logged once, when it ends,
 * with the operation, list, batch size, attempt, status, the wait before it,
 * its duration and Criteo's traceId. The last line of a call also carries the
 * call's totals. Never an identifier, a token or the secret.
 */

export type CriteoOperation = 'patch' | 'delete' | 'statistics' | 'search' | 'token';

export interface CallOutcome<T> {
  body: T;
  status: number;
  /** HTTP requests made for this call (429 answers and token renewals included). */
  attempts: number;
  /** Time spent waiting: rate-limiter queue, backoff and 429 waits. */
  waitedMs: number;
  durationMs: number;
}

/** How a call went, attached to the error when it failed. */
export interface CallTrace {
  attempts: number;
  waitedMs: number;
  durationMs: number;
  /**
   * Whether Criteo may have applied the request: some attempt went unanswered
   * or answered 5xx. A later definite refusal (400/403/404/401/429) does not
   * undo an earlier attempt that may have gone through.
   */
  mayHaveApplied: boolean;
}

/** Identifiers already encoded as the bytes of a JSON array of strings, and how many it holds. */
export interface EncodedIdentifiers {
  json: Buffer;
  size: number;
}

/** A request body sent as it stands on every attempt: a few buffers, never joined into one. */
interface BufferedBody {
  length: number;
  chunks: readonly Buffer[];
}

/** The PATCH body around encoded identifiers. */
function amendmentBody(operation: 'add' | 'remove', encoded: EncodedIdentifiers): BufferedBody {
  const head = Buffer.from(
    `{"data":{"type":"ContactlistAmendment","attributes":{"operation":${JSON.stringify(operation)},"identifierType":"email","identifiers":`,
  );
  const tail = Buffer.from('}}}');
  return { length: head.length + encoded.json.length + tail.length, chunks: [head, encoded.json, tail] };
}

function isEncoded(x: readonly string[] | EncodedIdentifiers): x is EncodedIdentifiers {
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

export interface SegmentInfo {
  id: string;
  advertiserId: string | null;
  name: string | null;
  type: string | null;
}

interface ErrorEnvelope {
  errors?: { traceId?: string | null; type?: string; code?: string; title?: string | null; detail?: string | null }[];
  error?: string;
  error_description?: string;
}

type Headers = Record<string, string | string[] | undefined>;

interface CallMeta {
  operation: CriteoOperation;
  segmentId?: string;
  op?: string;
  size?: number;
}

/** What one HTTP request gave: an answer, or no answer (network error, timeout). */
type AttemptResult =
  | { kind: 'answer'; status: number; headers: Headers; text: string; token: string; queuedMs: number; durationMs: number }
  | { kind: 'no-answer'; error: unknown; sent: boolean; queuedMs: number; durationMs: number };

const TOKEN_CODES = new Set(['authorization-token-expired', 'authorization-token-invalid']);
const RETRY_CAP_MS = 30_000;
/** After an authentication failure, calls fail at once for this long instead of reaching Criteo. */
const AUTH_FAILURE_HOLD_MS = 60_000;
/** Renew a token this long before it expires (Criteo: about a minute)... */
const TOKEN_RENEW_MARGIN_MS = 60_000;
/** ...but for short-lived tokens, once this share of its life has passed at the latest. */
const TOKEN_RENEW_SHARE = 0.2;
/** Errors that mean the request never left: nothing can have been applied. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

export class CriteoClient {
  readonly limiter: RateLimiter;
  private readonly agent: Agent;
  /** Bounds requests in flight across every list (CRITEO_CONCURRENCY). */
  private readonly inflight: LimitFunction;
  private readonly timeoutMs: number;
  private token: { value: string; renewAt: number } | undefined;
  private tokenRequest: Promise<string> | undefined;
  private authFailure: { error: AuthenticationError; until: number } | undefined;

  constructor(
    private readonly settings: CriteoSettings,
    private readonly log: Logger,
    limiter?: RateLimiter,
  ) {
    this.limiter = limiter ?? new RateLimiter(settings.maxCallsPerMinute);
    this.inflight = pLimit(settings.concurrency);
    this.timeoutMs = settings.timeoutSeconds * 1000;
    this.agent = new Agent({
      // Sockets stay open between batches; the server's Keep-Alive hint wins when it is shorter.
      keepAliveTimeout: 30_000,
      // Token requests too run inside a concurrency slot: never more sockets than requests in flight.
      connections: settings.concurrency,
      connect: { timeout: Math.min(this.timeoutMs, 10_000) },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }

  /**
   * For a process that runs many syncs (the scheduler): the next run starts at
   * the configured rate, without the previous run's 429 slow-down or held
   * authentication failure. Keeps the token and the connections.
   */
  beginRun(): void {
    this.limiter.restore();
    this.authFailure = undefined;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** PATCH add or remove; `identifiers` are 64-hex SHA-256 values, never raw emails. */
  async amendContactList(
    segmentId: string,
    operation: 'add' | 'remove',
    identifiers: readonly string[] | EncodedIdentifiers,
  ): Promise<CallOutcome<AmendmentResult>> {
    const encoded = isEncoded(identifiers) ? identifiers : { json: Buffer.from(JSON.stringify(identifiers)), size: identifiers.length };
    const body = amendmentBody(operation, encoded);
    const out = await this.call<{ data?: { attributes?: Partial<AmendmentResult> } }>(
      { operation: 'patch', segmentId, op: operation, size: encoded.size },
      'PATCH',
      `audience-segments/${segmentId}/contact-list`,
      body,
    );
    const a = out.body.data?.attributes ?? {};
    return {
      ...out,
      body: {
        nbValidIdentifiers: a.nbValidIdentifiers ?? null,
        nbInvalidIdentifiers: a.nbInvalidIdentifiers ?? null,
        sampleInvalidIdentifiers: a.sampleInvalidIdentifiers ?? [],
      },
    };
  }

  /** DELETE: empties the list of every identifier. */
  async emptyContactList(segmentId: string): Promise<CallOutcome<unknown>> {
    return this.call({ operation: 'delete', segmentId }, 'DELETE', `audience-segments/${segmentId}/contact-list`);
  }

  async getStatistics(segmentId: string): Promise<CallOutcome<ListStatistics>> {
    const out = await this.call<{ data?: { attributes?: Partial<ListStatistics> | null } | null }>(
      { operation: 'statistics', segmentId },
      'GET',
      `audience-segments/${segmentId}/contact-list/statistics`,
    );
    const a = out.body.data?.attributes ?? {};
    return {
      ...out,
      body: {
        numberOfIdentifiers: a.numberOfIdentifiers ?? null,
        numberOfMatches: a.numberOfMatches ?? null,
        matchRate: a.matchRate ?? null,
      },
    };
  }

  /** The segments among `segmentIds` these credentials can see (at most 100 a page). */
  async findSegments(segmentIds: readonly string[]): Promise<SegmentInfo[]> {
    const found: SegmentInfo[] = [];
    for (let offset = 0; offset < segmentIds.length; offset += 100) {
      const page = segmentIds.slice(offset, offset + 100);
      const body = JSON.stringify({ data: { type: 'AudienceSegment', attributes: { audienceSegmentIds: page } } });
      const out = await this.call<{
        data?: { id?: string | null; attributes?: { advertiserId?: string | null; name?: string | null; type?: string | null } | null }[] | null;
      }>({ operation: 'search' }, 'POST', `audience-segments/search?limit=100&offset=0`, body);
      for (const s of out.body.data ?? []) {
        if (!s.id) continue;
        found.push({ id: s.id, advertiserId: s.attributes?.advertiserId ?? null, name: s.attributes?.name ?? null, type: s.attributes?.type ?? null });
      }
    }
    return found;
  }

  /** A valid token, renewed ahead of expiry; concurrent callers share one request. */
  async accessToken(): Promise<string> {
    const held = this.heldAuthFailure();
    if (held) throw held;
    if (this.token && Date.now() < this.token.renewAt) return this.token.value;
    this.tokenRequest ??= this.fetchToken().finally(() => {
      this.tokenRequest = undefined;
    });
    return this.tokenRequest;
  }

  /** The authentication failure every call meets at once for a while after one call met it. */
  private heldAuthFailure(): AuthenticationError | undefined {
    if (!this.authFailure) return undefined;
    if (Date.now() >= this.authFailure.until) {
      this.authFailure = undefined;
      return undefined;
    }
    const { error } = this.authFailure;
    return new AuthenticationError(error.message, error.problem);
  }

  private authenticationFailed(error: AuthenticationError): AuthenticationError {
    this.authFailure = { error, until: Date.now() + AUTH_FAILURE_HOLD_MS };
    this.token = undefined;
    return error;
  }

  private async fetchToken(): Promise<string> {
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: this.settings.clientId,
      client_secret: this.settings.clientSecret,
    }).toString();
    const started = Date.now();
    let failures = 0;
    let rateLimited = 0;
    let rateLimitedMs = 0;
    let waitBefore = 0;
    for (let attempt = 1; ; attempt++) {
      const sentAt = Date.now();
      const waited = waitBefore;
      const line = (status: number | string, next: string, extra: Record<string, unknown> = {}) =>
        this.logRequest(next === 'done' ? 'info' : 'warn', { operation: 'token' }, attempt, status, waited, Date.now() - sentAt, next, extra);
      let status: number;
      let headers: Headers;
      let text: string;
      try {
        const res = await request(`${this.settings.apiUrl}/oauth2/token`, {
          method: 'POST',
          dispatcher: this.agent,
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: form,
          signal: AbortSignal.timeout(this.attemptDeadlineMs()),
        });
        status = res.statusCode;
        headers = res.headers;
        text = await res.body.text();
      } catch (error) {
        failures++;
        const reason = networkReason(error);
        if (failures >= this.settings.maxAttempts) {
          line(reason, 'stop');
          throw new TransientError(`Criteo token endpoint unreachable after ${failures} attempts: ${reason}`, false);
        }
        waitBefore = this.backoff(failures);
        line(reason, 'retry', { nextWaitMs: waitBefore });
        await sleep(waitBefore);
        continue;
      }
      if (status === 200) {
        const body = safeJson<{ access_token?: string; expires_in?: number }>(text);
        if (!body?.access_token) {
          line(status, 'stop');
          throw this.authenticationFailed(new AuthenticationError('Criteo token endpoint answered without an access_token'));
        }
        const ttlMs = (body.expires_in ?? 900) * 1000;
        // Renew about a minute before expiry; proportionally earlier for short-lived tokens.
        const margin = Math.min(TOKEN_RENEW_MARGIN_MS, ttlMs * TOKEN_RENEW_SHARE);
        this.token = { value: body.access_token, renewAt: sentAt + ttlMs - margin };
        redactValue(body.access_token); // scrubbed from every log line by value, not only by field name
        line(status, 'done', { expiresInSeconds: ttlMs / 1000, attempts: attempt, totalDurationMs: Date.now() - started });
        return body.access_token;
      }
      const problem = parseProblem(status, text);
      if (status === 429) {
        rateLimited++;
        const delay = rateLimitDelay(headers, rateLimited, this.settings.retryBaseMs);
        if (rateLimitedMs + delay > this.settings.maxWaitSeconds * 1000) {
          line(status, 'stop', problemFields(problem));
          throw new TransientError(
            `Criteo token endpoint kept answering 429 for longer than CRITEO_MAX_WAIT_SECONDS (${this.settings.maxWaitSeconds}s)`,
            false,
            problem,
          );
        }
        rateLimitedMs += delay;
        waitBefore = delay;
        line(status, 'wait', { ...problemFields(problem), nextWaitMs: delay });
        await sleep(delay);
        continue;
      }
      if (status >= 500 || status === 408) {
        failures++;
        if (failures < this.settings.maxAttempts) {
          waitBefore = this.backoff(failures);
          line(status, 'retry', { ...problemFields(problem), nextWaitMs: waitBefore });
          await sleep(waitBefore);
          continue;
        }
        line(status, 'stop', problemFields(problem));
        throw new TransientError(
          `Criteo token endpoint failed with HTTP ${status} after ${failures} attempts; traceId ${problem.traceId ?? 'none'}`,
          false,
          problem,
        );
      }
      line(status, 'stop', problemFields(problem));
      const env = safeJson<ErrorEnvelope>(text);
      if (status === 404 || status === 405 || env === undefined) {
        // Not an OAuth answer at all: the URL is wrong, not the secret.
        throw this.authenticationFailed(
          new AuthenticationError(
            `no Criteo token endpoint at CRITEO_API_URL (${this.settings.apiUrl}/oauth2/token answered HTTP ${status}): check CRITEO_API_URL`,
            problem,
          ),
        );
      }
      const reason = env.error ?? problem.code ?? `HTTP ${status}`;
      throw this.authenticationFailed(
        new AuthenticationError(`Criteo refused the client credentials (${reason}): check CRITEO_CLIENT_ID and CRITEO_CLIENT_SECRET`, problem),
      );
    }
  }

  private invalidateToken(value: string): void {
    if (this.token?.value === value) this.token = undefined;
  }

  private backoff(failures: number): number {
    // Full jitter: uniform in [0, min(cap, base * 2^(failures-1))].
    const ceiling = Math.min(RETRY_CAP_MS, this.settings.retryBaseMs * 2 ** (failures - 1));
    return Math.floor(Math.random() * ceiling);
  }

  /**
   * A backstop over the per-phase timeouts (connect, headers, body idle): the
   * upload of a request is not covered by undici's headers timeout.
   */
  private attemptDeadlineMs(): number {
    return 2 * this.timeoutMs + Math.min(this.timeoutMs, 10_000);
  }

  private logRequest(
    level: 'info' | 'warn',
    meta: CallMeta,
    attempt: number,
    status: number | string,
    waitMs: number,
    durationMs: number,
    next: string,
    extra: Record<string, unknown>,
  ): void {
    this.log[level](
      {
        operation: meta.operation,
        list: meta.segmentId,
        op: meta.op,
        batchSize: meta.size,
        attempt,
        status,
        waitMs,
        durationMs,
        next,
        ...extra,
      },
      'criteo call',
    );
  }

  /** One HTTP request: a concurrency slot, then a rate slot, then a fresh token, then the request. */
  private attempt(method: Dispatcher.HttpMethod, url: string, body: string | BufferedBody | undefined): Promise<AttemptResult> {
    return this.inflight(async () => {
      const permit = await this.limiter.acquire();
      const queuedMs = permit.waitedMs;
      const startedAt = Date.now();
      let sent = false;
      try {
        // Taken after the waits, so a token never ages in the queue (30 s tokens, long limiter waits).
        const token = await this.accessToken();
        sent = true;
        const res = await request(url, {
          method,
          dispatcher: this.agent,
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'application/json',
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...(typeof body === 'object' ? { 'content-length': String(body.length) } : {}),
          },
          // A fresh stream over the same buffers on every attempt.
          body: typeof body === 'object' ? Readable.from(body.chunks, { objectMode: false }) : body,
          signal: AbortSignal.timeout(this.attemptDeadlineMs()),
        });
        const text = await res.body.text();
        return { kind: 'answer', status: res.statusCode, headers: res.headers, text, token, queuedMs, durationMs: Date.now() - startedAt };
      } catch (error) {
        // A token endpoint verdict (refused credentials, unreachable) is the call's answer, not a network failure.
        if (error instanceof AudienceSyncError) throw error;
        const code = (error as { code?: string }).code;
        return { kind: 'no-answer', error, sent: sent && !NOT_SENT_CODES.has(code ?? ''), queuedMs, durationMs: Date.now() - startedAt };
      } finally {
        permit.release();
      }
    });
  }

  private async call<T>(meta: CallMeta, method: Dispatcher.HttpMethod, path: string, body?: string | BufferedBody): Promise<CallOutcome<T>> {
    const url = `${this.settings.apiUrl}/${this.settings.apiVersion}/marketing-solutions/${path}`;
    const started = Date.now();
    let attempts = 0; // HTTP requests made
    let failures = 0; // 5xx, timeouts, broken connections: bounded by maxAttempts
    let rateLimited = 0; // 429 answers: never use the attempt budget
    let rateLimitedMs = 0; // their total wait: bounded by maxWaitSeconds
    let waitedMs = 0;
    let waitBefore = 0; // backoff or 429 wait before the next request
    let renewedToken = false;
    let mayHaveApplied = false;

    const trace = (): CallTrace => ({ attempts, waitedMs, durationMs: Date.now() - started, mayHaveApplied });
    const totals = () => ({ attempts, totalWaitMs: waitedMs, totalDurationMs: Date.now() - started });
    const fail = <E extends Error>(error: E): E => Object.assign(error, { trace: trace() });

    for (;;) {
      const held = this.heldAuthFailure();
      if (held) throw fail(held);
      attempts++;
      let result: AttemptResult;
      try {
        result = await this.attempt(method, url, body);
      } catch (error) {
        // The token endpoint refused the credentials or stayed unreachable (its own requests are logged).
        throw fail(error instanceof Error ? error : new Error(String(error)));
      }
      waitedMs += result.queuedMs;
      const waitMs = waitBefore + result.queuedMs;
      waitBefore = 0;
      const line = (level: 'info' | 'warn', status: number | string, next: string, extra: Record<string, unknown> = {}) =>
        this.logRequest(level, meta, attempts, status, waitMs, result.durationMs, next, next === 'done' || next === 'stop' ? { ...extra, ...totals() } : extra);

      if (result.kind === 'no-answer') {
        // No answer: Criteo may have applied the request before the connection broke.
        mayHaveApplied ||= result.sent;
        failures++;
        const reason = networkReason(result.error);
        if (failures < this.settings.maxAttempts) {
          waitBefore = this.backoff(failures);
          line('warn', reason, 'retry', { nextWaitMs: waitBefore });
          waitedMs += waitBefore;
          await sleep(waitBefore);
          continue;
        }
        line('warn', reason, 'stop');
        throw fail(new TransientError(`Criteo ${meta.operation} got no answer after ${failures} attempts: ${reason}`, mayHaveApplied));
      }

      const { status, headers, text, token } = result;
      if (status >= 200 && status < 300) {
        line('info', status, 'done');
        return { body: (safeJson<T>(text) ?? {}) as T, status, attempts, waitedMs, durationMs: Date.now() - started };
      }
      const problem = parseProblem(status, text);
      const fields = problemFields(problem);

      if (status === 401) {
        if (!renewedToken && (problem.code === undefined || TOKEN_CODES.has(problem.code))) {
          renewedToken = true;
          this.invalidateToken(token);
          line('warn', status, 'renew-token', fields);
          continue;
        }
        line('warn', status, 'stop', fields);
        const what = renewedToken ? 'rejected a freshly renewed token' : 'refused the access token';
        const error = new AuthenticationError(
          `Criteo ${what} (${problem.code ?? 'HTTP 401'}): check the app's credentials and scopes; traceId ${problem.traceId ?? 'none'}`,
          problem,
        );
        throw fail(this.authenticationFailed(error));
      }
      if (status === 429) {
        rateLimited++;
        this.limiter.slowDown();
        const delay = rateLimitDelay(headers, rateLimited, this.settings.retryBaseMs);
        if (rateLimitedMs + delay > this.settings.maxWaitSeconds * 1000) {
          line('warn', status, 'stop', { ...fields, rateLimitedMs, nextWaitMs: delay });
          throw fail(
            new TransientError(
              `Criteo kept answering 429: waiting ${Math.round((rateLimitedMs + delay) / 1000)}s in all would exceed CRITEO_MAX_WAIT_SECONDS (${this.settings.maxWaitSeconds}s); traceId ${problem.traceId ?? 'none'}`,
              mayHaveApplied,
              problem,
            ),
          );
        }
        rateLimitedMs += delay;
        waitedMs += delay;
        waitBefore = delay;
        line('warn', status, 'wait', { ...fields, nextWaitMs: delay, limit: this.limiter.effectiveLimit });
        await sleep(delay);
        continue;
      }
      if (status >= 500 || status === 408) {
        mayHaveApplied = true;
        failures++;
        if (failures < this.settings.maxAttempts) {
          waitBefore = this.backoff(failures);
          line('warn', status, 'retry', { ...fields, nextWaitMs: waitBefore });
          waitedMs += waitBefore;
          await sleep(waitBefore);
          continue;
        }
        line('warn', status, 'stop', fields);
        throw fail(
          new TransientError(
            `Criteo ${meta.operation} failed with HTTP ${status} after ${failures} attempts; traceId ${problem.traceId ?? 'none'}`,
            true,
            problem,
          ),
        );
      }
      line('warn', status, 'stop', fields);
      const what =
        status === 403
          ? `no access to list ${meta.segmentId} under these credentials (its advertiser has not granted this app)`
          : status === 404
            ? `Criteo does not know list ${meta.segmentId}`
            : `Criteo rejected the ${meta.operation} request (HTTP ${status})`;
      throw fail(
        new ListRejectedError(`${what}: ${problem.code ?? ''}${problem.title ? ` ${problem.title}` : ''}; traceId ${problem.traceId ?? 'none'}`, problem),
      );
    }
  }
}

function safeJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

function parseProblem(status: number, text: string): CriteoProblem {
  const env = safeJson<ErrorEnvelope>(text);
  const first = env?.errors?.[0];
  const problem: CriteoProblem = { status };
  const code = first?.code ?? env?.error;
  if (code) problem.code = code;
  const title = first?.title ?? env?.error_description;
  if (title) problem.title = title.slice(0, 200);
  if (first?.traceId) problem.traceId = first.traceId;
  return problem;
}

function problemFields(problem: CriteoProblem): Record<string, unknown> {
  return { traceId: problem.traceId, code: problem.code };
}

/**
 * How long to wait after a 429: Retry-After (seconds or an HTTP date) if
 * present, else until x-ratelimit-reset (Unix seconds), else exponential
 * backoff from `baseMs` with equal jitter; `hit` counts this call's 429s from 1.
 * Never less than 100 ms (a reset already past still means "not now").
 */
export function rateLimitDelay(headers: Headers, hit: number, baseMs: number, now = Date.now(), random: () => number = Math.random): number {
  const header = (name: string) => {
    const v = headers[name];
    return (Array.isArray(v) ? v[0] : v)?.trim();
  };
  const retryAfter = header('retry-after');
  if (retryAfter) {
    if (/^\d+(\.\d+)?$/.test(retryAfter)) return Math.max(100, Math.ceil(Number(retryAfter) * 1000));
    const date = Date.parse(retryAfter);
    if (Number.isFinite(date)) return Math.max(100, date - now);
  }
  const resetText = header('x-ratelimit-reset');
  const reset = resetText && /^\d+(\.\d+)?$/.test(resetText) ? Number(resetText) : NaN;
  if (Number.isFinite(reset) && reset > 0) return Math.max(100, Math.ceil(reset * 1000 - now));
  const ceiling = Math.min(RETRY_CAP_MS, baseMs * 2 ** Math.min(Math.max(hit, 1) - 1, 20));
  return Math.max(100, Math.floor(ceiling / 2 + random() * (ceiling / 2)));
}

function networkReason(error: unknown): string {
  const e = error as { code?: string; name?: string; message?: string };
  if (e.name === 'TimeoutError') return 'TIMEOUT';
  return e.code ?? e.name ?? e.message ?? 'network error';
}

export function callTrace(error: unknown): CallTrace | undefined {
  return (error as { trace?: CallTrace }).trace;
}

import pLimit, { type LimitFunction } from 'p-limit';
import { Agent, request, type Dispatcher } from 'undici';
import type { CriteoSettings } from './config.js';
import { AuthenticationError, ListRejectedError, TransientError, type CriteoProblem } from './errors.js';
import type { Logger } from './logger.js';
import { RateLimiter, sleep } from './rate-limiter.js';

/**
 * Criteo's contact-list API: token, PATCH add/remove, DELETE, statistics,
 * segment search. One instance per process: it owns the token, the
 * keep-alive connections and the rate limiter that every list shares.
 *
 * Retry policy, per the contract in shared/criteo/README.md:
 * - 429 waits (Retry-After, else x-ratelimit-reset, else backoff) without
 *   using the attempt budget; the total wait is bounded.
 * - 5xx, timeouts and broken connections back off with full jitter, up to
 *   `maxAttempts` attempts.
 * - 401 renews the token once; a second 401 ends the run.
 * - 400, 403, 404 are final for the list.
 */

export type CriteoOperation = 'patch' | 'delete' | 'statistics' | 'search' | 'token';

export interface CallOutcome<T> {
  body: T;
  status: number;
  attempts: number;
  waitedMs: number;
  durationMs: number;
}

/** How a call went, attached to the error when it failed. */
export interface CallTrace {
  attempts: number;
  waitedMs: number;
  durationMs: number;
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

const TOKEN_CODES = new Set(['authorization-token-expired', 'authorization-token-invalid']);
const RETRY_CAP_MS = 30_000;

export class CriteoClient {
  readonly limiter: RateLimiter;
  private readonly agent: Agent;
  /** Bounds requests in flight across every list (CRITEO_CONCURRENCY). */
  private readonly inflight: LimitFunction;
  private token: { value: string; renewAt: number } | undefined;
  private tokenRequest: Promise<string> | undefined;

  constructor(
    private readonly settings: CriteoSettings,
    private readonly log: Logger,
    limiter?: RateLimiter,
  ) {
    this.limiter = limiter ?? new RateLimiter(settings.maxCallsPerMinute);
    this.inflight = pLimit(settings.concurrency);
    const timeout = settings.timeoutSeconds * 1000;
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      connections: Math.max(settings.concurrency * 2, 4),
      connect: { timeout: Math.min(timeout, 10_000) },
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** PATCH add or remove; `identifiers` are 64-hex SHA-256 values, never raw emails. */
  async amendContactList(
    segmentId: string,
    operation: 'add' | 'remove',
    identifiers: readonly string[],
  ): Promise<CallOutcome<AmendmentResult>> {
    const body = JSON.stringify({
      data: { type: 'ContactlistAmendment', attributes: { operation, identifierType: 'email', identifiers } },
    });
    const out = await this.call<{ data?: { attributes?: Partial<AmendmentResult> } }>(
      { operation: 'patch', segmentId, op: operation, size: identifiers.length },
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
      const out = await this.call<{ data?: { id?: string | null; attributes?: { advertiserId?: string | null; name?: string | null; type?: string | null } | null }[] | null }>(
        { operation: 'search' },
        'POST',
        `audience-segments/search?limit=100&offset=0`,
        body,
      );
      for (const s of out.body.data ?? []) {
        if (!s.id) continue;
        found.push({ id: s.id, advertiserId: s.attributes?.advertiserId ?? null, name: s.attributes?.name ?? null, type: s.attributes?.type ?? null });
      }
    }
    return found;
  }

  /** A valid token, renewed ahead of expiry; concurrent callers share one request. */
  async accessToken(): Promise<string> {
    if (this.token && Date.now() < this.token.renewAt) return this.token.value;
    this.tokenRequest ??= this.fetchToken().finally(() => {
      this.tokenRequest = undefined;
    });
    return this.tokenRequest;
  }

  private async fetchToken(): Promise<string> {
    const started = Date.now();
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: this.settings.clientId,
      client_secret: this.settings.clientSecret,
    }).toString();
    for (let attempt = 1; ; attempt++) {
      let status: number;
      let text: string;
      try {
        const res = await request(`${this.settings.apiUrl}/oauth2/token`, {
          method: 'POST',
          dispatcher: this.agent,
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: form,
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (error) {
        if (attempt >= this.settings.maxAttempts) {
          throw new TransientError(`Criteo token endpoint unreachable: ${networkReason(error)}`, false);
        }
        await sleep(this.backoff(attempt));
        continue;
      }
      if (status === 200) {
        const body = JSON.parse(text) as { access_token?: string; expires_in?: number };
        if (!body.access_token) throw new AuthenticationError('Criteo token endpoint answered without an access_token');
        const ttlMs = (body.expires_in ?? 900) * 1000;
        // Renew about a minute before expiry; proportionally earlier for short-lived tokens.
        const margin = Math.min(60_000, ttlMs * 0.2);
        this.token = { value: body.access_token, renewAt: Date.now() + ttlMs - margin };
        this.log.debug({ operation: 'token', status, attempt, durationMs: Date.now() - started }, 'criteo token acquired');
        return body.access_token;
      }
      if (status >= 500 && attempt < this.settings.maxAttempts) {
        await sleep(this.backoff(attempt));
        continue;
      }
      const problem = parseProblem(status, text);
      if (status >= 500) throw new TransientError(`Criteo token endpoint failed with HTTP ${status}`, false, problem);
      const env = safeJson<ErrorEnvelope>(text);
      const reason = env?.error ?? problem.code ?? `HTTP ${status}`;
      throw new AuthenticationError(`Criteo refused the client credentials (${reason}): check CRITEO_CLIENT_ID and CRITEO_CLIENT_SECRET`, problem);
    }
  }

  private invalidateToken(value: string): void {
    if (this.token?.value === value) this.token = undefined;
  }

  private backoff(attempt: number): number {
    // Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))].
    const ceiling = Math.min(RETRY_CAP_MS, this.settings.retryBaseMs * 2 ** (attempt - 1));
    return Math.floor(Math.random() * ceiling);
  }

  private async call<T>(
    meta: { operation: CriteoOperation; segmentId?: string; op?: string; size?: number },
    method: Dispatcher.HttpMethod,
    path: string,
    body?: string,
  ): Promise<CallOutcome<T>> {
    const url = `${this.settings.apiUrl}/${this.settings.apiVersion}/marketing-solutions/${path}`;
    const started = Date.now();
    let attempts = 0;
    let waitedMs = 0;
    let renewedToken = false;
    const log = (status: number | string, extra: Record<string, unknown> = {}) =>
      this.log.info(
        { operation: meta.operation, list: meta.segmentId, op: meta.op, batchSize: meta.size, status, attempts, waitedMs, durationMs: Date.now() - started, ...extra },
        'criteo call',
      );
    const trace = (): CallTrace => ({ attempts, waitedMs, durationMs: Date.now() - started });
    const fail = <E extends Error>(error: E, status: number | string, problem?: CriteoProblem): E => {
      log(status, { traceId: problem?.traceId, code: problem?.code });
      return Object.assign(error, { trace: trace() });
    };

    for (;;) {
      attempts++;
      const token = await this.accessToken();
      let status: number;
      let headers: Record<string, string | string[] | undefined>;
      let text: string;
      try {
        ({ status, headers, text } = await this.inflight(async () => {
          // Counted when the request really starts, so the server never sees more than the limit in a window.
          waitedMs += await this.limiter.acquire();
          const res = await request(url, {
            method,
            dispatcher: this.agent,
            headers: {
              authorization: `Bearer ${token}`,
              accept: 'application/json',
              ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            },
            body,
          });
          return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
        }));
      } catch (error) {
        // No answer: Criteo may have applied the request before the connection broke.
        if (attempts < this.settings.maxAttempts) {
          const delay = this.backoff(attempts);
          waitedMs += delay;
          await sleep(delay);
          continue;
        }
        throw fail(new TransientError(`Criteo ${meta.operation} failed after ${attempts} attempts: ${networkReason(error)}`, true), networkReason(error));
      }

      if (status >= 200 && status < 300) {
        log(status);
        return { body: (text ? JSON.parse(text) : {}) as T, status, attempts, waitedMs, durationMs: Date.now() - started };
      }
      const problem = parseProblem(status, text);

      if (status === 401) {
        if (!renewedToken && (problem.code === undefined || TOKEN_CODES.has(problem.code))) {
          renewedToken = true;
          this.invalidateToken(token);
          continue;
        }
        throw fail(new AuthenticationError(`Criteo rejected a freshly renewed token (${problem.code ?? 'HTTP 401'}); traceId ${problem.traceId ?? 'none'}`, problem), status, problem);
      }
      if (status === 429) {
        this.limiter.slowDown();
        const delay = rateLimitDelay(headers, attempts, this.settings.retryBaseMs);
        if (waitedMs + delay > this.settings.maxWaitSeconds * 1000) {
          throw fail(new TransientError(`Criteo kept answering 429 for longer than CRITEO_MAX_WAIT_SECONDS (${this.settings.maxWaitSeconds}s)`, false, problem), status, problem);
        }
        log(status, { traceId: problem.traceId, waitMs: delay });
        waitedMs += delay;
        attempts--; // a rate-limit wait is not a failed attempt
        await sleep(delay);
        continue;
      }
      if (status >= 500 || status === 408) {
        if (attempts < this.settings.maxAttempts) {
          log(status, { traceId: problem.traceId, retrying: true });
          const delay = this.backoff(attempts);
          waitedMs += delay;
          await sleep(delay);
          continue;
        }
        throw fail(new TransientError(`Criteo ${meta.operation} failed with HTTP ${status} after ${attempts} attempts; traceId ${problem.traceId ?? 'none'}`, true, problem), status, problem);
      }
      const what =
        status === 403
          ? `no access to list ${meta.segmentId} under these credentials (its advertiser has not granted this app)`
          : status === 404
            ? `Criteo does not know list ${meta.segmentId}`
            : `Criteo rejected the ${meta.operation} request (HTTP ${status})`;
      throw fail(new ListRejectedError(`${what}: ${problem.code ?? ''}${problem.title ? ` ${problem.title}` : ''}; traceId ${problem.traceId ?? 'none'}`, problem), status, problem);
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

/** Retry-After if present, else x-ratelimit-reset, else exponential backoff. */
export function rateLimitDelay(
  headers: Record<string, string | string[] | undefined>,
  attempt: number,
  baseMs: number,
  now = Date.now(),
): number {
  const header = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const retryAfter = header('retry-after');
  if (retryAfter !== undefined) {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds)) return Math.max(100, seconds * 1000);
    const date = Date.parse(retryAfter);
    if (Number.isFinite(date)) return Math.max(100, date - now);
  }
  const reset = Number(header('x-ratelimit-reset'));
  if (Number.isFinite(reset) && reset > 0) return Math.max(100, reset * 1000 - now);
  return Math.min(RETRY_CAP_MS, baseMs * 2 ** Math.min(attempt, 10));
}

function networkReason(error: unknown): string {
  const e = error as { code?: string; message?: string };
  return e.code ?? e.message ?? 'network error';
}

export function callTrace(error: unknown): CallTrace | undefined {
  return (error as { trace?: CallTrace }).trace;
}

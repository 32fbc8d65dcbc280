import type { Dispatcher } from 'undici';
import type { CriteoSettings } from '../core/config.js';
import { AuthenticationError, CriteoError, ListRejectedError, TransientError, type CallTrace } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseProblem, problemFields, safeJson } from './problems.js';
import { RateLimiter } from './rate-limiter.js';
import { TokenSource } from './token.js';
import { CallState, Transport, type Answer, type BufferedBody, type CallMeta, type CallPolicy, type Verdict } from './transport.js';

export type { CallTrace } from '../core/errors.js';
export { rateLimitDelay } from './transport.js';
export type { CriteoOperation } from './transport.js';

/**
 * Criteo's contact-list API: token, PATCH add/remove, DELETE, statistics,
 * segment search. One instance per process: it owns the token, the
 * keep-alive connections, the concurrency bound and the rate limiter that
 * every list shares.
 *
 * API calls follow the retry policy of transport.ts, with what is theirs:
 * - each attempt takes a concurrency slot, then a rate-limiter slot, then a
 *   fresh token;
 * - a 429 lowers the limiter's rate for the rest of the run;
 * - an attempt that went unanswered or answered 5xx "may have applied", and a
 *   later refusal does not undo that;
 * - 401 with a token code renews the token once and retries; a second 401,
 *   or a token endpoint refusing the credentials, is an AuthenticationError,
 *   and the client then refuses every call for a while without sending it
 *   (no retry storm while the run winds down);
 * - 400, 403, 404 and other 4xx are final for the list: no retry.
 *
 * The last log line of a call carries the call's totals, and the error a
 * failed call throws carries its trace (`callTrace`).
 */

export interface CallOutcome<T> {
  body: T;
  status: number;
  /** HTTP requests made for this call (429 answers and token renewals included). */
  attempts: number;
  /** Time spent waiting: rate-limiter queue, backoff and 429 waits. */
  waitedMs: number;
  durationMs: number;
}

/** Identifiers already encoded as the bytes of a JSON array of strings, and how many it holds. */
export interface EncodedIdentifiers {
  json: Buffer;
  size: number;
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

/** The 401 codes that mean the token, not the credentials: renew it once and retry. */
const TOKEN_CODES = new Set(['authorization-token-expired', 'authorization-token-invalid']);

export class CriteoClient {
  readonly limiter: RateLimiter;
  private readonly transport: Transport;
  private readonly tokens: TokenSource;

  constructor(
    private readonly settings: CriteoSettings,
    log: Logger,
    limiter?: RateLimiter,
  ) {
    this.limiter = limiter ?? new RateLimiter(settings.maxCallsPerMinute);
    this.transport = new Transport(settings, log, this.limiter);
    this.tokens = new TokenSource(settings, this.transport);
  }

  /**
   * For a process that runs many syncs (the scheduler): the next run starts at
   * the configured rate, without the previous run's 429 slow-down or held
   * authentication failure. Keeps the token and the connections.
   */
  beginRun(): void {
    this.limiter.restore();
    this.tokens.forgetAuthFailure();
  }

  async close(): Promise<void> {
    await this.transport.close();
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
    return this.tokens.accessToken();
  }

  /** One API call; the error of a failed call carries the call's trace. */
  private async call<T>(meta: CallMeta, method: Dispatcher.HttpMethod, path: string, body?: string | BufferedBody): Promise<CallOutcome<T>> {
    const url = `${this.settings.apiUrl}/${this.settings.apiVersion}/marketing-solutions/${path}`;
    const state = new CallState();
    try {
      return await this.transport.run(this.apiPolicy<T>(meta, method, url, body), state);
    } catch (error) {
      if (error instanceof CriteoError) throw error.withTrace(state.trace());
      throw error instanceof Error ? error : new Error(String(error));
    }
  }

  /** An API call: rate-limited slots, a fresh token per attempt, and every attempt may change the list. */
  private apiPolicy<T>(meta: CallMeta, method: Dispatcher.HttpMethod, url: string, body?: string | BufferedBody): CallPolicy<CallOutcome<T>> {
    const renewal = { done: false };
    const { operation } = meta;
    return {
      meta,
      gated: true,
      mayApply: true,
      check: () => {
        const held = this.tokens.heldAuthFailure();
        if (held) throw held;
      },
      prepare: async () => {
        // Taken after the waits, so a token never ages in the queue (30 s tokens, long limiter waits).
        const token = await this.tokens.accessToken();
        const headers = { authorization: `Bearer ${token}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
        return { method, url, headers, body, token };
      },
      settle: (answer, state) => this.settle<T>(meta, answer, state, renewal),
      slowDown: () => {
        this.limiter.slowDown();
        return { limit: this.limiter.effectiveLimit };
      },
      totals: (state) => state.totals(),
      unanswered: (reason, state) => new TransientError(`Criteo ${operation} got no answer after ${state.failures} attempts: ${reason}`, state.mayHaveApplied),
      failed: (status, problem, state) =>
        new TransientError(
          `Criteo ${operation} failed with HTTP ${status} after ${state.failures} attempts; traceId ${problem.traceId ?? 'none'}`,
          state.mayHaveApplied,
          problem,
        ),
      rateLimited: (delayMs, problem, state) => ({
        error: new TransientError(
          `Criteo kept answering 429: waiting ${Math.round((state.rateLimitedMs + delayMs) / 1000)}s in all would exceed CRITEO_MAX_WAIT_SECONDS (${this.settings.maxWaitSeconds}s); traceId ${problem.traceId ?? 'none'}`,
          state.mayHaveApplied,
          problem,
        ),
        fields: { rateLimitedMs: state.rateLimitedMs, nextWaitMs: delayMs },
      }),
    };
  }

  /** 2xx is the call's result; 401 renews the token once; any other refusal is final for the list. */
  private settle<T>(meta: CallMeta, answer: Answer, state: CallState, renewal: { done: boolean }): Verdict<CallOutcome<T>> {
    const { status, text } = answer;
    if (status >= 200 && status < 300) {
      const outcome = {
        body: (safeJson<T>(text) ?? {}) as T,
        status,
        attempts: state.attempts,
        waitedMs: state.waitedMs,
        durationMs: Date.now() - state.started,
      };
      return { next: 'done', value: outcome };
    }
    const problem = parseProblem(status, text);
    const fields = problemFields(problem);
    if (status === 401) {
      if (!renewal.done && (problem.code === undefined || TOKEN_CODES.has(problem.code))) {
        renewal.done = true;
        if (answer.token !== undefined) this.tokens.invalidate(answer.token);
        return { next: 'renew-token', fields };
      }
      const what = renewal.done ? 'rejected a freshly renewed token' : 'refused the access token';
      const error = new AuthenticationError(
        `Criteo ${what} (${problem.code ?? 'HTTP 401'}): check the app's credentials and scopes; traceId ${problem.traceId ?? 'none'}`,
        problem,
      );
      return { next: 'stop', fields, error: this.tokens.authenticationFailed(error) };
    }
    const what =
      status === 403
        ? `no access to list ${meta.segmentId} under these credentials (its advertiser has not granted this app)`
        : status === 404
          ? `Criteo does not know list ${meta.segmentId}`
          : `Criteo rejected the ${meta.operation} request (HTTP ${status})`;
    const message = `${what}: ${problem.code ?? ''}${problem.title ? ` ${problem.title}` : ''}; traceId ${problem.traceId ?? 'none'}`;
    return { next: 'stop', fields, error: new ListRejectedError(message, problem) };
  }
}

/** How the call that threw `error` went, when `error` ended a call of CriteoClient. */
export function callTrace(error: unknown): CallTrace | undefined {
  return error instanceof CriteoError ? error.trace : undefined;
}

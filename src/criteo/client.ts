import type { Dispatcher } from 'undici';
import type { CriteoSettings } from '../core/config.js';
import {
  AuthenticationError,
  CriteoError,
  ListRejectedError,
  TransientError,
  VersionRetiredError,
  type CallTrace,
  type CriteoProblem,
} from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { amendmentBody, encodeIdentifiers, isEncoded, type AmendmentResult, type EncodedIdentifiers, type ListStatistics } from './contact-list.js';
import { LifecycleTracker, lifecycleWarning, retiredMessage, type ApiLifecycle } from './lifecycle.js';
import { parseProblem, problemFields, safeJson } from './problems.js';
import { RateLimiter, type CallRateLimiter } from './rate-limiter.js';
import {
  createBody,
  createRefusal,
  matchesNothing,
  searchBody,
  segmentInfo,
  SEARCH_PAGE_SIZE,
  type CreateAnswer,
  type NewContactList,
  type SearchPage,
  type SegmentFilters,
  type SegmentInfo,
} from './segments.js';
import { TokenSource } from './token.js';
import { CallState, Transport, type Answer, type BufferedBody, type CallMeta, type CallPolicy, type Verdict } from './transport.js';

export type { CallTrace } from '../core/errors.js';
export type { AmendmentResult, EncodedIdentifiers, ListStatistics } from './contact-list.js';
export type { ApiLifecycle } from './lifecycle.js';
export type { NewContactList, SegmentFilters, SegmentInfo, SegmentType } from './segments.js';
export { rateLimitDelay } from './transport.js';
export type { CriteoOperation } from './transport.js';

/**
 * Criteo's contact-list API: token, PATCH add/remove, DELETE, statistics,
 * segment search and create. One instance per process: it owns the token, the
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
 * - 400, 403, 404 and other 4xx are final for the list: no retry;
 * - 410 means CRITEO_API_VERSION is retired: a VersionRetiredError, and the
 *   client then refuses every call without sending it until the next run;
 * - every API answer's Deprecation and Sunset headers are noted: `lifecycle()`
 *   says what this run heard of the version, for the run to warn about.
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

/** The 401 codes that mean the token, not the credentials: renew it once and retry. */
const TOKEN_CODES = new Set(['authorization-token-expired', 'authorization-token-invalid']);

/** A call's own reading of an answer, before the usual one: the error that ends the call, or undefined. */
type Refusal = (status: number, text: string) => CriteoError | undefined;

/** One API request as a call makes it, on every attempt. */
interface ApiRequest {
  meta: CallMeta;
  method: Dispatcher.HttpMethod;
  url: string;
  body: string | BufferedBody | undefined;
  refusal: Refusal | undefined;
}

/** What a definite refusal (403, 404, other 4xx) says, naming the list or the advertiser the call is about. */
function refusalText(meta: CallMeta, status: number): string {
  const subject = meta.segmentId !== undefined ? `list ${meta.segmentId}` : meta.advertiserId !== undefined ? `advertiser ${meta.advertiserId}` : undefined;
  if (status === 403) {
    return subject?.startsWith('list')
      ? `no access to ${subject} under these credentials (its advertiser has not granted this app)`
      : `no access to ${subject ?? 'an advertiser searched'} under these credentials (it has not granted this app)`;
  }
  if (status === 404 && subject?.startsWith('list')) return `Criteo does not know ${subject}`;
  return `Criteo rejected the ${meta.operation} request (HTTP ${status})`;
}

export class CriteoClient {
  readonly limiter: CallRateLimiter;
  private readonly transport: Transport;
  private readonly tokens: TokenSource;
  private heard: LifecycleTracker;
  /** The 410 every call meets at once, without a request, for the rest of the run. */
  private retirement: { message: string; problem: CriteoProblem } | undefined;

  constructor(
    private readonly settings: CriteoSettings,
    log: Logger,
    limiter?: CallRateLimiter,
  ) {
    this.limiter = limiter ?? new RateLimiter(settings.maxCallsPerMinute);
    this.transport = new Transport(settings, log, this.limiter);
    this.tokens = new TokenSource(settings, this.transport);
    this.heard = new LifecycleTracker(settings.apiVersion);
  }

  /**
   * For a process that runs many syncs (the scheduler): the next run starts at
   * the configured rate, without the previous run's 429 slow-down or held
   * authentication failure, and with nothing heard yet of the version's
   * lifecycle (nor a held 410). Keeps the token and the connections.
   */
  beginRun(): void {
    this.limiter.restore();
    this.tokens.forgetAuthFailure();
    this.heard = new LifecycleTracker(this.settings.apiVersion);
    this.retirement = undefined;
  }

  /** The version every API call names (CRITEO_API_VERSION). */
  get apiVersion(): string {
    return this.settings.apiVersion;
  }

  /**
   * What Criteo's answers said of CRITEO_API_VERSION since the client started
   * (or since `beginRun`): deprecated, its sunset, retired. Null until an
   * answer said anything (a Deprecation or Sunset header, or a 410).
   */
  lifecycle(): ApiLifecycle | null {
    return this.heard.current();
  }

  /**
   * The one line to log at the end of a run when the version is deprecated,
   * has a sunset date or is retired (naming CRITEO_API_VERSION); else null.
   */
  lifecycleWarning(): string | null {
    return lifecycleWarning(this.heard.current());
  }

  async close(): Promise<void> {
    await this.transport.close();
    await this.limiter.close?.();
  }

  /** PATCH add or remove; `identifiers` are 64-hex SHA-256 values, never raw emails. */
  async amendContactList(
    segmentId: string,
    operation: 'add' | 'remove',
    identifiers: readonly string[] | EncodedIdentifiers,
  ): Promise<CallOutcome<AmendmentResult>> {
    const encoded = isEncoded(identifiers) ? identifiers : encodeIdentifiers(identifiers);
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

  /**
   * Every segment these credentials can see that passes the filters (Criteo
   * ANDs them), reading every page, 100 a page, until the search's totalItems
   * is reached (or, without it, a short page). A filter given as an empty list
   * matches nothing and makes no call. A segment seen on two pages is kept once.
   */
  async searchSegments(filters: SegmentFilters = {}): Promise<SegmentInfo[]> {
    if (matchesNothing(filters)) return [];
    const body = searchBody(filters);
    const found = new Map<string, SegmentInfo>();
    for (let offset = 0; ;) {
      const out = await this.call<SearchPage>({ operation: 'search' }, 'POST', `audience-segments/search?limit=${SEARCH_PAGE_SIZE}&offset=${offset}`, body);
      const page = out.body.data ?? [];
      const before = found.size;
      for (const resource of page) {
        const segment = segmentInfo(resource);
        if (segment && !found.has(segment.id)) found.set(segment.id, segment);
      }
      // The next page starts after what this one held: a server that pages by less than 100 is read whole too.
      offset += page.length;
      const total = out.body.meta?.totalItems;
      const ended = typeof total === 'number' ? offset >= total : page.length < SEARCH_PAGE_SIZE;
      // A page of nothing new (empty, or a server ignoring offset) ends it too: no endless paging.
      if (ended || found.size === before) break;
    }
    return [...found.values()];
  }

  /** The segments among `segmentIds` these credentials can see (searched 100 ids at a time). */
  async findSegments(segmentIds: readonly string[]): Promise<SegmentInfo[]> {
    const found: SegmentInfo[] = [];
    for (let i = 0; i < segmentIds.length; i += SEARCH_PAGE_SIZE) {
      found.push(...(await this.searchSegments({ segmentIds: segmentIds.slice(i, i + SEARCH_PAGE_SIZE) })));
    }
    return found;
  }

  /**
   * One small search (a segment at most; reads nothing else and changes
   * nothing) for what Criteo's answers say of the version, when nothing else
   * was called yet: the lifecycle after it. A retired version throws
   * VersionRetiredError.
   */
  async checkVersion(): Promise<ApiLifecycle | null> {
    await this.call<SearchPage>({ operation: 'search' }, 'POST', 'audience-segments/search?limit=1&offset=0', searchBody({}));
    return this.lifecycle();
  }

  /**
   * Creates one contact list (Criteo's bulk create with one item). A name the
   * advertiser already uses is a NameTakenError: search for it again (another
   * creator won the race, or an earlier attempt whose answer was lost went
   * through). Any other refusal is a ListRejectedError.
   */
  async createContactList(list: NewContactList): Promise<SegmentInfo> {
    const meta: CallMeta = { operation: 'create', advertiserId: list.advertiserId };
    const refusal: Refusal = (status, text) => createRefusal(list, status, text);
    const out = await this.call<CreateAnswer>(meta, 'POST', 'audience-segments/create', createBody(list), refusal);
    // createRefusal let the answer through only when it holds a segment with an id.
    const created = (out.body.data ?? []).map(segmentInfo).find((s) => s !== undefined);
    return created as SegmentInfo;
  }

  /** A valid token, renewed ahead of expiry; concurrent callers share one request. */
  async accessToken(): Promise<string> {
    return this.tokens.accessToken();
  }

  /** One API call; the error of a failed call carries the call's trace. */
  private async call<T>(meta: CallMeta, method: Dispatcher.HttpMethod, path: string, body?: string | BufferedBody, refusal?: Refusal): Promise<CallOutcome<T>> {
    const url = `${this.settings.apiUrl}/${this.settings.apiVersion}/marketing-solutions/${path}`;
    const state = new CallState();
    try {
      return await this.transport.run(this.apiPolicy<T>({ meta, method, url, body, refusal }), state);
    } catch (error) {
      if (error instanceof CriteoError) throw error.withTrace(state.trace());
      throw error instanceof Error ? error : new Error(String(error));
    }
  }

  /** An API call: rate-limited slots, a fresh token per attempt, and every attempt may change the list. */
  private apiPolicy<T>(request: ApiRequest): CallPolicy<CallOutcome<T>> {
    const renewal = { done: false };
    const { meta, method, url, body } = request;
    const { operation } = meta;
    return {
      meta,
      gated: true,
      mayApply: true,
      check: () => {
        const held = this.tokens.heldAuthFailure() ?? this.heldRetirement();
        if (held) throw held;
      },
      heard: (answer) => this.heard.notice(answer.headers),
      prepare: async () => {
        // Taken after the waits, so a token never ages in the queue (30 s tokens, long limiter waits).
        const token = await this.tokens.accessToken();
        const headers = { authorization: `Bearer ${token}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
        return { method, url, headers, body, token };
      },
      settle: (answer, state) => this.settle<T>(request, answer, state, renewal),
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

  /**
   * 2xx is the call's result; 410 is the version's retirement; 401 renews the
   * token once; any other refusal is final for the list. The call's own
   * `refusal` reads 2xx and 4xx answers first.
   */
  private settle<T>(request: ApiRequest, answer: Answer, state: CallState, renewal: { done: boolean }): Verdict<CallOutcome<T>> {
    const { meta, refusal } = request;
    const { status, text } = answer;
    const own = status === 401 || status === 410 ? undefined : refusal?.(status, text);
    if (own) return { next: 'stop', fields: problemFields(parseProblem(status, text)), error: own };
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
    if (status === 410) return { next: 'stop', fields, error: this.retired(problem) };
    if (status === 401) return this.unauthorized(problem, answer, renewal);
    const message = `${refusalText(meta, status)}: ${problem.code ?? ''}${problem.title ? ` ${problem.title}` : ''}; traceId ${problem.traceId ?? 'none'}`;
    return { next: 'stop', fields, error: new ListRejectedError(message, problem) };
  }

  /** A 401: renew the token once when the code says it is the token, else an authentication failure held for every call. */
  private unauthorized<T>(problem: CriteoProblem, answer: Answer, renewal: { done: boolean }): Verdict<CallOutcome<T>> {
    const fields = problemFields(problem);
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

  /** A 410: the version is retired; noted in the lifecycle and held for every later call of the run. */
  private retired(problem: CriteoProblem): VersionRetiredError {
    this.heard.noticeRetired();
    this.retirement = { message: retiredMessage(this.settings.apiVersion, problem.code, problem.traceId), problem };
    return new VersionRetiredError(this.retirement.message, this.settings.apiVersion, problem);
  }

  /** The held 410, as a fresh error for the call that meets it. */
  private heldRetirement(): VersionRetiredError | undefined {
    if (!this.retirement) return undefined;
    return new VersionRetiredError(this.retirement.message, this.settings.apiVersion, this.retirement.problem);
  }
}

/** How the call that threw `error` went, when `error` ended a call of CriteoClient. */
export function callTrace(error: unknown): CallTrace | undefined {
  return error instanceof CriteoError ? error.trace : undefined;
}

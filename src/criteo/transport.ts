import { Readable } from 'node:stream';
import pLimit, { type LimitFunction } from 'p-limit';
import { Agent, request, type Dispatcher } from 'undici';
import type { CriteoSettings } from '../core/config.js';
import { AudienceSyncError, type CallTrace, type CriteoProblem } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { networkReason, parseProblem, problemFields, type ResponseHeaders } from './problems.js';
import { sleep, type CallRateLimiter } from './rate-limiter.js';

/**
 * The HTTP side of every request to Criteo, token requests and API calls
 * alike, and the one retry policy they share (the contract in
 * shared/criteo/README.md):
 * - 429 waits (Retry-After, else x-ratelimit-reset, else exponential backoff)
 *   without using the attempt budget; the total 429 wait of one call is
 *   bounded (CRITEO_MAX_WAIT_SECONDS), then the call fails as transient.
 * - 5xx, 408, timeouts and broken connections back off with full jitter, up
 *   to `maxAttempts` attempts; then the call fails as transient.
 * - Every other answer (2xx, 401, other 4xx) is the caller's to judge: see
 *   `CallPolicy.settle`.
 * - Every answer, whatever its status, is shown to the policy first
 *   (`CallPolicy.heard`): API calls read the version lifecycle headers
 *   (Deprecation, Sunset) there.
 *
 * What differs between token requests and API calls (the slots an attempt
 * takes, whether a request can change anything, what a 429 does to the shared
 * rate, the errors' wording, the totals in the log) is a `CallPolicy`.
 *
 * Each HTTP request is logged once, when it ends, with the operation, list,
 * batch size, attempt, status, the wait before it, its duration and Criteo's
 * traceId. Never an identifier, a token or the secret.
 */

export type CriteoOperation = 'patch' | 'delete' | 'statistics' | 'search' | 'create' | 'token';

/** What names a call in its log lines. */
export interface CallMeta {
  operation: CriteoOperation;
  segmentId?: string;
  /** The advertiser a create names. */
  advertiserId?: string;
  op?: string;
  size?: number;
}

/** A request body sent as it stands on every attempt: a few buffers, never joined into one. */
export interface BufferedBody {
  length: number;
  chunks: readonly Buffer[];
}

/** One request as it goes out; `token` is the access token its headers carry, if any. */
interface Outgoing {
  method: Dispatcher.HttpMethod;
  url: string;
  headers: Record<string, string>;
  body?: string | BufferedBody;
  token?: string;
}

/** Criteo's answer to one request. */
export interface Answer {
  status: number;
  headers: ResponseHeaders;
  text: string;
  /** The access token the request carried, if any. */
  token: string | undefined;
  /** When the attempt started, after its queueing. */
  startedAt: number;
}

/** What one HTTP request gave: an answer, or no answer (network error, timeout). */
type Attempt =
  | ({ kind: 'answer'; queuedMs: number; durationMs: number } & Answer)
  | { kind: 'no-answer'; error: unknown; sent: boolean; queuedMs: number; durationMs: number };

type Fields = Record<string, unknown>;

/** The caller's judgement of an answer: the call's result, its end, or a retry with a fresh token. */
export type Verdict<T> =
  { next: 'done'; value: T; fields?: Fields } | { next: 'stop'; error: Error; fields?: Fields } | { next: 'renew-token'; fields: Fields };

/** What happens after one attempt, with the status its log line shows. */
type Step<T> = (Verdict<T> | { next: 'retry' | 'wait'; waitMs: number; fields: Fields }) & { status: number | string };

/** What differs between the kinds of call that share the retry policy. */
export interface CallPolicy<T> {
  meta: CallMeta;
  /**
   * Whether each attempt takes a concurrency slot, then a rate-limiter slot.
   * API calls do; a token request runs inside the slots of the call that needs it.
   */
  gated: boolean;
  /** Whether the request can change anything at Criteo: a token request cannot, so it never "may have applied". */
  mayApply: boolean;
  /** Throws to end the call before another request goes out (a held authentication failure). */
  check?(): void;
  /** Sees every answer first, whatever its status (the version lifecycle headers of API answers). */
  heard?(answer: Answer): void;
  /** The request of one attempt, built once its slots are held; an AudienceSyncError it throws ends the call. */
  prepare(): Outgoing | Promise<Outgoing>;
  /** Every answer but 429, 408 and 5xx. */
  settle(answer: Answer, state: CallState): Verdict<T>;
  /** After a 429: lowers the shared rate, and returns what the wait line reports of it. */
  slowDown?(): Fields;
  /** The fields the call's last line (done or stop) ends with. */
  totals?(state: CallState): Fields;
  /** The error once every attempt went unanswered. */
  unanswered(reason: string, state: CallState): Error;
  /** The error once 5xx or 408 answers used every attempt. */
  failed(status: number, problem: CriteoProblem, state: CallState): Error;
  /** The error, and what the stop line adds, when waiting out a 429 would exceed CRITEO_MAX_WAIT_SECONDS. */
  rateLimited(delayMs: number, problem: CriteoProblem, state: CallState): { error: Error; fields?: Fields };
}

/** The counters of one call, across its attempts. */
export class CallState {
  readonly started = Date.now();
  /** HTTP requests made (429 answers and token renewals included). */
  attempts = 0;
  /** 5xx, 408, timeouts, broken connections: bounded by maxAttempts. */
  failures = 0;
  /** 429 answers: they never use the attempt budget. */
  rateLimited = 0;
  /** The total wait of the 429s: bounded by maxWaitSeconds. */
  rateLimitedMs = 0;
  /** Rate-limiter queue, backoff and 429 waits. */
  waitedMs = 0;
  mayHaveApplied = false;

  trace(): CallTrace {
    return { attempts: this.attempts, waitedMs: this.waitedMs, durationMs: Date.now() - this.started, mayHaveApplied: this.mayHaveApplied };
  }

  totals(): Fields {
    return { attempts: this.attempts, totalWaitMs: this.waitedMs, totalDurationMs: Date.now() - this.started };
  }
}

const RETRY_CAP_MS = 30_000;

/** The longest one HTTP request may last before it is abandoned: connect, upload, headers and body. */
export function callDeadlineMs(settings: Pick<CriteoSettings, 'timeoutSeconds'>): number {
  const timeoutMs = settings.timeoutSeconds * 1000;
  return 2 * timeoutMs + Math.min(timeoutMs, 10_000);
}
/** Errors that mean the request never left: nothing can have been applied. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** The keep-alive connections, the concurrency bound and the attempt loop that every request to Criteo goes through. */
export class Transport {
  private readonly agent: Agent;
  /** Bounds requests in flight across every list (CRITEO_CONCURRENCY). */
  private readonly inflight: LimitFunction;
  /**
   * A backstop over the per-phase timeouts (connect, headers, body idle): the
   * upload of a request is not covered by undici's headers timeout.
   */
  private readonly deadlineMs: number;

  constructor(
    private readonly settings: CriteoSettings,
    private readonly log: Logger,
    private readonly limiter: CallRateLimiter,
  ) {
    const timeoutMs = settings.timeoutSeconds * 1000;
    this.inflight = pLimit(settings.concurrency);
    this.deadlineMs = callDeadlineMs(settings);
    this.agent = new Agent({
      // Sockets stay open between batches; the server's Keep-Alive hint wins when it is shorter.
      keepAliveTimeout: 30_000,
      // Token requests too run inside a concurrency slot: never more sockets than requests in flight.
      connections: settings.concurrency,
      connect: { timeout: Math.min(timeoutMs, 10_000) },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Attempts the call until the policy's verdict, or until the retry policy gives up. */
  async run<T>(policy: CallPolicy<T>, state = new CallState()): Promise<T> {
    let waitBefore = 0; // backoff or 429 wait before the next request
    for (;;) {
      policy.check?.();
      state.attempts++;
      const attempt = await this.send(policy);
      state.waitedMs += attempt.queuedMs;
      const waitMs = waitBefore + attempt.queuedMs;
      waitBefore = 0;
      const step = attempt.kind === 'answer' ? this.answered(policy, state, attempt) : this.unanswered(policy, state, attempt);
      this.logStep(policy, state, step, waitMs, attempt.durationMs);
      if (step.next === 'done') return step.value;
      if (step.next === 'stop') throw step.error;
      if (step.next === 'renew-token') continue;
      state.waitedMs += step.waitMs;
      waitBefore = step.waitMs;
      await sleep(step.waitMs);
    }
  }

  /** One attempt: its slots if the policy takes them, then the request. */
  private send<T>(policy: CallPolicy<T>): Promise<Attempt> {
    if (!policy.gated) return this.exchange(policy, 0);
    return this.inflight(async () => {
      const permit = await this.limiter.acquire();
      try {
        return await this.exchange(policy, permit.waitedMs);
      } finally {
        permit.release();
      }
    });
  }

  /** One HTTP request under the attempt deadline. */
  private async exchange<T>(policy: CallPolicy<T>, queuedMs: number): Promise<Attempt> {
    const startedAt = Date.now();
    let sent = false;
    try {
      const out = await policy.prepare();
      sent = true;
      const { body } = out;
      const res = await request(out.url, {
        method: out.method,
        dispatcher: this.agent,
        headers: typeof body === 'object' ? { ...out.headers, 'content-length': String(body.length) } : out.headers,
        // A fresh stream over the same buffers on every attempt.
        body: typeof body === 'object' ? Readable.from(body.chunks, { objectMode: false }) : body,
        signal: AbortSignal.timeout(this.deadlineMs),
      });
      const text = await res.body.text();
      const durationMs = Date.now() - startedAt;
      return { kind: 'answer', status: res.statusCode, headers: res.headers, text, token: out.token, startedAt, queuedMs, durationMs };
    } catch (error) {
      // A token endpoint verdict (refused credentials, unreachable) is the call's answer, not a network failure.
      if (error instanceof AudienceSyncError) throw error;
      const code = (error as { code?: string }).code;
      return { kind: 'no-answer', error, sent: sent && !NOT_SENT_CODES.has(code ?? ''), queuedMs, durationMs: Date.now() - startedAt };
    }
  }

  private answered<T>(policy: CallPolicy<T>, state: CallState, answer: Answer): Step<T> {
    const { status } = answer;
    policy.heard?.(answer);
    if (status === 429) return this.rateLimited(policy, state, answer);
    if (status >= 500 || status === 408) {
      // An answer from a server in trouble: the request may have been applied before it failed.
      if (policy.mayApply) state.mayHaveApplied = true;
      const problem = parseProblem(status, answer.text);
      return this.failure(state, status, problemFields(problem), () => policy.failed(status, problem, state));
    }
    return { ...policy.settle(answer, state), status };
  }

  private unanswered<T>(policy: CallPolicy<T>, state: CallState, attempt: { error: unknown; sent: boolean }): Step<T> {
    // No answer: Criteo may have applied the request before the connection broke.
    if (policy.mayApply) state.mayHaveApplied ||= attempt.sent;
    const reason = networkReason(attempt.error);
    return this.failure(state, reason, {}, () => policy.unanswered(reason, state));
  }

  /** A failure that uses the attempt budget: back off and retry while attempts remain. */
  private failure<T>(state: CallState, status: number | string, fields: Fields, error: () => Error): Step<T> {
    state.failures++;
    if (state.failures >= this.settings.maxAttempts) return { next: 'stop', status, error: error(), fields };
    const waitMs = this.backoff(state.failures);
    return { next: 'retry', status, waitMs, fields: { ...fields, nextWaitMs: waitMs } };
  }

  /** A 429: wait as told, without using the attempt budget, unless the call's 429 waits would exceed CRITEO_MAX_WAIT_SECONDS. */
  private rateLimited<T>(policy: CallPolicy<T>, state: CallState, answer: Answer): Step<T> {
    const problem = parseProblem(answer.status, answer.text);
    const fields = problemFields(problem);
    state.rateLimited++;
    const slowed = policy.slowDown?.() ?? {};
    const delay = rateLimitDelay(answer.headers, state.rateLimited, this.settings.retryBaseMs);
    if (state.rateLimitedMs + delay > this.settings.maxWaitSeconds * 1000) {
      const stop = policy.rateLimited(delay, problem, state);
      return { next: 'stop', status: answer.status, error: stop.error, fields: { ...fields, ...stop.fields } };
    }
    state.rateLimitedMs += delay;
    return { next: 'wait', status: answer.status, waitMs: delay, fields: { ...fields, nextWaitMs: delay, ...slowed } };
  }

  private backoff(failures: number): number {
    // Full jitter: uniform in [0, min(cap, base * 2^(failures-1))].
    const ceiling = Math.min(RETRY_CAP_MS, this.settings.retryBaseMs * 2 ** (failures - 1));
    return Math.floor(Math.random() * ceiling);
  }

  /** The request's one log line; the call's last line (done or stop) also carries the policy's totals. */
  private logStep<T>(policy: CallPolicy<T>, state: CallState, step: Step<T>, waitMs: number, durationMs: number): void {
    const { meta } = policy;
    const last = step.next === 'done' || step.next === 'stop';
    const extra = last ? { ...step.fields, ...policy.totals?.(state) } : step.fields;
    this.log[step.next === 'done' ? 'info' : 'warn'](
      {
        operation: meta.operation,
        list: meta.segmentId,
        advertiser: meta.advertiserId,
        op: meta.op,
        batchSize: meta.size,
        attempt: state.attempts,
        status: step.status,
        waitMs,
        durationMs,
        next: step.next,
        ...extra,
      },
      'criteo call',
    );
  }
}

/**
 * How long to wait after a 429: Retry-After (seconds or an HTTP date) if
 * present, else until x-ratelimit-reset (Unix seconds), else exponential
 * backoff from `baseMs` with equal jitter; `hit` counts this call's 429s from 1.
 * Never less than 100 ms (a reset already past still means "not now").
 */
export function rateLimitDelay(headers: ResponseHeaders, hit: number, baseMs: number, now = Date.now(), random: () => number = Math.random): number {
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

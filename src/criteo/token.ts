import type { CriteoSettings } from '../core/config.js';
import { AuthenticationError, TransientError } from '../core/errors.js';
import { redactValue } from '../core/logger.js';
import { parseProblem, problemFields, safeJson, type ErrorEnvelope } from './problems.js';
import type { Answer, CallPolicy, CallState, Transport, Verdict } from './transport.js';

/**
 * The access token of the client credentials: fetched from Criteo's token
 * endpoint through the shared transport and retry policy, cached, and renewed
 * ahead of expiry. A refusal of the credentials (or of a freshly renewed
 * token) is held for a while: every call meets it at once, without a request,
 * so a run winding down makes no retry storm.
 */

/** After an authentication failure, calls fail at once for this long instead of reaching Criteo. */
const AUTH_FAILURE_HOLD_MS = 60_000;
/** Renew a token this long before it expires (Criteo: about a minute)... */
const TOKEN_RENEW_MARGIN_MS = 60_000;
/** ...but for short-lived tokens, once this share of its life has passed at the latest. */
const TOKEN_RENEW_SHARE = 0.2;

export class TokenSource {
  private token: { value: string; renewAt: number } | undefined;
  private tokenRequest: Promise<string> | undefined;
  private authFailure: { error: AuthenticationError; until: number } | undefined;

  constructor(
    private readonly settings: CriteoSettings,
    private readonly transport: Transport,
  ) {}

  /** A valid token, renewed ahead of expiry; concurrent callers share one request. */
  async accessToken(): Promise<string> {
    const held = this.heldAuthFailure();
    if (held) throw held;
    if (this.token && Date.now() < this.token.renewAt) return this.token.value;
    this.tokenRequest ??= this.transport.run(this.policy()).finally(() => {
      this.tokenRequest = undefined;
    });
    return this.tokenRequest;
  }

  /** The authentication failure every call meets at once for a while after one call met it. */
  heldAuthFailure(): AuthenticationError | undefined {
    if (!this.authFailure) return undefined;
    if (Date.now() >= this.authFailure.until) {
      this.authFailure = undefined;
      return undefined;
    }
    const { error } = this.authFailure;
    return new AuthenticationError(error.message, error.problem);
  }

  /** Holds `error` for every call to meet, drops the token, and returns the error. */
  authenticationFailed(error: AuthenticationError): AuthenticationError {
    this.authFailure = { error, until: Date.now() + AUTH_FAILURE_HOLD_MS };
    this.token = undefined;
    return error;
  }

  /** Forgets the held authentication failure: a new run tries the credentials again. */
  forgetAuthFailure(): void {
    this.authFailure = undefined;
  }

  /** Drops the cached token if it is `value` (Criteo refused it), so that the next call fetches another. */
  invalidate(value: string): void {
    if (this.token?.value === value) this.token = undefined;
  }

  /** A token request: no slots of its own, changes nothing at Criteo, and leaves the shared rate alone on a 429. */
  private policy(): CallPolicy<string> {
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: this.settings.clientId,
      client_secret: this.settings.clientSecret,
    }).toString();
    const { apiUrl, maxWaitSeconds } = this.settings;
    return {
      meta: { operation: 'token' },
      gated: false,
      mayApply: false,
      prepare: () => ({
        method: 'POST',
        url: `${apiUrl}/oauth2/token`,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form,
      }),
      settle: (answer, state) => this.settle(answer, state),
      unanswered: (reason, state) => new TransientError(`Criteo token endpoint unreachable after ${state.failures} attempts: ${reason}`, state.mayHaveApplied),
      failed: (status, problem, state) =>
        new TransientError(
          `Criteo token endpoint failed with HTTP ${status} after ${state.failures} attempts; traceId ${problem.traceId ?? 'none'}`,
          state.mayHaveApplied,
          problem,
        ),
      rateLimited: (_delayMs, problem, state) => ({
        error: new TransientError(
          `Criteo token endpoint kept answering 429 for longer than CRITEO_MAX_WAIT_SECONDS (${maxWaitSeconds}s)`,
          state.mayHaveApplied,
          problem,
        ),
      }),
    };
  }

  /** 200 with a token is the token; any other answer that is not retried is an authentication failure. */
  private settle(answer: Answer, state: CallState): Verdict<string> {
    const { status, text } = answer;
    if (status === 200) {
      const body = safeJson<{ access_token?: string; expires_in?: number; refresh_token?: string }>(text);
      if (!body?.access_token) {
        return { next: 'stop', error: this.authenticationFailed(new AuthenticationError('Criteo token endpoint answered without an access_token')) };
      }
      const ttlMs = (body.expires_in ?? 900) * 1000;
      // Renew about a minute before expiry; proportionally earlier for short-lived tokens.
      const margin = Math.min(TOKEN_RENEW_MARGIN_MS, ttlMs * TOKEN_RENEW_SHARE);
      this.token = { value: body.access_token, renewAt: answer.startedAt + ttlMs - margin };
      redactValue(body.access_token); // scrubbed from every log line by value, not only by field name
      // Criteo's answer also holds a refresh_token: the client-credentials flow never uses it, and it is scrubbed the same way.
      redactValue(body.refresh_token);
      const fields = { expiresInSeconds: ttlMs / 1000, attempts: state.attempts, totalDurationMs: Date.now() - state.started };
      return { next: 'done', value: body.access_token, fields };
    }
    const problem = parseProblem(status, text);
    const fields = problemFields(problem);
    const env = safeJson<ErrorEnvelope>(text);
    // An OAuth error is a JSON object; anything else (a page, null, a number) did not come from a token endpoint.
    if (status === 404 || status === 405 || typeof env !== 'object' || env === null) {
      // Not an OAuth answer at all: the URL is wrong, not the secret.
      const message = `no Criteo token endpoint at CRITEO_API_URL (${this.settings.apiUrl}/oauth2/token answered HTTP ${status}): check CRITEO_API_URL`;
      return { next: 'stop', fields, error: this.authenticationFailed(new AuthenticationError(message, problem)) };
    }
    const reason = env.error ?? problem.code ?? `HTTP ${status}`;
    const message = `Criteo refused the client credentials (${reason}): check CRITEO_CLIENT_ID and CRITEO_CLIENT_SECRET`;
    return { next: 'stop', fields, error: this.authenticationFailed(new AuthenticationError(message, problem)) };
  }
}

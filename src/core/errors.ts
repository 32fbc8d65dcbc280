import { redactSecrets } from './logger.js';

/**
 * The error taxonomy. Every failure the job can meet is one of these, and each
 * says what happens next: whether to retry, whether the list or the whole run
 * stops, and whether Criteo may have applied the request anyway.
 */

export interface CriteoProblem {
  status: number;
  code?: string;
  title?: string;
  traceId?: string;
}

export abstract class AudienceSyncError extends Error {
  /** Worth trying again, later or now. */
  abstract readonly retryable: boolean;
  override name = this.constructor.name;
}

/** A bad or missing setting, or bad usage: exit 2 before anything is written. */
export class ConfigError extends AudienceSyncError {
  readonly retryable = false;
}

/** The database schema is missing or older than this build. */
export class SchemaError extends AudienceSyncError {
  readonly retryable = false;
}

/** Postgres did not answer at start: nothing was written; the next run tries again. */
export class DatabaseUnreachableError extends AudienceSyncError {
  readonly retryable = true;
}

/** How one call to Criteo went, as a failed call's error carries it. */
export interface CallTrace {
  /** HTTP requests made for the call (429 answers and token renewals included). */
  attempts: number;
  /** Time spent waiting: rate-limiter queue, backoff and 429 waits. */
  waitedMs: number;
  durationMs: number;
  /**
   * Whether Criteo may have applied the request: some attempt went unanswered
   * or answered 5xx. A later definite refusal (400/403/404/401/429) does not
   * undo an earlier attempt that may have gone through.
   */
  mayHaveApplied: boolean;
}

/**
 * A failure met while talking to Criteo. When it ends a call of the Criteo
 * client, `trace` says how that call went; it is absent otherwise (a token
 * request made on its own).
 */
export abstract class CriteoError extends AudienceSyncError {
  declare trace?: CallTrace;

  /**
   * Records how the call that ends with this error went. An error that already
   * carries a trace (one token failure shared by every call waiting on it) is
   * copied, so each call keeps its own.
   */
  withTrace(trace: CallTrace): this {
    const own = this.trace === undefined ? this : (Object.create(Object.getPrototypeOf(this) as object, Object.getOwnPropertyDescriptors(this)) as this);
    own.trace = trace;
    return own;
  }
}

/** Criteo refused the credentials, or refused a freshly renewed token: the run stops. */
export class AuthenticationError extends CriteoError {
  readonly retryable = false;
  constructor(
    message: string,
    readonly problem?: CriteoProblem,
  ) {
    super(message);
  }
}

/**
 * A request Criteo answered with a definite refusal for one list: 403 (no
 * access to its advertiser), 404 (unknown list) or 400 (a request it will never
 * take). Nothing was applied; stop writing to that list, go on with the others.
 */
export class ListRejectedError extends CriteoError {
  readonly retryable = false;
  constructor(
    message: string,
    readonly problem: CriteoProblem,
  ) {
    super(message);
  }
}

/**
 * Criteo refused to create a segment because its advertiser already has one
 * of that name (`name-must-be-unique`): another creator won the race, or an
 * earlier attempt whose answer was lost went through. Search for the name
 * again; nothing new was created by this request.
 */
export class NameTakenError extends ListRejectedError {
  constructor(
    message: string,
    problem: CriteoProblem,
    readonly advertiserId: string,
    readonly segmentName: string,
  ) {
    super(message, problem);
  }
}

/**
 * Criteo answered 410: the API version in CRITEO_API_VERSION is past its
 * sunset and no call under it will ever succeed. Not retryable; the run stops,
 * as on an authentication failure, until the setting names a supported version.
 */
export class VersionRetiredError extends CriteoError {
  readonly retryable = false;
  constructor(
    message: string,
    readonly apiVersion: string,
    readonly problem?: CriteoProblem,
  ) {
    super(message);
  }
}

/**
 * 5xx, timeouts and broken connections after every attempt was used, or a
 * rate-limit wait longer than allowed. The list is left incomplete and the
 * next run picks the work up. `mayHaveApplied` is true when Criteo may have
 * acted on the request even though no answer came back.
 */
export class TransientError extends CriteoError {
  readonly retryable = true;
  constructor(
    message: string,
    readonly mayHaveApplied: boolean,
    readonly problem?: CriteoProblem,
  ) {
    super(message);
  }
}

/** One line for the operator: the message without a stack, and without any secret the process knows. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return redactSecrets(text.replace(/\s+/g, ' ').trim());
}

/**
 * The sandbox's public vocabulary: the options it starts with, the calls it records
 * and the `Sandbox` handle a test, the demo or a benchmark holds.
 */
import type { FaultPlan } from './faults.js';
import type { VersionPhase } from './version.js';

export type { VersionPhase } from './version.js';

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
  /** The API version served; calls to another answer 404. Default: the job's client default (CRITEO_API_VERSION's). */
  apiVersion?: string;
  /**
   * Where the served version stands in Criteo's lifecycle. 'deprecated': every API
   * answer carries `Deprecation: true`; 'retired': every API call answers 410.
   * Default 'supported'.
   */
  versionPhase?: VersionPhase;
  /** The served version's sunset (a Date, an ISO date or instant): every API answer carries it as `Sunset`. */
  sunset?: string | Date | null;
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
  /** The API version served. */
  readonly apiVersion: string;
  /** Moves the served version in its lifecycle (and sets or clears its sunset) from now on. */
  setVersionLifecycle(phase: VersionPhase, sunset?: string | Date | null): void;
  /** The members Criteo holds for that list, as they are now (a copy). Throws for an unknown segment. */
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

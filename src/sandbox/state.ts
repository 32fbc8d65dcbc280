/**
 * What the request handlers share: the contract, the stores (apps, tokens, segments,
 * calls, identifiers), the rate limiter, the settings and the fault plan in force.
 */
import type { OpenAPIBackend } from 'openapi-backend';
import { DEFAULT_CLIENT, TokenStore } from './auth.js';
import { CallLog } from './calls.js';
import { ReplyChecker } from './contract.js';
import { FaultInjector, parseFaultPlan, type FaultPlan } from './faults.js';
import { IdentifierAuditor } from './identifiers.js';
import { SlidingWindowLimiter } from './rate-window.js';
import { SegmentStore } from './segment-store.js';
import type { ContractViolation, SandboxCall, SandboxClient, SandboxLogger, SandboxOptions } from './types.js';
import { clientDefaultApiVersion, contractVersionOf, parseSunset, type VersionLifecycle } from './version.js';

export interface SandboxState {
  readonly contract: OpenAPIBackend;
  readonly replies: ReplyChecker;
  readonly clients: ReadonlyMap<string, SandboxClient>;
  readonly tokens: TokenStore;
  readonly segments: SegmentStore;
  readonly calls: CallLog;
  readonly identifiers: IdentifierAuditor;
  /** Undefined when there is no limit. */
  readonly limiter: SlidingWindowLimiter | undefined;
  readonly tokenTtlSeconds: number;
  readonly maxBodyBytes: number;
  /** The API version served, and the one the contract's paths are written under. */
  readonly apiVersion: string;
  readonly contractVersion: string;
  /** Where the served version stands; replaced by the admin route and `setVersionLifecycle`. */
  lifecycle: VersionLifecycle;
  /** The fault plan in force, with its counters; replaced by installFaults. */
  injector: FaultInjector | undefined;
}

/** Where the state reports to: the Sandbox handle's arrays, and the logger for sandbox bugs. */
interface StateOutlets {
  calls: SandboxCall[];
  contractViolations: ContractViolation[];
  loud: SandboxLogger;
}

/** A fresh state from the options, without segments or faults (installed after, in that order). */
export function createState(contract: OpenAPIBackend, opts: SandboxOptions, outlets: StateOutlets): SandboxState {
  // Absent: Criteo's own 250. null, like 0 and Infinity, means no limit (as in an options file).
  const limit = opts.rateLimitPerMinute === undefined ? 250 : (opts.rateLimitPerMinute ?? 0);
  return {
    contract,
    replies: new ReplyChecker(contract, opts.validateResponses ?? true, outlets.contractViolations, outlets.loud),
    clients: new Map((opts.clients ?? [DEFAULT_CLIENT]).map((c) => [c.clientId, c])),
    tokens: new TokenStore(),
    segments: new SegmentStore(opts.matchShare ?? 0.6),
    calls: new CallLog(outlets.calls),
    identifiers: new IdentifierAuditor(opts.recordReceivedIdentifiers),
    limiter: limit > 0 && Number.isFinite(limit) ? new SlidingWindowLimiter(limit) : undefined,
    tokenTtlSeconds: opts.tokenTtlSeconds ?? 900,
    maxBodyBytes: opts.maxBodyBytes ?? 16 * 1024 * 1024,
    apiVersion: opts.apiVersion ?? clientDefaultApiVersion(),
    contractVersion: contractVersionOf(Object.keys(contract.definition.paths ?? {})),
    lifecycle: { phase: opts.versionPhase ?? 'supported', sunset: parseSunset(opts.sunset) },
    injector: undefined,
  };
}

/** Puts a plan in force (counters and random sequence restart), or clears it. */
export function installFaults(state: SandboxState, plan: FaultPlan | undefined): void {
  // Re-validating TS literals too: a typo in a test's plan should fail loudly, not be ignored.
  state.injector = plan ? new FaultInjector(parseFaultPlan(plan)) : undefined;
}

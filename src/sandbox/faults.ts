/**
 * Fault plans for the Criteo sandbox: the failures a test wants the fake Criteo
 * to produce, either scripted ("the 3rd PATCH answers 503") or random but seeded,
 * so a failing run can be replayed exactly.
 *
 * This module only decides *what* goes wrong for a given call; fault-replies.ts
 * turns the decision into HTTP behaviour.
 */
import { z } from 'zod';

/** The operations a fault can target; they match `SandboxCall.operation`. */
const FAULT_OPERATIONS = ['token', 'patch', 'delete', 'statistics', 'search', 'create'] as const;
type FaultOperation = (typeof FAULT_OPERATIONS)[number];

/** Random faults, drawn from a seeded PRNG once per eligible call. */
interface RandomFaults {
  /** Share of calls answered with one of `errorStatuses` (0–1). */
  errorRate?: number;
  /** Statuses picked uniformly for `errorRate` faults; default [500, 502, 503, 504]. */
  errorStatuses?: number[];
  /** Share of calls answered 429 with x-ratelimit headers, regardless of the real limiter. */
  rateLimitBurstRate?: number;
  /** Share of calls whose answer is delayed by `slowMs` (the change is applied at once). */
  slowRate?: number;
  slowMs?: number;
  /** Share of calls never answered (the change is not applied). */
  hangRate?: number;
  /** Operations the random faults apply to; default every API operation except `token`. */
  operations?: FaultOperation[];
}

/** One scripted fault: fires for calls nth .. nth+times-1 of `operation`. */
interface ScriptedFault {
  operation: FaultOperation;
  /** 1-based count of calls of that operation since the plan was set. */
  nth: number;
  /** How many consecutive calls the step covers; default 1. */
  times?: number;
  /** Status to answer instead of handling the call (>= 400). 2xx is allowed as documentation next to applyThen*. */
  status?: number;
  /** Never answer; the change is not applied. */
  hang?: boolean;
  /** Apply the change, then answer this error status: a lost response. */
  applyThenFail?: number;
  /** Apply the change, then never answer: a response lost to a client timeout. */
  applyThenHang?: boolean;
  /** Delay the answer by this many ms (combinable with status / applyThenFail). */
  delayMs?: number;
}

export interface FaultPlan {
  /** Seed of the PRNG behind `random`; default 1. */
  seed?: number;
  random?: RandomFaults;
  /** Lifetime of tokens issued while this plan is set (overrides the sandbox option). */
  tokenTtlSeconds?: number;
  /** The token endpoint answers 401 invalid_client to everyone. */
  refuseCredentials?: boolean;
  /** Segments answering 403 (access-control), as if the advertiser's consent was withdrawn. */
  forbiddenSegments?: string[];
  /** Segments answering 404, as if deleted on Criteo's side. */
  unknownSegments?: string[];
  script?: ScriptedFault[];
  /** How far ahead x-ratelimit-reset points on an injected 429; default 2 s. */
  rateLimitResetSeconds?: number;
}

/** A plan after validation, with every default filled in. */
interface ResolvedFaultPlan {
  seed: number;
  random?: Required<RandomFaults>;
  tokenTtlSeconds?: number;
  refuseCredentials: boolean;
  forbiddenSegments: string[];
  unknownSegments: string[];
  script: Array<ScriptedFault & { times: number }>;
  rateLimitResetSeconds: number;
}

class FaultPlanError extends Error {
  override readonly name = 'FaultPlanError';
}

const DEFAULT_RANDOM_OPERATIONS: FaultOperation[] = ['patch', 'delete', 'statistics', 'search', 'create'];

const rate = z.number().min(0).max(1);
const errorStatus = z.number().int().min(400).max(599);
const operation = z.enum(FAULT_OPERATIONS);

const randomSchema = z
  .strictObject({
    errorRate: rate.default(0),
    errorStatuses: z.array(errorStatus).min(1).default([500, 502, 503, 504]),
    rateLimitBurstRate: rate.default(0),
    slowRate: rate.default(0),
    slowMs: z.number().int().min(0).max(600_000).default(2000),
    hangRate: rate.default(0),
    operations: z.array(operation).min(1).default(DEFAULT_RANDOM_OPERATIONS),
  })
  // One draw picks hang / 429 / error, so their shares must fit in one unit interval.
  .refine((r) => r.hangRate + r.rateLimitBurstRate + r.errorRate <= 1, {
    message: 'hangRate + rateLimitBurstRate + errorRate must not exceed 1',
    path: ['errorRate'],
  });

const scriptStepSchema = z
  .strictObject({
    operation,
    nth: z.number().int().min(1),
    times: z.number().int().min(1).default(1),
    status: z.number().int().min(200).max(599).optional(),
    hang: z.boolean().optional(),
    applyThenFail: errorStatus.optional(),
    applyThenHang: z.boolean().optional(),
    delayMs: z.number().int().min(0).max(600_000).optional(),
  })
  .superRefine((step, ctx) => {
    const failsWithStatus = step.status !== undefined && step.status >= 400;
    const actions = [failsWithStatus, step.hang === true, step.applyThenFail !== undefined, step.applyThenHang === true];
    if (actions.filter(Boolean).length > 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'choose one of status (>= 400), hang, applyThenFail, applyThenHang',
        path: ['status'],
      });
    }
    const hasAnything = step.status !== undefined || step.delayMs !== undefined || actions.some(Boolean);
    if (!hasAnything) {
      ctx.addIssue({
        code: 'custom',
        message: 'a step needs one of status, hang, applyThenFail, applyThenHang, delayMs',
        path: ['status'],
      });
    }
  });

const faultPlanSchema = z.strictObject({
  seed: z.number().int().default(1),
  random: randomSchema.optional(),
  tokenTtlSeconds: z.number().int().min(1).optional(),
  refuseCredentials: z.boolean().default(false),
  forbiddenSegments: z.array(z.string()).default([]),
  unknownSegments: z.array(z.string()).default([]),
  script: z.array(scriptStepSchema).default([]),
  rateLimitResetSeconds: z.number().int().min(1).max(3600).default(2),
});

// Compile-time guard: the hand-written interfaces above stay in step with the schema.
type AssertAssignable<T extends U, U> = T;
type _ResolvedMatchesSchema = AssertAssignable<z.output<typeof faultPlanSchema>, ResolvedFaultPlan>;
type _InputMatchesSchema = AssertAssignable<FaultPlan, z.input<typeof faultPlanSchema>>;

/** Renders a zod path like ['script', 0, 'status'] as `script[0].status`. */
function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(plan)' : out;
}

/**
 * Validates a fault plan (JSON from a file, an HTTP body or a TS literal) and fills
 * in defaults. Throws a FaultPlanError whose message names the first bad field.
 */
export function parseFaultPlan(json: unknown): ResolvedFaultPlan {
  const result = faultPlanSchema.safeParse(json);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) throw new FaultPlanError('invalid fault plan');
  const where =
    issue.code === 'unrecognized_keys' ? `${formatPath([...issue.path, issue.keys[0] ?? ''])}: unknown field` : `${formatPath(issue.path)}: ${issue.message}`;
  throw new FaultPlanError(`invalid fault plan: ${where}`);
}

/** mulberry32: tiny, fast, good enough for fault dice, and deterministic per seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type FaultAction = 'pass' | 'fail' | 'hang' | 'apply-then-fail' | 'apply-then-hang';

export interface FaultDecision {
  action: FaultAction;
  /** Status to answer for 'fail' and 'apply-then-fail'. */
  status?: number;
  /** Extra delay before the answer is written (0 = none). */
  delayMs: number;
  /** Where the decision came from, for the call log. */
  source: 'script' | 'random' | null;
  /** 1-based index of this call among calls of its operation since the plan was set. */
  nth: number;
}

/**
 * Holds one plan's mutable state: per-operation call counters and the PRNG.
 * A new injector is made each time a plan is set, so `nth` and the random
 * sequence restart with the plan.
 */
export class FaultInjector {
  private readonly counts = new Map<FaultOperation, number>();
  private readonly random: () => number;
  private readonly forbidden: ReadonlySet<string>;
  private readonly unknown: ReadonlySet<string>;

  constructor(readonly plan: ResolvedFaultPlan) {
    this.random = mulberry32(plan.seed);
    this.forbidden = new Set(plan.forbiddenSegments);
    this.unknown = new Set(plan.unknownSegments);
  }

  isForbidden(segmentId: string): boolean {
    return this.forbidden.has(segmentId);
  }

  isUnknown(segmentId: string): boolean {
    return this.unknown.has(segmentId);
  }

  /** Counts the call and decides its fate. Call exactly once per call of a known operation. */
  decide(op: FaultOperation): FaultDecision {
    const nth = (this.counts.get(op) ?? 0) + 1;
    this.counts.set(op, nth);
    const scripted = this.scripted(op, nth);
    if (scripted) return scripted;
    return this.randomDecision(op, nth);
  }

  private scripted(op: FaultOperation, nth: number): FaultDecision | undefined {
    const step = this.plan.script.find((s) => s.operation === op && nth >= s.nth && nth < s.nth + s.times);
    if (!step) return undefined;
    const delayMs = step.delayMs ?? 0;
    const base = { delayMs, source: 'script' as const, nth };
    if (step.hang) return { ...base, action: 'hang' };
    if (step.applyThenHang) return { ...base, action: 'apply-then-hang' };
    if (step.applyThenFail !== undefined) return { ...base, action: 'apply-then-fail', status: step.applyThenFail };
    if (step.status !== undefined && step.status >= 400) return { ...base, action: 'fail', status: step.status };
    return { ...base, action: 'pass' };
  }

  private randomDecision(op: FaultOperation, nth: number): FaultDecision {
    const r = this.plan.random;
    const pass: FaultDecision = { action: 'pass', delayMs: 0, source: null, nth };
    if (!r || !r.operations.includes(op)) return pass;
    // Always draw three numbers so the outcome of call k depends only on k, not on
    // which branches earlier calls took.
    const category = this.random();
    const pick = this.random();
    const slow = this.random();
    const delayMs = slow < r.slowRate ? r.slowMs : 0;
    const base = { delayMs, source: 'random' as const, nth };
    if (category < r.hangRate) return { ...base, action: 'hang', delayMs: 0 };
    if (category < r.hangRate + r.rateLimitBurstRate) return { ...base, action: 'fail', status: 429 };
    if (category < r.hangRate + r.rateLimitBurstRate + r.errorRate) {
      const status = r.errorStatuses[Math.floor(pick * r.errorStatuses.length)] ?? 500;
      return { ...base, action: 'fail', status };
    }
    return delayMs > 0 ? { ...base, action: 'pass' } : pass;
  }
}

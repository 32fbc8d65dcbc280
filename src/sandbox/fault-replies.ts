/**
 * Turns a fault decision (faults.ts decides) into what the client sees: an error
 * instead of the work, the work then an error or silence, silence alone, or a delay.
 */
import type { ServerResponse } from 'node:http';
import type { CallLog } from './calls.js';
import type { FaultDecision } from './faults.js';
import type { Reply } from './http.js';
import { ApiProblem } from './problems.js';
import type { SandboxState } from './state.js';
import type { SandboxCall } from './types.js';

/** The envelope an injected fault answers with, by status class. */
export function faultProblem(status: number, rateLimitHeaders: Record<string, string>): ApiProblem {
  if (status === 429) {
    return new ApiProblem(429, 'quota', 'rate-limit-exceeded', 'Too many requests', 'Rate limit exceeded (injected)', undefined, rateLimitHeaders);
  }
  if (status >= 500) {
    return new ApiProblem(status, 'availability', 'service-unavailable', 'Service unavailable', `Injected fault: HTTP ${status}`);
  }
  if (status === 401) {
    return new ApiProblem(401, 'authentication', 'authorization-token-expired', 'Authorization token expired', 'Injected fault: token expired');
  }
  if (status === 403) {
    return new ApiProblem(403, 'access-control', 'advertiser-access-denied', 'Access denied', 'Injected fault: access denied');
  }
  if (status === 404) {
    return new ApiProblem(404, 'validation', 'audience-segment-not-found', 'Audience segment not found', 'Injected fault: not found');
  }
  return new ApiProblem(status, 'validation', 'invalid-request', 'Invalid request', `Injected fault: HTTP ${status}`);
}

/** Headers of an injected 429: reset a few seconds ahead, as a real limiter would say. */
export function injectedRateHeaders(state: Pick<SandboxState, 'injector' | 'limiter'>): Record<string, string> {
  const resetSeconds = state.injector?.plan.rateLimitResetSeconds ?? 2;
  return {
    'x-ratelimit-limit': String(state.limiter?.limit ?? 250),
    'x-ratelimit-remaining': '0',
    'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + resetSeconds),
  };
}

/**
 * Answers a recorded call as the decision says. `serve` does the work and builds the
 * real reply (it is not called for 'hang' and 'fail'); `faultReply` builds the error
 * answered instead, for 'fail' and 'apply-then-fail'.
 */
export function answerUnderFault(
  calls: CallLog,
  res: ServerResponse,
  call: SandboxCall,
  decision: FaultDecision | undefined,
  serve: () => Reply,
  faultReply: (status: number) => Reply,
): void {
  if (decision?.action === 'hang') {
    call.fault = 'hang';
    return calls.hang(res);
  }
  if (decision?.action === 'fail' && decision.status !== undefined) {
    call.fault = 'fail';
    return calls.respond(res, call, faultReply(decision.status), decision.delayMs);
  }
  const reply = serve();
  if (decision?.action === 'apply-then-hang') {
    call.fault = 'apply-then-hang';
    return calls.hang(res);
  }
  if (decision?.action === 'apply-then-fail' && decision.status !== undefined) {
    call.fault = 'apply-then-fail';
    return calls.respond(res, call, faultReply(decision.status), decision.delayMs);
  }
  if (decision && decision.delayMs > 0) call.fault = 'slow';
  calls.respond(res, call, reply, decision?.delayMs ?? 0);
}

/**
 * Criteo's error answers: handlers throw an ApiProblem, and `envelope` turns it into
 * the `{ errors, warnings }` body Criteo sends, with a fresh traceId.
 */
import { randomUUID } from 'node:crypto';
import type { Reply } from './http.js';

type ProblemType = 'access-control' | 'authentication' | 'authorization' | 'availability' | 'deprecation' | 'quota' | 'validation';

/** Thrown inside handlers; turned into Criteo's error envelope. */
export class ApiProblem extends Error {
  constructor(
    readonly status: number,
    readonly type: ProblemType,
    readonly code: string,
    readonly title: string,
    readonly detail: string = title,
    readonly source?: Record<string, string>,
    readonly headers?: Record<string, string>,
  ) {
    super(`${status} ${code}: ${detail}`);
  }
}

/** 403 for an app without the advertiser's consent. */
export function accessDenied(detail: string): ApiProblem {
  return new ApiProblem(403, 'access-control', 'advertiser-access-denied', 'Access denied', detail);
}

export function routeNotFound(path: string): ApiProblem {
  return new ApiProblem(404, 'validation', 'route-not-found', 'Not found', `No route ${path}`);
}

export function envelope(problem: ApiProblem, instance: string): { reply: Reply; traceId: string } {
  const traceId = randomUUID();
  const error: Record<string, unknown> = {
    traceId,
    type: problem.type,
    code: problem.code,
    instance,
    title: problem.title,
    detail: problem.detail,
  };
  if (problem.source) error['source'] = problem.source;
  return { traceId, reply: { status: problem.status, body: { errors: [error], warnings: [] }, headers: problem.headers } };
}

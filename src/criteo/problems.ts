import type { CriteoProblem } from '../core/errors.js';

/**
 * Reading Criteo's answers: its JSON bodies, the error envelope of its API and
 * the RFC 6749 body of its token endpoint, and the reason a request got no
 * answer at all.
 */

/** An error answer: Criteo's API envelope (`errors`) or an OAuth error (`error`, `error_description`). */
export interface ErrorEnvelope {
  errors?: { traceId?: string | null; type?: string; code?: string; title?: string | null; detail?: string | null }[];
  error?: string;
  error_description?: string;
}

/** Response headers as undici gives them. */
export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** The body as JSON, or undefined when it is not JSON. */
export function safeJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** What an error answer says: its status, and the first error's code, title (at most 200 characters) and traceId. */
export function parseProblem(status: number, text: string): CriteoProblem {
  const env = safeJson<ErrorEnvelope>(text);
  const first = env?.errors?.[0];
  const problem: CriteoProblem = { status };
  const code = first?.code ?? env?.error;
  if (code) problem.code = code;
  const title = first?.title ?? env?.error_description;
  if (title) problem.title = title.slice(0, 200);
  if (first?.traceId) problem.traceId = first.traceId;
  return problem;
}

/** The log fields of an error answer. */
export function problemFields(problem: CriteoProblem): Record<string, unknown> {
  return { traceId: problem.traceId, code: problem.code };
}

/** Why a request got no answer, for the log and the error: TIMEOUT, or the network error's code. */
export function networkReason(error: unknown): string {
  const e = error as { code?: string; name?: string; message?: string };
  if (e.name === 'TimeoutError') return 'TIMEOUT';
  return e.code ?? e.name ?? e.message ?? 'network error';
}

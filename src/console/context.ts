import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import type { SyncDeps } from '../sync/run.js';
import type { PageContext } from './layout.js';
import type { ResyncRunner } from './resync.js';

/** What every route of the console shares: the job's wiring, the resync runner, and how a refusal is said. */

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated user (see auth.ts); set before any route runs. */
    consoleUser: string;
  }
}

export interface ConsoleContext {
  deps: SyncDeps;
  runner: ResyncRunner;
}

/** A request the console declines, with the one line that says why and the HTTP status that goes with it. */
export class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
  ) {
    super(message);
  }
}

export function pageContext(request: FastifyRequest, notice?: PageContext['notice']): PageContext {
  return { user: request.consoleUser, notice };
}

/** A list id from the path: digits only, else the page does not exist. */
export function segmentIdOf(request: FastifyRequest): string {
  const { id } = request.params as { id?: string };
  if (!id || !/^[1-9]\d{0,18}$/.test(id)) throw new Refusal(404, 'No such list', `"${id ?? ''}" is not a list id: list ids are numbers.`);
  return id;
}

export function sendHtml(reply: FastifyReply, html: string, status = 200): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
}

/** A one-line message picked by a code in the query string: a page never echoes text it was given. */
export function noticeOf(query: unknown, messages: Record<string, (value: string) => string>): PageContext['notice'] {
  const q = (query ?? {}) as Record<string, unknown>;
  for (const [key, message] of Object.entries(messages)) {
    const value = q[key];
    if (typeof value === 'string' && /^\d{1,19}$/.test(value)) return { kind: 'ok', text: message(value) };
  }
  return undefined;
}

/** A write route's options: its CSRF token (a form field, so read once the body is parsed) is checked before the handler runs. */
export function csrfChecked(app: FastifyInstance): RouteShorthandOptions {
  return { preHandler: (request, reply, done) => app.csrfProtection(request, reply, done) };
}

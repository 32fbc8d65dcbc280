/**
 * The Criteo API routes under /{version}/marketing-solutions: each call is recorded,
 * put through the fault plan, then routing (the served version, and 410 once it is
 * retired), authentication, rate limit and contract validation, before the operation
 * itself; every answer is checked against the contract, and every answer under the
 * served version carries its lifecycle headers (Deprecation, Sunset).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate, mayUse } from '../auth.js';
import { checkRequest, OPERATION_IDS } from '../contract.js';
import { answerUnderFault, faultProblem, injectedRateHeaders } from '../fault-replies.js';
import { bearerToken, safeDecode, type Reply } from '../http.js';
import { accessDenied, ApiProblem, routeNotFound } from '../problems.js';
import type { SegmentState } from '../segment-store.js';
import type { SandboxState } from '../state.js';
import type { SandboxCall, SandboxClient, SandboxOperation } from '../types.js';
import { contractPath, lifecycleHeaders, splitApiPath, versionNotFound, versionRetired } from '../version.js';
import { create, search } from './audience-segments.js';
import { deleteAll, patch, statistics } from './contact-list.js';

interface ApiContext {
  req: IncomingMessage;
  url: URL;
  /** The path as the contract writes it (the served version's paths are the contract version's). */
  path: string;
  body: Buffer | null;
  call: SandboxCall;
  operationId: string | undefined;
  rateHeaders: Record<string, string>;
}

export function handleApi(state: SandboxState, req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer | null, arrivedAt: number): void {
  const method = (req.method ?? 'GET').toUpperCase();
  const path = contractPath(url.pathname, state.apiVersion, state.contractVersion);
  const operationId = state.contract.matchOperation({ method, path, headers: {} })?.operationId;
  const operation: SandboxOperation = (operationId && OPERATION_IDS[operationId]) || 'unknown';
  const known = state.tokens.lookup(bearerToken(req));
  const call = state.calls.record(req, url.pathname, operation, known?.clientId ?? null, arrivedAt);
  const segmentId = /\/audience-segments\/([^/]+)\/contact-list/.exec(url.pathname)?.[1];
  if (segmentId !== undefined) call.segmentId = safeDecode(segmentId);
  const ctx: ApiContext = { req, url, path, body, call, operationId, rateHeaders: {} };

  const decision = operation === 'unknown' ? undefined : state.injector?.decide(operation);
  const served = splitApiPath(url.pathname)?.version === state.apiVersion;
  const lifecycle = served ? lifecycleHeaders(state.lifecycle) : {};
  const withLifecycle = (reply: Reply): Reply => ({ ...reply, headers: { ...reply.headers, ...lifecycle } });
  answerUnderFault(
    state.calls,
    res,
    call,
    decision,
    () => withLifecycle(checkedReply(state, ctx, operation)),
    (status) => withLifecycle(state.replies.checkedEnvelope(faultProblem(status, injectedRateHeaders(state)), url.pathname, operation, call)),
  );
}

/** The operation's reply, or the envelope of the problem it threw, checked against the contract. */
function checkedReply(state: SandboxState, ctx: ApiContext, operation: SandboxOperation): Reply {
  let reply: Reply;
  try {
    reply = state.replies.check(serveApi(state, ctx), operation, ctx.operationId);
  } catch (error) {
    if (!(error instanceof ApiProblem)) throw error;
    reply = state.replies.checkedEnvelope(error, ctx.url.pathname, operation, ctx.call);
  }
  reply.headers = { ...ctx.rateHeaders, ...reply.headers };
  return reply;
}

/** Routing, auth, rate limit, validation, then the operation itself. Throws ApiProblem. */
function serveApi(state: SandboxState, ctx: ApiContext): Reply {
  const { url, call } = ctx;
  const version = splitApiPath(url.pathname)?.version;
  if (version === undefined) throw routeNotFound(url.pathname);
  if (version !== state.apiVersion) throw versionNotFound(version, state.apiVersion);
  // Past its sunset the version answers every call 410, before authentication: nothing under it exists any more.
  if (state.lifecycle.phase === 'retired') throw versionRetired(state.apiVersion, state.lifecycle.sunset);
  if (!ctx.operationId) throw routeProblem(state, ctx);

  const client = authenticate(state.tokens, state.clients, ctx.req);
  call.clientId = client.clientId;
  enforceRateLimit(state, ctx, client.clientId);

  const parsedBody = parseJsonBody(state, ctx);
  validateRequest(state, ctx, parsedBody);

  switch (call.operation) {
    case 'patch':
      return patch(state, accessibleSegment(state, client, call.segmentId), parsedBody, call);
    case 'delete':
      return deleteAll(accessibleSegment(state, client, call.segmentId));
    case 'statistics':
      return statistics(accessibleSegment(state, client, call.segmentId));
    case 'search':
      return search(state, client, parsedBody, url);
    case 'create':
      return create(state, client, parsedBody);
    default:
      throw routeNotFound(url.pathname);
  }
}

/** 405 when the path exists for another method, else 404. */
function routeProblem(state: SandboxState, ctx: ApiContext): ApiProblem {
  const otherMethod = ['GET', 'POST', 'PATCH', 'DELETE', 'PUT'].some(
    (m) => state.contract.matchOperation({ method: m, path: ctx.path, headers: {} }) !== undefined,
  );
  if (otherMethod) {
    return new ApiProblem(405, 'validation', 'method-not-allowed', 'Method not allowed', `${ctx.req.method} is not allowed on ${ctx.url.pathname}`);
  }
  return routeNotFound(ctx.url.pathname);
}

function enforceRateLimit(state: SandboxState, ctx: ApiContext, clientId: string): void {
  if (!state.limiter) return;
  const verdict = state.limiter.check(clientId, Date.now());
  ctx.rateHeaders = verdict.headers;
  if (!verdict.allowed) {
    throw new ApiProblem(
      429,
      'quota',
      'rate-limit-exceeded',
      'Too many requests',
      `More than ${state.limiter.limit} calls in 60 seconds`,
      undefined,
      verdict.headers,
    );
  }
}

function parseJsonBody(state: SandboxState, ctx: ApiContext): unknown {
  if (ctx.body === null) {
    throw new ApiProblem(413, 'validation', 'payload-too-large', 'Payload too large', `Request bodies are limited to ${state.maxBodyBytes} bytes`, undefined, {
      connection: 'close',
    });
  }
  if (ctx.body.length === 0) return undefined;
  // DELETE and statistics take no body; a stray one is ignored as Criteo's gateway would.
  if (ctx.call.operation === 'delete' || ctx.call.operation === 'statistics') return undefined;
  try {
    return JSON.parse(ctx.body.toString('utf8')) as unknown;
  } catch (error) {
    throw new ApiProblem(400, 'validation', 'invalid-json', 'Malformed JSON body', error instanceof Error ? error.message : 'Malformed JSON');
  }
}

/** Notes the identifier count on the call record, then checks the request against the contract. */
function validateRequest(state: SandboxState, ctx: ApiContext, body: unknown): void {
  const identifiers = (body as { data?: { attributes?: { identifiers?: unknown } } } | undefined)?.data?.attributes?.identifiers;
  if (Array.isArray(identifiers)) ctx.call.identifiers = identifiers.length;
  const request = { method: ctx.req.method ?? 'GET', path: ctx.path, query: ctx.url.search.replace(/^\?/, ''), body };
  checkRequest(state.contract, request, ctx.operationId);
}

/** The segment a contact-list call names, if it exists and the app may touch it; else 404 or 403. */
function accessibleSegment(state: SandboxState, client: SandboxClient, segmentId: string | undefined): SegmentState {
  const id = segmentId ?? '';
  const segment = state.segments.get(id);
  if (!segment || state.injector?.isUnknown(id)) {
    throw new ApiProblem(404, 'validation', 'audience-segment-not-found', 'Audience segment not found', `Audience segment ${id} does not exist`);
  }
  if (state.injector?.isForbidden(id) || !mayUse(client, segment.advertiserId)) {
    throw accessDenied(`This application has no consent for advertiser ${segment.advertiserId} (audience segment ${id})`);
  }
  return segment;
}

/**
 * POST /oauth2/token: the client-credentials grant (RFC 6749 §4.4). Its own errors use
 * RFC 6749 bodies; quota and availability errors use Criteo's envelope.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { answerUnderFault, faultProblem, injectedRateHeaders } from '../fault-replies.js';
import { basicCredentials, type Reply } from '../http.js';
import { ApiProblem } from '../problems.js';
import type { SandboxState } from '../state.js';
import type { SandboxCall } from '../types.js';

export const TOKEN_PATH = '/oauth2/token';

/** The answer to an injected token fault: an RFC 6749 body for 401 and other 4xx but 429, else Criteo's envelope. */
function tokenFaultReply(status: number, rateLimitHeaders: Record<string, string>): Reply | ApiProblem {
  if (status === 401) return { status, body: { error: 'invalid_client', error_description: 'Injected fault: client refused' } };
  if (status >= 400 && status < 500 && status !== 429) {
    return { status, body: { error: 'invalid_request', error_description: `Injected fault: HTTP ${status}` } };
  }
  return faultProblem(status, rateLimitHeaders);
}

export function handleToken(state: SandboxState, req: IncomingMessage, res: ServerResponse, body: Buffer | null, arrivedAt: number): void {
  const form = new URLSearchParams(body?.toString('utf8') ?? '');
  const basic = basicCredentials(req);
  const clientId = basic?.id ?? form.get('client_id') ?? '';
  const secret = basic?.secret ?? form.get('client_secret') ?? '';
  const call = state.calls.record(req, TOKEN_PATH, 'token', state.clients.has(clientId) ? clientId : null, arrivedAt);
  const decision = state.injector?.decide('token');
  answerUnderFault(
    state.calls,
    res,
    call,
    decision,
    () => issueToken(state, req, body, form, clientId, secret),
    (status) => tokenReplyFor(state, tokenFaultReply(status, injectedRateHeaders(state)), call),
  );
}

function tokenReplyFor(state: SandboxState, result: Reply | ApiProblem, call: SandboxCall): Reply {
  if (!(result instanceof ApiProblem)) return result;
  return state.replies.checkedEnvelope(result, TOKEN_PATH, 'token', call);
}

function issueToken(state: SandboxState, req: IncomingMessage, body: Buffer | null, form: URLSearchParams, clientId: string, secret: string): Reply {
  const oauthError = (status: number, error: string, description: string): Reply => ({
    status,
    body: { error, error_description: description },
    headers: { 'cache-control': 'no-store' },
  });
  if (req.method !== 'POST') return oauthError(405, 'invalid_request', 'Use POST');
  if (body === null) return oauthError(413, 'invalid_request', 'Body too large');
  const contentType = req.headers['content-type'] ?? '';
  if (!contentType.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    return oauthError(400, 'invalid_request', 'Content-Type must be application/x-www-form-urlencoded');
  }
  if (form.get('grant_type') !== 'client_credentials') {
    return oauthError(400, 'unsupported_grant_type', 'grant_type must be client_credentials');
  }
  if (state.injector?.plan.refuseCredentials) return oauthError(401, 'invalid_client', 'Client authentication failed');
  const client = state.clients.get(clientId);
  if (!client || client.clientSecret !== secret) return oauthError(401, 'invalid_client', 'Client authentication failed');

  const ttl = state.injector?.plan.tokenTtlSeconds ?? state.tokenTtlSeconds;
  const token = state.tokens.issue(client.clientId, ttl);
  // Criteo's answer holds a refresh_token, and its SDKs read it unconditionally: an opaque value, never stored nor logged.
  const refreshToken = randomBytes(24).toString('base64url');
  return {
    status: 200,
    body: { access_token: token, token_type: 'Bearer', expires_in: ttl, refresh_token: refreshToken },
    headers: { 'cache-control': 'no-store' },
  };
}

/**
 * Who is calling and what they may touch: the apps (clients), the bearer tokens issued
 * to them, and the advertisers that gave each app their consent.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { bearerToken } from './http.js';
import { ApiProblem } from './problems.js';
import type { SandboxClient } from './types.js';

/** The app the sandbox knows when its options name none. */
export const DEFAULT_CLIENT: SandboxClient = { clientId: 'sandbox-client', clientSecret: 'sandbox-secret', advertiserIds: '*' };

interface IssuedToken {
  clientId: string;
  expiresAt: number;
}

export class TokenStore {
  private readonly tokens = new Map<string, IssuedToken>();

  /** Mints a token for `clientId`, valid `ttlSeconds` from now. */
  issue(clientId: string, ttlSeconds: number): string {
    const token = randomBytes(24).toString('base64url');
    this.prune();
    this.tokens.set(token, { clientId, expiresAt: Date.now() + ttlSeconds * 1000 });
    return token;
  }

  /** The token as issued, expired or not; undefined for an unknown or absent one. */
  lookup(token: string | undefined): IssuedToken | undefined {
    return token ? this.tokens.get(token) : undefined;
  }

  /** Long runs with short TTLs mint many tokens; forget ones expired for over an hour. */
  private prune(): void {
    if (this.tokens.size < 1000) return;
    const cutoff = Date.now() - 3_600_000;
    for (const [token, issued] of this.tokens) if (issued.expiresAt < cutoff) this.tokens.delete(token);
  }
}

/** The client behind the request's bearer token; throws Criteo's 401 when there is none or it expired. */
export function authenticate(tokens: TokenStore, clients: ReadonlyMap<string, SandboxClient>, req: IncomingMessage): SandboxClient {
  const issued = tokens.lookup(bearerToken(req));
  if (!issued) {
    throw new ApiProblem(401, 'authentication', 'authorization-token-invalid', 'Authorization token is invalid', 'Missing or unknown bearer token');
  }
  if (Date.now() >= issued.expiresAt) {
    throw new ApiProblem(
      401,
      'authentication',
      'authorization-token-expired',
      'Authorization token has expired',
      'The bearer token has expired; request a new one',
    );
  }
  const client = clients.get(issued.clientId);
  if (!client) throw new ApiProblem(401, 'authentication', 'authorization-token-invalid', 'Authorization token is invalid', 'Client no longer exists');
  return client;
}

export function mayUse(client: SandboxClient, advertiserId: string): boolean {
  return client.advertiserIds === '*' || client.advertiserIds.includes(advertiserId);
}

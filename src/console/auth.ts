import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { ConsoleSettings } from '../core/config.js';

/**
 * Who is asking. One of, in this order: the authenticating reverse proxy's
 * user header, believed only on a connection from the proxy's own address;
 * a bearer token; basic credentials. With none configured (possible only on
 * loopback: config refuses the rest) every request is the local user. Reading
 * needs the same authentication as writing: every request passes here.
 */

export type Verdict = { user: string } | { refused: string };

/** What a user name may hold: it is recorded in `runs.trigger` (console:NAME) and shown on pages. */
const USER_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

/** The user of a console with no authentication configured (loopback only). */
export const LOCAL_USER = 'local';

export interface AuthRequest {
  headers: IncomingHttpHeaders;
  /** The connection's peer, as the socket has it (never a forwarded header). */
  remoteAddress: string | undefined;
}

export function authenticator(settings: ConsoleSettings): (request: AuthRequest) => Verdict {
  const token = settings.token === undefined ? undefined : digest(settings.token);
  const users = new Map(settings.basicUsers.map((u) => [u.user, digest(u.password)]));
  const open = !token && users.size === 0 && !settings.trustedProxy;
  const headerName = settings.userHeader.toLowerCase();
  return (request) => {
    if (open) return { user: LOCAL_USER };
    if (settings.trustedProxy && peer(request.remoteAddress) === settings.trustedProxy) {
      const named = request.headers[headerName];
      if (typeof named !== 'string' || named === '') return { refused: `the proxy did not say who you are (no ${settings.userHeader} header)` };
      return USER_NAME.test(named) ? { user: named } : { refused: `the proxy's ${settings.userHeader} header is not a user name this console accepts` };
    }
    const [scheme, credentials] = (request.headers.authorization ?? '').split(/\s+/, 2);
    if (token && scheme?.toLowerCase() === 'bearer' && credentials && same(digest(credentials), token)) return { user: 'token' };
    if (users.size > 0 && scheme?.toLowerCase() === 'basic' && credentials) {
      const decoded = Buffer.from(credentials, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const expected = users.get(decoded.slice(0, colon));
      if (colon > 0 && expected && same(digest(decoded.slice(colon + 1)), expected)) return { user: decoded.slice(0, colon) };
    }
    return { refused: 'sign in first: this console needs your user name and password, or its token' };
  };
}

/** The challenge a refused browser gets: basic credentials prompt for a name and password. */
export function challengeOf(settings: ConsoleSettings): string {
  return settings.basicUsers.length > 0 ? 'Basic realm="audience-sync console", charset="UTF-8"' : 'Bearer realm="audience-sync console"';
}

/** An IPv4 peer on a dual-stack socket reads ::ffff:10.0.0.5. */
function peer(address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') ? address.slice(7) : address;
}

/** Compared as digests: equal lengths, so timingSafeEqual leaks neither the value nor its length. */
function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

function same(a: Buffer, b: Buffer): boolean {
  return timingSafeEqual(a, b);
}

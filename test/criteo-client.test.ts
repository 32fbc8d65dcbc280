import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type CriteoSettings } from '../src/core/config.js';
import { CriteoClient, callTrace } from '../src/criteo/client.js';
import { AuthenticationError, ListRejectedError, TransientError } from '../src/core/errors.js';
import type { Logger } from '../src/core/logger.js';
import { RateLimiter } from '../src/criteo/rate-limiter.js';
import { startSandbox, type Sandbox, type SandboxCall, type SandboxOptions } from '../src/sandbox/server.js';
import { captureLog, startTcpProxy, watchTokens, type TcpProxy } from './observe.js';

/**
 * The Criteo client alone, over real HTTP: against the sandbox (Criteo's
 * contract plus its fault plan), a TCP proxy for connection resets and
 * socket counts, and a tiny scripted server for headers the sandbox never
 * sends (Retry-After). No database.
 */

const CLIENT_ID = 'client-test';
const CLIENT_SECRET = 'client-secret-never-in-logs';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const ids = (n: number, prefix = 'u') => Array.from({ length: n }, (_, i) => sha(`${prefix}${i}@example.com`));

function settingsFor(url: string, env: Record<string, string> = {}): CriteoSettings {
  return loadConfig(
    {
      CRITEO_API_URL: url,
      CRITEO_CLIENT_ID: CLIENT_ID,
      CRITEO_CLIENT_SECRET: CLIENT_SECRET,
      CRITEO_RETRY_BASE_MS: '5',
      CRITEO_MAX_CALLS_PER_MINUTE: '100000',
      ...env,
    },
    { database: false, criteo: true },
  ).criteo;
}

async function caught(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail');
}

let sandbox: Sandbox;
let client: CriteoClient | undefined;
const closers: (() => Promise<unknown>)[] = [];

async function withSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  sandbox = await startSandbox({
    clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, advertiserIds: '*' }],
    segments: [
      { id: '501', advertiserId: '1' },
      { id: '502', advertiserId: '1' },
      { id: '503', advertiserId: '1' },
    ],
    rateLimitPerMinute: 0,
    ...opts,
  });
  closers.push(() => sandbox.close());
  return sandbox;
}

function newClient(url: string, env: Record<string, string> = {}, log: Logger = pino({ level: 'silent' }), limiter?: RateLimiter): CriteoClient {
  client = new CriteoClient(settingsFor(url, env), log, limiter);
  const c = client;
  closers.push(() => c.close());
  return c;
}

const apiCalls = (sb: Sandbox, from = 0): SandboxCall[] => sb.calls.slice(from).filter((c) => c.operation !== 'token');
const tokenCalls = (sb: Sandbox, from = 0): SandboxCall[] => sb.calls.slice(from).filter((c) => c.operation === 'token');

beforeEach(() => {
  client = undefined;
});
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!().catch(() => {});
});

describe('the client logs each request once, at its end', () => {
  it('one line per HTTP request with operation, list, batch size, attempt, status, wait, duration, traceId; never a token, the secret or an identifier', async () => {
    const sb = await withSandbox({
      faults: {
        rateLimitResetSeconds: 1,
        script: [
          { operation: 'patch', nth: 2, status: 503 },
          { operation: 'patch', nth: 3, status: 429 },
          { operation: 'patch', nth: 4, status: 401 },
        ],
      },
    });
    const capture = captureLog();
    const watch = watchTokens();
    const c = newClient(sb.url, {}, capture.log);
    const batches = [ids(50, 'a'), ids(40, 'b'), ids(30, 'c')];
    try {
      for (const batch of batches) await c.amendContactList('501', 'add', batch);
      await c.getStatistics('501');
    } finally {
      watch.stop();
    }
    expect(sb.members('501').size).toBe(120);

    const lines = capture.lines.filter((l) => l['msg'] === 'criteo call');
    expect(lines).toHaveLength(capture.lines.length); // the client logs nothing else
    // Sequential calls: the log and the sandbox's record of arrivals line up one to one.
    expect(lines.map((l) => [l['operation'], l['status']])).toEqual(sb.calls.map((c) => [c.operation, c.status]));
    expect(lines.map((l) => l['status'])).toEqual([200, 200, 503, 429, 401, 200, 200, 200, 200]);
    for (const [i, line] of lines.entries()) {
      const call = sb.calls[i]!;
      expect(line).toEqual(
        expect.objectContaining({ attempt: expect.any(Number), waitMs: expect.any(Number), durationMs: expect.any(Number), next: expect.any(String) }),
      );
      if (call.operation === 'patch') expect(line).toMatchObject({ list: '501', op: 'add', batchSize: expect.toBeOneOf([50, 40, 30]) });
      if (call.status >= 400) expect(line).toMatchObject({ traceId: call.traceId, code: expect.any(String) });
    }
    // The second batch: 503 (retry), 429 (wait), 401 (renew the token), then done, attempts 1..4.
    const second = lines.filter((l) => l['operation'] === 'patch' && l['batchSize'] === 40);
    expect(second.map((l) => [l['attempt'], l['status'], l['next']])).toEqual([
      [1, 503, 'retry'],
      [2, 429, 'wait'],
      [3, 401, 'renew-token'],
      [4, 200, 'done'],
    ]);
    // The 429 wait shows on the line of the request that followed it, and in the call's totals.
    expect(second[2]!['waitMs'] as number).toBeGreaterThanOrEqual(second[1]!['nextWaitMs'] as number);
    expect(second[3]).toMatchObject({ attempts: 4, totalWaitMs: expect.any(Number), totalDurationMs: expect.any(Number) });
    expect(second[3]!['totalWaitMs'] as number).toBeGreaterThanOrEqual(900);

    expect(watch.tokens.size).toBe(2);
    const text = capture.raw.join('\n');
    for (const token of watch.tokens) expect(text).not.toContain(token);
    expect(text).not.toContain(CLIENT_SECRET);
    expect(text).not.toMatch(/[0-9a-f]{64}/);
  });
});

describe('connections and concurrency', () => {
  it('reuses keep-alive connections across batches and calls', async () => {
    const sb = await withSandbox();
    const proxy: TcpProxy = await startTcpProxy(sb.port);
    closers.push(() => proxy.close());
    const one = newClient(proxy.url, { CRITEO_CONCURRENCY: '1' });
    for (let i = 0; i < 20; i++) await one.amendContactList('501', 'add', ids(100, `k${i}-`));
    await one.getStatistics('501');
    expect(sb.calls).toHaveLength(22);
    expect(proxy.connections).toBe(1); // the token, 20 PATCHes and the statistics over one socket

    const four = newClient(proxy.url, { CRITEO_CONCURRENCY: '4' });
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 ? four.getStatistics('502') : four.amendContactList('502', 'add', ids(20, `p${round}-${i}-`)))),
      );
    }
    expect(sb.calls).toHaveLength(22 + 61);
    expect(proxy.connections).toBeLessThanOrEqual(1 + 4); // never more sockets than requests in flight, kept across rounds
  });

  it('never has more than CRITEO_CONCURRENCY requests in flight', async () => {
    const sb = await withSandbox({ faults: { random: { slowRate: 1, slowMs: 40 } } });
    const c = newClient(sb.url, { CRITEO_CONCURRENCY: '3' });
    await Promise.all(Array.from({ length: 24 }, () => c.getStatistics('501')));
    const events = apiCalls(sb).flatMap((call) => [
      { t: call.at, d: 1 },
      { t: call.at + (call.durationMs ?? 0), d: -1 },
    ]);
    events.sort((a, b) => a.t - b.t || a.d - b.d);
    let now = 0;
    let most = 0;
    for (const e of events) most = Math.max(most, (now += e.d));
    expect(most).toBe(3);
  });
});

describe('5xx, timeouts and broken connections', () => {
  it('retries 500, 502, 503 and 504 with backoff, within CRITEO_MAX_ATTEMPTS', async () => {
    const sb = await withSandbox({
      faults: {
        script: [
          { operation: 'patch', nth: 1, status: 500 },
          { operation: 'patch', nth: 2, status: 502 },
          { operation: 'patch', nth: 3, status: 504 },
        ],
      },
    });
    const c = newClient(sb.url, { CRITEO_MAX_ATTEMPTS: '4' });
    const out = await c.amendContactList('501', 'add', ids(10));
    expect(out).toMatchObject({ status: 200, attempts: 4 });
    expect(sb.members('501').size).toBe(10);
  });

  it('gives up after CRITEO_MAX_ATTEMPTS, as transient and "may have applied", with the last traceId', async () => {
    const sb = await withSandbox({ faults: { script: [{ operation: 'patch', nth: 1, times: 100, status: 503 }] } });
    const c = newClient(sb.url, { CRITEO_MAX_ATTEMPTS: '3' });
    const error = await caught(c.amendContactList('501', 'add', ids(10)));
    expect(error).toBeInstanceOf(TransientError);
    expect((error as TransientError).mayHaveApplied).toBe(true);
    expect((error as TransientError).problem).toMatchObject({ status: 503, code: 'service-unavailable', traceId: apiCalls(sb).at(-1)!.traceId });
    expect(callTrace(error)).toMatchObject({ attempts: 3, mayHaveApplied: true });
    expect(apiCalls(sb)).toHaveLength(3);
  });

  it('a refusal after a 5xx still says "may have applied": the earlier attempt may have gone through', async () => {
    const sb = await withSandbox({
      faults: {
        rateLimitResetSeconds: 30,
        script: [
          { operation: 'patch', nth: 1, status: 503 },
          { operation: 'patch', nth: 2, status: 429 },
          { operation: 'patch', nth: 3, status: 503 },
          { operation: 'patch', nth: 4, status: 400 },
        ],
      },
    });
    const c = newClient(sb.url, { CRITEO_MAX_WAIT_SECONDS: '5' });
    const rateLimited = await caught(c.amendContactList('501', 'add', ids(5)));
    expect(rateLimited).toBeInstanceOf(TransientError);
    expect((rateLimited as TransientError).mayHaveApplied).toBe(true);
    const refused = await caught(c.amendContactList('501', 'add', ids(5)));
    expect(refused).toBeInstanceOf(ListRejectedError);
    expect(callTrace(refused)).toMatchObject({ attempts: 2, mayHaveApplied: true });
  });

  it('times out a request that is never answered, and retries it', async () => {
    const sb = await withSandbox({
      faults: {
        script: [
          { operation: 'patch', nth: 1, hang: true },
          // Answered, but later than the timeout: the change is applied, the answer lost.
          { operation: 'patch', nth: 4, status: 200, delayMs: 2500 },
        ],
      },
    });
    const c = newClient(sb.url, { CRITEO_TIMEOUT_SECONDS: '1' });
    const started = Date.now();
    const first = await c.amendContactList('501', 'add', ids(10, 'h'));
    expect(first.attempts).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    const second = await c.amendContactList('501', 'add', ids(10, 'i'));
    expect(second.attempts).toBe(1);
    const third = await c.amendContactList('501', 'add', ids(10, 'j'));
    expect(third.attempts).toBe(2);
    expect(sb.members('501').size).toBe(30);
  });

  it('after timeouts on every attempt, fails as transient and "may have applied"', async () => {
    const sb = await withSandbox({ faults: { script: [{ operation: 'patch', nth: 1, times: 5, applyThenHang: true }] } });
    const c = newClient(sb.url, { CRITEO_TIMEOUT_SECONDS: '1', CRITEO_MAX_ATTEMPTS: '2' });
    const error = await caught(c.amendContactList('501', 'add', ids(10)));
    expect(error).toBeInstanceOf(TransientError);
    expect((error as TransientError).mayHaveApplied).toBe(true);
    expect(error.message).toMatch(/no answer after 2 attempts/);
    expect(sb.members('501').size).toBe(10); // Criteo did apply it
  });

  it('retries a connection reset before the request reached Criteo, and after Criteo applied it', async () => {
    const sb = await withSandbox();
    const proxy = await startTcpProxy(sb.port);
    closers.push(() => proxy.close());
    const c = newClient(proxy.url, { CRITEO_MAX_ATTEMPTS: '3' });
    proxy.resetNext('PATCH', 1, 'before');
    expect((await c.amendContactList('501', 'add', ids(10, 'r'))).attempts).toBe(2);
    proxy.resetNext('PATCH', 1, 'after');
    expect((await c.amendContactList('501', 'add', ids(10, 's'))).attempts).toBe(2);
    expect(proxy.resets).toBe(2);
    expect(sb.members('501').size).toBe(20);

    proxy.resetNext('PATCH', 3, 'after');
    const error = await caught(c.amendContactList('502', 'add', ids(10, 't')));
    expect(error).toBeInstanceOf(TransientError);
    expect((error as TransientError).mayHaveApplied).toBe(true);
    expect(sb.members('502').size).toBe(10);
  });
});

describe('429', () => {
  it('waits until x-ratelimit-reset, does not spend the attempt budget, and lowers the rate once', async () => {
    const sb = await withSandbox({ faults: { rateLimitResetSeconds: 1, script: [{ operation: 'patch', nth: 1, times: 2, status: 429 }] } });
    const c = newClient(sb.url, { CRITEO_MAX_ATTEMPTS: '1', CRITEO_MAX_CALLS_PER_MINUTE: '100' });
    const out = await c.amendContactList('501', 'add', ids(10));
    expect(out).toMatchObject({ status: 200, attempts: 3 });
    const [a, b, ok] = apiCalls(sb);
    // Each wait ends at the announced reset: a whole second boundary at least a second ahead.
    expect(b!.at).toBeGreaterThanOrEqual((Math.ceil(a!.at / 1000) + 1) * 1000);
    expect(ok!.at).toBeGreaterThanOrEqual((Math.ceil(b!.at / 1000) + 1) * 1000);
    expect(out.waitedMs).toBeGreaterThanOrEqual(1900); // two waits of a second or more, both counted
    expect(c.limiter.effectiveLimit).toBe(80); // two 429s within a window: one slow-down
  });

  it('leaves the call transient, not applied, when the wait would exceed CRITEO_MAX_WAIT_SECONDS', async () => {
    const sb = await withSandbox({ faults: { rateLimitResetSeconds: 5, script: [{ operation: 'patch', nth: 1, times: 10, status: 429 }] } });
    const c = newClient(sb.url, { CRITEO_MAX_WAIT_SECONDS: '2' });
    const started = Date.now();
    const error = await caught(c.amendContactList('501', 'add', ids(10)));
    expect(Date.now() - started).toBeLessThan(1000); // no point waiting for a wait it will not finish
    expect(error).toBeInstanceOf(TransientError);
    expect((error as TransientError).mayHaveApplied).toBe(false);
    expect(error.message).toMatch(/CRITEO_MAX_WAIT_SECONDS \(2s\)/);
    expect((error as TransientError).problem).toMatchObject({ status: 429, code: 'rate-limit-exceeded', traceId: apiCalls(sb)[0]!.traceId });
    expect(apiCalls(sb)).toHaveLength(1);
  });

  it('honours Retry-After, else backs off exponentially; on the token endpoint too', async () => {
    const script = scriptedServer();
    await script.listen();
    closers.push(() => script.close());
    script.api.push(
      { status: 429, headers: { 'retry-after': '1' } },
      { status: 429 }, // no header at all: exponential backoff from CRITEO_RETRY_BASE_MS
      { status: 429 },
      { status: 200 },
    );
    script.token.push({ status: 429, headers: { 'retry-after': '1' } });
    const c = newClient(script.url, { CRITEO_MAX_ATTEMPTS: '1', CRITEO_RETRY_BASE_MS: '200' });
    const out = await c.amendContactList('501', 'add', ids(3));
    expect(out).toMatchObject({ status: 200, attempts: 4 });
    const t = script.arrivals.filter((a) => a.path !== '/oauth2/token').map((a) => a.at);
    const tokens = script.arrivals.filter((a) => a.path === '/oauth2/token').map((a) => a.at);
    expect(tokens).toHaveLength(2);
    expect(tokens[1]! - tokens[0]!).toBeGreaterThanOrEqual(990);
    expect(t[1]! - t[0]!).toBeGreaterThanOrEqual(990);
    expect(t[2]! - t[1]!).toBeGreaterThanOrEqual(95); // 2nd 429: 100..200 ms
    expect(t[3]! - t[2]!).toBeGreaterThanOrEqual(195); // 3rd 429: 200..400 ms
  });
});

describe('401', () => {
  it('renews the token once on an expired token and retries the call', async () => {
    const sb = await withSandbox({ faults: { script: [{ operation: 'patch', nth: 2, status: 401 }] } });
    const c = newClient(sb.url);
    await c.amendContactList('501', 'add', ids(5, 'x'));
    const out = await c.amendContactList('501', 'add', ids(5, 'y'));
    expect(out.attempts).toBe(2);
    expect(tokenCalls(sb)).toHaveLength(2);
    expect(sb.members('501').size).toBe(10);
  });

  it('calls that share one refused token request each fail with a trace of their own', async () => {
    const sb = await withSandbox();
    const c = newClient(sb.url, { CRITEO_CLIENT_SECRET: 'wrong-secret' });
    const [a, b] = await Promise.all([c.amendContactList('501', 'add', ids(5)), c.amendContactList('502', 'add', ids(5))].map(caught));
    expect(tokenCalls(sb)).toHaveLength(1);
    expect(a).toBeInstanceOf(AuthenticationError);
    expect(b).toBeInstanceOf(AuthenticationError);
    expect(b!.message).toBe(a!.message);
    expect(callTrace(a)).toMatchObject({ attempts: 1, mayHaveApplied: false });
    expect(callTrace(b)).toMatchObject({ attempts: 1, mayHaveApplied: false });
    expect(callTrace(a)).not.toBe(callTrace(b));
  });

  it('a second 401 is one authentication error, and the client then sends nothing more', async () => {
    const sb = await withSandbox({ faults: { script: [{ operation: 'patch', nth: 1, times: 100, status: 401 }] } });
    const c = newClient(sb.url, { CRITEO_MAX_ATTEMPTS: '5' });
    const error = await caught(c.amendContactList('501', 'add', ids(5)));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.message).toMatch(/rejected a freshly renewed token \(authorization-token-expired\)/);
    expect(tokenCalls(sb)).toHaveLength(2);
    expect(apiCalls(sb)).toHaveLength(2);
    // Other lists' calls that were queued fail at once, without a request: no retry storm.
    const before = sb.calls.length;
    const others = await Promise.all([c.amendContactList('502', 'add', ids(5)), c.getStatistics('503')].map(caught));
    expect(others.every((e) => e instanceof AuthenticationError)).toBe(true);
    expect(sb.calls.length).toBe(before);
  });

  it('a token endpoint refusing the credentials is one authentication error, with one token request', async () => {
    const sb = await withSandbox({ faults: { refuseCredentials: true } });
    const c = newClient(sb.url);
    const all = await Promise.all([c.amendContactList('501', 'add', ids(5)), c.amendContactList('502', 'add', ids(5)), c.getStatistics('503')].map(caught));
    expect(all.every((e) => e instanceof AuthenticationError)).toBe(true);
    expect(all[0]!.message).toBe('Criteo refused the client credentials (invalid_client): check CRITEO_CLIENT_ID and CRITEO_CLIENT_SECRET');
    expect(sb.calls).toHaveLength(1);
    expect(sb.calls[0]).toMatchObject({ operation: 'token', status: 401 });
    await caught(c.getStatistics('501'));
    expect(sb.calls).toHaveLength(1);
    // A scheduler's next run starts afresh.
    sb.setFaults(undefined);
    c.beginRun();
    expect((await c.getStatistics('501')).status).toBe(200);
  });

  it('takes its token after queueing for the rate limiter, so short-lived tokens never expire in the queue', async () => {
    // Tokens live 1 s; the limiter lets one call through every 600 ms, so the 6th call queues ~3 s.
    const sb = await withSandbox({ tokenTtlSeconds: 1 });
    const c = newClient(sb.url, { CRITEO_CONCURRENCY: '6' }, undefined, new RateLimiter(1, 600));
    const outs = await Promise.all(Array.from({ length: 6 }, (_, i) => c.amendContactList('501', 'add', ids(5, `q${i}-`))));
    expect(outs.every((o) => o.attempts === 1)).toBe(true);
    expect(apiCalls(sb).filter((call) => call.status === 401)).toEqual([]);
    expect(tokenCalls(sb).length).toBeGreaterThanOrEqual(3);
    expect(sb.members('501').size).toBe(30);
  });
});

describe('definite refusals: 400, 403, 404', () => {
  it.each([
    ['403', { forbiddenSegments: ['502'] }, 403, 'advertiser-access-denied', /no access to list 502/],
    ['404', { unknownSegments: ['502'] }, 404, 'audience-segment-not-found', /Criteo does not know list 502/],
    ['400', { script: [{ operation: 'patch' as const, nth: 1, status: 400 }] }, 400, 'invalid-request', /rejected the patch request \(HTTP 400\)/],
  ])('%s is final: no retry, the code, title and traceId kept', async (_name, faults, status, code, message) => {
    const sb = await withSandbox({ faults });
    const c = newClient(sb.url);
    const error = await caught(c.amendContactList('502', 'add', ids(5)));
    expect(error).toBeInstanceOf(ListRejectedError);
    expect(error.message).toMatch(message);
    const call = apiCalls(sb)[0]!;
    expect((error as ListRejectedError).problem).toEqual({ status, code, title: expect.any(String), traceId: call.traceId });
    expect(error.message).toContain(call.traceId!);
    expect(callTrace(error)).toMatchObject({ attempts: 1, mayHaveApplied: false });
    expect(apiCalls(sb)).toHaveLength(1);
  });
});

describe('a token endpoint that does not answer as OAuth', () => {
  it.each([
    ['a JSON null', 'null'],
    ['a JSON number', '42'],
    ['an HTML page', '<html>Bad Request</html>'],
  ])('answering HTTP 400 with %s is a wrong CRITEO_API_URL, said in one line, not a crash', async (_name, body) => {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => res.writeHead(400, { 'content-type': 'application/json' }).end(body));
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
    closers.push(() => new Promise<void>((done) => server.close(() => done())));
    const c = newClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const error = await caught(c.accessToken());
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.message).toMatch(/answered HTTP 400\): check CRITEO_API_URL$/);
  });
});

// ---------------------------------------------------------------------------

interface Scripted {
  status: number;
  headers?: Record<string, string>;
}

/** A bare HTTP server answering from a queue: for headers the sandbox does not send. */
function scriptedServer() {
  const api: Scripted[] = [];
  const token: Scripted[] = [];
  const arrivals: { path: string; at: number }[] = [];
  let server: Server;
  const self = {
    api,
    token,
    arrivals,
    url: '',
    async listen() {
      server = createServer((req: IncomingMessage, res: ServerResponse) => {
        arrivals.push({ path: req.url ?? '', at: Date.now() });
        req.resume();
        req.on('end', () => {
          const isToken = req.url === '/oauth2/token';
          const next = (isToken ? token : api).shift() ?? { status: 200 };
          const body =
            next.status !== 200
              ? { errors: [{ traceId: `trace-${arrivals.length}`, type: 'quota', code: 'rate-limit-exceeded', title: 'Too many requests' }], warnings: [] }
              : isToken
                ? { access_token: `tok-${arrivals.length}`, token_type: 'Bearer', expires_in: 900 }
                : { data: { type: 'ContactlistAmendment', attributes: { nbValidIdentifiers: 3, nbInvalidIdentifiers: 0 } }, errors: [], warnings: [] };
          res.writeHead(next.status, { 'content-type': 'application/json', ...next.headers });
          res.end(JSON.stringify(body));
        });
      });
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
      self.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
  return self;
}

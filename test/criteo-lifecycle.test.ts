import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/core/config.js';
import { ListRejectedError, NameTakenError, VersionRetiredError } from '../src/core/errors.js';
import type { Logger } from '../src/core/logger.js';
import { CriteoClient, callTrace } from '../src/criteo/client.js';
import { startSandbox, type Sandbox, type SandboxCall, type SandboxOptions } from '../src/sandbox/server.js';
import { captureLog } from './observe.js';

/**
 * The client's segment search and create, and what it hears of its API
 * version (Deprecation, Sunset, 410), over real HTTP against the sandbox (its
 * contract check refuses any request body outside Criteo's schema), and a bare
 * server for header forms the sandbox never sends. No database.
 */

const CLIENT_ID = 'lifecycle-client';
const CLIENT_SECRET = 'lifecycle-secret-never-in-logs';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!().catch(() => {});
});

async function withSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const sb = await startSandbox({ clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, advertiserIds: ['1', '2'] }], rateLimitPerMinute: 0, ...opts });
  closers.push(async () => {
    expect(sb.contractViolations).toEqual([]);
    await sb.close();
  });
  return sb;
}

function newClient(url: string, env: Record<string, string> = {}, log: Logger = pino({ level: 'silent' })): CriteoClient {
  const settings = loadConfig(
    { CRITEO_API_URL: url, CRITEO_CLIENT_ID: CLIENT_ID, CRITEO_CLIENT_SECRET: CLIENT_SECRET, CRITEO_RETRY_BASE_MS: '5', ...env },
    { database: false, criteo: true },
  ).criteo;
  const client = new CriteoClient(settings, log);
  closers.push(() => client.close());
  return client;
}

async function caught(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail');
}

const apiCalls = (sb: Sandbox): SandboxCall[] => sb.calls.filter((c) => c.operation !== 'token');
const segmentsOf = (advertiserId: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: String(from + i), advertiserId, name: `List ${from + i}` }));

describe('searchSegments', () => {
  it('reads every page, 100 a page, until totalItems; with name, description and dates', async () => {
    const sb = await withSandbox({ segments: [...segmentsOf('1', 1000, 230), ...segmentsOf('2', 5000, 20), ...segmentsOf('3', 9000, 5)] });
    const c = newClient(sb.url);
    const found = await c.searchSegments({ advertiserIds: ['1'], types: ['ContactList'] });
    expect(found).toHaveLength(230);
    expect(new Set(found.map((s) => s.id)).size).toBe(230);
    expect(found.every((s) => s.advertiserId === '1')).toBe(true);
    expect(found[0]).toEqual({
      id: '1000',
      advertiserId: '1',
      name: 'List 1000',
      type: 'ContactList',
      description: null,
      createdAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
      updatedAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    });
    expect(apiCalls(sb).map((call) => call.path)).toEqual(Array(3).fill('/2026-07/marketing-solutions/audience-segments/search'));
    expect(apiCalls(sb).every((call) => call.status === 200)).toBe(true);

    // Everything visible to these credentials (advertisers 1 and 2): 250, and 3 pages.
    expect(await c.searchSegments({})).toHaveLength(250);
    expect(apiCalls(sb)).toHaveLength(6);
  });

  it('stops at a full last page when totalItems says so, ANDs the filters, and makes no call for an empty filter', async () => {
    const sb = await withSandbox({ segments: [...segmentsOf('1', 1000, 200), ...segmentsOf('2', 5000, 3)] });
    const c = newClient(sb.url);
    expect(await c.searchSegments({ advertiserIds: ['1'] })).toHaveLength(200);
    expect(apiCalls(sb)).toHaveLength(2);
    const both = await c.searchSegments({ advertiserIds: ['2'], segmentIds: ['1000', '5001', '5002', '777'] });
    expect(both.map((s) => s.id)).toEqual(['5001', '5002']);
    const before = apiCalls(sb).length;
    expect(await c.searchSegments({ segmentIds: [] })).toEqual([]);
    expect(await c.searchSegments({ advertiserIds: [], types: ['ContactList'] })).toEqual([]);
    expect(apiCalls(sb)).toHaveLength(before);
  });

  it('reads a server that pages by less than asked whole, by totalItems, from where each page ended', async () => {
    const offsets: number[] = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/oauth2/token') return res.end(JSON.stringify({ access_token: 'access-token-0123456789', expires_in: 900 }));
        const offset = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('offset'));
        offsets.push(offset);
        const ids = Array.from({ length: Math.max(0, Math.min(30, 75 - offset)) }, (_, i) => String(100 + offset + i));
        const data = ids.map((id) => ({ id, type: 'AudienceSegment', attributes: { advertiserId: '1', name: `L${id}`, type: 'ContactList' } }));
        res.end(JSON.stringify({ data, meta: { limit: 30, offset, totalItems: 75 }, errors: [], warnings: [] }));
      });
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
    closers.push(() => new Promise<void>((done) => server.close(() => done())));
    const found = await newClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`).searchSegments({ advertiserIds: ['1'] });
    expect(found.map((s) => s.id)).toEqual(Array.from({ length: 75 }, (_, i) => String(100 + i)));
    expect(offsets).toEqual([0, 30, 60]);
  });

  it('findSegments still finds ids, 100 at a time, for preflight', async () => {
    const sb = await withSandbox({ segments: segmentsOf('1', 1000, 150) });
    const c = newClient(sb.url);
    const wanted = [...segmentsOf('1', 1000, 150).map((s) => s.id), '424242'];
    const found = await c.findSegments(wanted);
    expect(found.map((s) => s.id).sort()).toEqual(wanted.slice(0, 150).sort());
    expect(apiCalls(sb)).toHaveLength(2);
    expect(await c.findSegments([])).toEqual([]);
  });

  it('a search naming an advertiser the app may not use is a ListRejectedError naming no list', async () => {
    const sb = await withSandbox();
    const error = await caught(newClient(sb.url).searchSegments({ advertiserIds: ['9'] }));
    expect(error).toBeInstanceOf(ListRejectedError);
    expect(error.message).toMatch(/^no access to an advertiser searched under these credentials/);
  });
});

describe('createContactList', () => {
  it('creates one contact list and gives it back', async () => {
    const sb = await withSandbox();
    const c = newClient(sb.url);
    const list = await c.createContactList({ advertiserId: '1', name: 'Spring 2027', description: 'audience-sync: campaign spring' });
    expect(list).toMatchObject({ advertiserId: '1', name: 'Spring 2027', description: 'audience-sync: campaign spring', type: 'ContactList' });
    expect(sb.members(list.id).size).toBe(0);
    expect(list.createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    const [found] = await c.searchSegments({ segmentIds: [list.id] });
    expect(found).toEqual(list);
    expect((await c.amendContactList(list.id, 'add', [sha('a')])).body.nbValidIdentifiers).toBe(1);
  });

  it("a name the advertiser already uses is a NameTakenError, not retried; a search then finds the other creator's list", async () => {
    const sb = await withSandbox({ segments: [{ id: '700', advertiserId: '1', name: 'Taken' }] });
    const c = newClient(sb.url);
    const error = await caught(c.createContactList({ advertiserId: '1', name: 'Taken' }));
    expect(error).toBeInstanceOf(NameTakenError);
    expect(error).toBeInstanceOf(ListRejectedError);
    const taken = error as NameTakenError;
    const call = apiCalls(sb)[0]!;
    expect(taken).toMatchObject({ advertiserId: '1', segmentName: 'Taken', retryable: false });
    expect(taken.problem).toMatchObject({ status: 400, code: 'name-must-be-unique', traceId: call.traceId });
    expect(taken.message).toBe(`Criteo already has a segment named "Taken" under advertiser 1 (name-must-be-unique); traceId ${call.traceId}`);
    expect(apiCalls(sb)).toHaveLength(1);
    const again = await c.searchSegments({ advertiserIds: ['1'], types: ['ContactList'] });
    expect(again.filter((s) => s.name === 'Taken').map((s) => s.id)).toEqual(['700']);
  });

  it('a create applied but answered 503 is retried, meets its own list, and says so: NameTakenError, may have applied', async () => {
    const sb = await withSandbox({ faults: { script: [{ operation: 'create', nth: 1, applyThenFail: 503 }] } });
    const c = newClient(sb.url);
    const error = await caught(c.createContactList({ advertiserId: '2', name: 'Lost answer' }));
    expect(error).toBeInstanceOf(NameTakenError);
    expect(callTrace(error)).toMatchObject({ attempts: 2, mayHaveApplied: true });
    expect((await c.searchSegments({ advertiserIds: ['2'] })).map((s) => s.name)).toEqual(['Lost answer']);
  });

  it('an advertiser that has not granted the app is a ListRejectedError naming the advertiser', async () => {
    const sb = await withSandbox();
    const error = await caught(newClient(sb.url).createContactList({ advertiserId: '9', name: 'Nope' }));
    expect(error).toBeInstanceOf(ListRejectedError);
    expect(error).not.toBeInstanceOf(NameTakenError);
    expect(error.message).toMatch(/^no access to advertiser 9 under these credentials/);
  });
});

describe('the API version lifecycle', () => {
  it('lifecycle() is null while Criteo says nothing of the version', async () => {
    const sb = await withSandbox({ segments: segmentsOf('1', 1000, 1) });
    const c = newClient(sb.url);
    await c.getStatistics('1000');
    expect(c.lifecycle()).toBeNull();
    expect(c.lifecycleWarning()).toBeNull();
  });

  it('notes Deprecation and Sunset from any API answer, even a refusal; token answers say nothing', async () => {
    const sb = await withSandbox({ versionPhase: 'deprecated', sunset: '2027-07-01', segments: segmentsOf('1', 1000, 1) });
    const c = newClient(sb.url);
    await c.accessToken();
    expect(c.lifecycle()).toBeNull();
    await caught(c.getStatistics('424242'));
    expect(c.lifecycle()).toEqual({ version: '2026-07', deprecated: true, sunset: '2027-07-01T00:00:00.000Z', retired: false });
    expect(c.lifecycleWarning()).toBe(
      'Criteo API version 2026-07 is deprecated by Criteo and stops answering on 2027-07-01 (Sunset 2027-07-01T00:00:00.000Z): set CRITEO_API_VERSION to a newer supported version before then',
    );
    // The calls themselves go on as usual.
    expect((await c.getStatistics('1000')).status).toBe(200);
  });

  it('calls the configured CRITEO_API_VERSION', async () => {
    const sb = await withSandbox({ apiVersion: '2027-01', versionPhase: 'deprecated', segments: segmentsOf('1', 1000, 1) });
    const c = newClient(sb.url, { CRITEO_API_VERSION: '2027-01' });
    expect((await c.amendContactList('1000', 'add', [sha('x')])).status).toBe(200);
    expect(apiCalls(sb)[0]!.path).toBe('/2027-01/marketing-solutions/audience-segments/1000/contact-list');
    expect(c.lifecycle()).toEqual({ version: '2027-01', deprecated: true, sunset: null, retired: false });
    expect(c.lifecycleWarning()).toBe('Criteo API version 2027-01 is deprecated by Criteo: set CRITEO_API_VERSION to a newer supported version');
  });

  it('a 410 is a VersionRetiredError: one request, never retried, then held for the run without a request', async () => {
    const sb = await withSandbox({ versionPhase: 'retired', segments: segmentsOf('1', 1000, 1) });
    const c = newClient(sb.url, { CRITEO_API_VERSION: '2026-07' });
    const error = await caught(c.amendContactList('1000', 'add', [sha('x')]));
    expect(error).toBeInstanceOf(VersionRetiredError);
    const retired = error as VersionRetiredError;
    const call = apiCalls(sb)[0]!;
    expect(retired).toMatchObject({ retryable: false, apiVersion: '2026-07', problem: { status: 410, code: 'api-version-retired', traceId: call.traceId } });
    expect(retired.message).toBe(
      `Criteo API version 2026-07 is retired by Criteo (HTTP 410 api-version-retired): set CRITEO_API_VERSION to a supported version; traceId ${call.traceId}`,
    );
    expect(callTrace(error)).toMatchObject({ attempts: 1, mayHaveApplied: false });
    expect(apiCalls(sb)).toHaveLength(1);
    expect(c.lifecycle()).toEqual({ version: '2026-07', deprecated: true, sunset: null, retired: true });
    expect(c.lifecycleWarning()).toBe('Criteo API version 2026-07 is retired by Criteo: set CRITEO_API_VERSION to a supported version');

    // Every later call of the run meets it at once.
    const later = await Promise.all([
      caught(c.getStatistics('1000')),
      caught(c.searchSegments({})),
      caught(c.createContactList({ advertiserId: '1', name: 'x' })),
    ]);
    for (const e of later) expect(e).toBeInstanceOf(VersionRetiredError);
    expect(apiCalls(sb)).toHaveLength(1);

    // A new run asks again (and starts with nothing heard).
    c.beginRun();
    expect(c.lifecycle()).toBeNull();
    sb.setVersionLifecycle('supported');
    expect((await c.getStatistics('1000')).status).toBe(200);
    expect(c.lifecycle()).toBeNull();
  });

  it('reads the RFC 9745 and HTTP-date forms too, ignores "false", and never logs the refresh_token', async () => {
    const REFRESH = 'refresh-token-sentinel-4f1c9a';
    const api: Record<string, string>[] = [
      { deprecation: 'false' },
      { deprecation: '@1782864000' },
      { sunset: 'not a date' },
      { sunset: 'Wed, 01 Dec 2027 00:00:00 GMT' },
    ];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        const isToken = req.url === '/oauth2/token';
        // The token answer's own lifecycle headers are not the API version's.
        const headers = isToken ? { deprecation: 'true', sunset: 'Fri, 01 Jan 2027 00:00:00 GMT' } : (api.shift() ?? {});
        const body = isToken
          ? { access_token: 'access-token-0123456789', token_type: 'Bearer', expires_in: 900, refresh_token: REFRESH }
          : { data: {}, errors: [], warnings: [] };
        res.writeHead(200, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
      });
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
    closers.push(() => new Promise<void>((done) => server.close(() => done())));
    const capture = captureLog();
    const c = newClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, {}, capture.log);

    await c.getStatistics('1');
    expect(c.lifecycle()).toBeNull();
    await c.getStatistics('1');
    expect(c.lifecycle()).toEqual({ version: '2026-07', deprecated: true, sunset: null, retired: false });
    await c.getStatistics('1');
    expect(c.lifecycle()?.sunset).toBeNull();
    await c.getStatistics('1');
    expect(c.lifecycle()).toEqual({ version: '2026-07', deprecated: true, sunset: '2027-12-01T00:00:00.000Z', retired: false });
    expect(capture.raw.length).toBeGreaterThan(4);
    expect(capture.raw.join('\n')).not.toContain(REFRESH);
  });
});

import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/core/config.js';
import { loadSandboxOptionsFromFile, startSandbox, type Sandbox, type SandboxOptions } from '../src/sandbox/server.js';
import { startCli } from './helpers.js';

/**
 * The sandbox as Criteo's segment search and create, its token answer, and the
 * API version it serves through Criteo's version lifecycle (Deprecation and
 * Sunset headers, then 410), over real HTTP on loopback. Every answer is
 * checked against the contract (no violation may be recorded).
 */

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

interface ApiError {
  type: string;
  code: string;
  traceId: string;
  source?: Record<string, string>;
}
interface Resource {
  id: string;
  attributes: Record<string, unknown>;
}
interface Envelope<D = Resource[]> {
  data: D;
  meta?: { limit: number; offset: number; totalItems: number };
  errors: ApiError[];
  warnings: unknown[];
}
interface Answer<B = Envelope> {
  status: number;
  headers: Headers;
  body: B;
}

const started: Sandbox[] = [];
async function sandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const sb = await startSandbox({ segments: [{ id: '101', advertiserId: '7', name: 'List A' }], rateLimitPerMinute: 0, ...opts });
  started.push(sb);
  return sb;
}

afterEach(async () => {
  for (const sb of started) expect(sb.contractViolations).toEqual([]);
  await Promise.all(started.splice(0).map((sb) => sb.close()));
});

async function http<B = Envelope>(sb: Sandbox, method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<Answer<B>> {
  const headers: Record<string, string> = {};
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${sb.url}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as B };
}

async function tokenAnswer(sb: Sandbox) {
  const res = await fetch(`${sb.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'sandbox-client', client_secret: 'sandbox-secret' }).toString(),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

async function token(sb: Sandbox): Promise<string> {
  return (await tokenAnswer(sb)).body['access_token'] as string;
}

const searchBody = (attributes: object) => ({ data: { type: 'AudienceSegment', attributes } });
const createBody = (advertiserId: string, name: string, description?: string) => ({
  data: [{ type: 'AudienceSegment', attributes: { advertiserId, name, ...(description ? { description } : {}), contactList: {} } }],
});

describe('segment search', () => {
  it('pages past 100 segments: 100, 100, then the rest, with totalItems', async () => {
    const segments = Array.from({ length: 250 }, (_, i) => ({ id: String(1000 + i), advertiserId: i % 2 ? '7' : '8', name: `L${i}` }));
    const sb = await sandbox({ segments });
    const t = await token(sb);
    const pages: string[][] = [];
    for (const offset of [0, 100, 200, 300]) {
      const page = await http(sb, 'POST', `/2026-07/marketing-solutions/audience-segments/search?limit=100&offset=${offset}`, {
        token: t,
        body: searchBody({}),
      });
      expect(page.status).toBe(200);
      expect(page.body.meta).toEqual({ limit: 100, offset, totalItems: 250 });
      pages.push(page.body.data.map((s) => s.id));
    }
    expect(pages.map((p) => p.length)).toEqual([100, 100, 50, 0]);
    expect(new Set(pages.flat())).toEqual(new Set(segments.map((s) => s.id)));
  });

  it('ANDs advertiserIds, audienceSegmentIds and audienceSegmentTypes, and gives name, description, createdAt, updatedAt', async () => {
    const sb = await sandbox({
      segments: [
        { id: '101', advertiserId: '7', name: 'A' },
        { id: '102', advertiserId: '7', name: 'B' },
        { id: '201', advertiserId: '8', name: 'C' },
      ],
    });
    const t = await token(sb);
    const search = async (attributes: object) =>
      (await http(sb, 'POST', '/2026-07/marketing-solutions/audience-segments/search', { token: t, body: searchBody(attributes) })).body.data;

    expect((await search({ advertiserIds: ['7'] })).map((s) => s.id)).toEqual(['101', '102']);
    expect((await search({ advertiserIds: ['7'], audienceSegmentIds: ['102', '201'] })).map((s) => s.id)).toEqual(['102']);
    expect((await search({ advertiserIds: ['8'], audienceSegmentIds: ['102'] })).map((s) => s.id)).toEqual([]);
    expect((await search({ advertiserIds: ['7'], audienceSegmentTypes: ['ContactList'] })).map((s) => s.id)).toEqual(['101', '102']);
    expect(await search({ advertiserIds: ['7'], audienceSegmentTypes: ['Lookalike'] })).toEqual([]);

    const before = (await search({ audienceSegmentIds: ['102'] }))[0]!.attributes;
    expect(before).toMatchObject({ advertiserId: '7', name: 'B', description: null, type: 'ContactList' });
    expect(Date.parse(before['createdAt'] as string)).toBeGreaterThan(Date.now() - 60_000);
    await new Promise((r) => setTimeout(r, 5));
    const patched = await http(sb, 'PATCH', '/2026-07/marketing-solutions/audience-segments/102/contact-list', {
      token: t,
      body: { data: { type: 'ContactlistAmendment', attributes: { operation: 'add', identifierType: 'email', identifiers: [sha('x')] } } },
    });
    expect(patched.status).toBe(200);
    const after = (await search({ audienceSegmentIds: ['102'] }))[0]!.attributes;
    expect(after['createdAt']).toBe(before['createdAt']);
    expect(Date.parse(after['updatedAt'] as string)).toBeGreaterThan(Date.parse(before['updatedAt'] as string));
  });
});

describe('segment create', () => {
  it('answers name-must-be-unique for a name the advertiser already uses, and takes it under another advertiser', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    const create = (body: unknown) => http(sb, 'POST', '/2026-07/marketing-solutions/audience-segments/create', { token: t, body });
    const created = await create(createBody('7', 'Spring', 'For the spring campaign'));
    expect(created.status).toBe(200);
    expect(created.body.data[0]!.attributes).toMatchObject({ advertiserId: '7', name: 'Spring', description: 'For the spring campaign' });

    const taken = await create(createBody('7', 'List A'));
    expect(taken.status).toBe(400);
    expect(taken.body.errors[0]).toMatchObject({ type: 'validation', code: 'name-must-be-unique', source: { pointer: '/data/0/attributes/name' } });
    expect((await create(createBody('7', 'Spring'))).body.errors[0]!.code).toBe('name-must-be-unique');
    const twice = { data: [createBody('7', 'Twin').data[0], createBody('7', 'Twin').data[0]] };
    expect((await create(twice)).body.errors[0]!.code).toBe('name-must-be-unique');
    expect((await create(createBody('8', 'Spring'))).status).toBe(200);
  });
});

describe('token answer', () => {
  it("carries a refresh_token as Criteo's does: opaque, new each time, and no bearer token", async () => {
    const sb = await sandbox();
    const first = await tokenAnswer(sb);
    const second = await tokenAnswer(sb);
    expect(first.body).toMatchObject({ token_type: 'Bearer', expires_in: 900, refresh_token: expect.any(String) });
    const refresh = first.body['refresh_token'] as string;
    expect(refresh.length).toBeGreaterThanOrEqual(20);
    expect(refresh).not.toBe(first.body['access_token']);
    expect(refresh).not.toBe(second.body['refresh_token']);
    const used = await http(sb, 'GET', '/2026-07/marketing-solutions/audience-segments/101/contact-list/statistics', { token: refresh });
    expect(used.status).toBe(401);
  });
});

describe('the API version served', () => {
  it("defaults to the client's default version and answers 404 api-version-not-found for another", async () => {
    const sb = await sandbox();
    const served = loadConfig({}, {}).criteo.apiVersion;
    expect(sb.apiVersion).toBe(served);
    const t = await token(sb);
    expect((await http(sb, 'GET', `/${served}/marketing-solutions/audience-segments/101/contact-list/statistics`, { token: t })).status).toBe(200);
    const other = await http(sb, 'GET', '/2027-01/marketing-solutions/audience-segments/101/contact-list/statistics', { token: t });
    expect(other.status).toBe(404);
    expect(other.body.errors[0]).toMatchObject({ type: 'validation', code: 'api-version-not-found' });
  });

  it('serves the configured version with the same paths and contract checks, and no other', async () => {
    const sb = await sandbox({ apiVersion: '2027-01' });
    const t = await token(sb);
    const stats = await http(sb, 'GET', '/2027-01/marketing-solutions/audience-segments/101/contact-list/statistics', { token: t });
    expect(stats.status).toBe(200);
    expect(sb.calls.at(-1)).toMatchObject({ operation: 'statistics', segmentId: '101', status: 200 });
    const bad = await http(sb, 'PATCH', '/2027-01/marketing-solutions/audience-segments/101/contact-list', { token: t, body: { data: {} } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0]!.code).toBe('invalid-request');
    expect((await http(sb, 'GET', '/2027-01/marketing-solutions/audience-segments/101/contact-list', { token: t })).status).toBe(405);
    const old = await http(sb, 'GET', '/2026-07/marketing-solutions/audience-segments/101/contact-list/statistics', { token: t });
    expect(old.status).toBe(404);
    expect(old.body.errors[0]!.code).toBe('api-version-not-found');
  });
});

describe('the version lifecycle', () => {
  const STATS = '/2026-07/marketing-solutions/audience-segments/101/contact-list/statistics';

  it('deprecated: every API answer carries Deprecation: true and the Sunset as an HTTP date; token answers and other versions do not', async () => {
    const sb = await sandbox({ versionPhase: 'deprecated', sunset: '2027-07-01', faults: { script: [{ operation: 'statistics', nth: 2, status: 503 }] } });
    const tokenReply = await tokenAnswer(sb);
    expect(tokenReply.headers.get('deprecation')).toBeNull();
    expect(tokenReply.headers.get('sunset')).toBeNull();
    const t = tokenReply.body['access_token'] as string;
    const answers = [
      await http(sb, 'GET', STATS, { token: t }), // 200
      await http(sb, 'GET', STATS, { token: t }), // injected 503
      await http(sb, 'GET', STATS), // 401
      await http(sb, 'GET', '/2026-07/marketing-solutions/audience-segments/999/contact-list/statistics', { token: t }), // 404
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 503, 401, 404]);
    for (const a of answers) {
      expect(a.headers.get('deprecation')).toBe('true');
      expect(a.headers.get('sunset')).toBe('Thu, 01 Jul 2027 00:00:00 GMT');
    }
    const other = await http(sb, 'GET', '/2025-01/marketing-solutions/audience-segments/101/contact-list/statistics', { token: t });
    expect(other.status).toBe(404);
    expect(other.headers.get('deprecation')).toBeNull();
  });

  it('supported: no lifecycle header at all', async () => {
    const sb = await sandbox();
    const answer = await http(sb, 'GET', STATS, { token: await token(sb) });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('deprecation')).toBeNull();
    expect(answer.headers.get('sunset')).toBeNull();
  });

  it("retired: every API call answers 410 in Criteo's envelope (type deprecation), changing nothing; tokens are still issued", async () => {
    const sb = await sandbox({ versionPhase: 'retired', sunset: '2026-01-01' });
    const answer = await tokenAnswer(sb);
    expect(answer.status).toBe(200);
    const t = answer.body['access_token'] as string;
    const calls = [
      await http(sb, 'GET', STATS, { token: t }),
      await http(sb, 'GET', STATS),
      await http(sb, 'PATCH', '/2026-07/marketing-solutions/audience-segments/101/contact-list', {
        token: t,
        body: { data: { type: 'ContactlistAmendment', attributes: { operation: 'add', identifierType: 'email', identifiers: [sha('a')] } } },
      }),
      await http(sb, 'POST', '/2026-07/marketing-solutions/audience-segments/create', { token: t, body: createBody('7', 'New') }),
      await http(sb, 'POST', '/2026-07/marketing-solutions/audience-segments/search', { token: t, body: searchBody({}) }),
    ];
    for (const c of calls) {
      expect(c.status).toBe(410);
      expect(c.body.errors[0]).toMatchObject({ type: 'deprecation', code: 'api-version-retired', traceId: expect.any(String) });
      expect(c.headers.get('deprecation')).toBe('true');
      expect(c.headers.get('sunset')).toBe('Thu, 01 Jan 2026 00:00:00 GMT');
    }
    expect(sb.members('101').size).toBe(0);
    const other = await http(sb, 'GET', '/2027-01/marketing-solutions/audience-segments/101/contact-list/statistics', { token: t });
    expect(other.status).toBe(404);
  });

  it('moves through its lifecycle by setVersionLifecycle and by the admin route', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    sb.setVersionLifecycle('deprecated', '2027-07-01T12:00:00Z');
    expect((await http(sb, 'GET', STATS, { token: t })).headers.get('sunset')).toBe('Thu, 01 Jul 2027 12:00:00 GMT');

    const put = (body: unknown) => fetch(`${sb.url}/_sandbox/lifecycle`, { method: 'PUT', body: JSON.stringify(body) });
    const moved = await put({ versionPhase: 'retired', sunset: null });
    expect(moved.status).toBe(200);
    expect(await moved.json()).toEqual({ apiVersion: '2026-07', versionPhase: 'retired', sunset: null });
    const retired = await http(sb, 'GET', STATS, { token: t });
    expect(retired.status).toBe(410);
    expect(retired.headers.get('sunset')).toBeNull();
    expect((await put({ versionPhase: 'gone' })).status).toBe(400);
    expect(((await (await put({ versionPhase: 'deprecated', sunset: 'soon' })).json()) as { error: string }).error).toMatch(/sunset must be a date/);
    await put({ versionPhase: 'supported' });
    expect((await http(sb, 'GET', STATS, { token: t })).status).toBe(200);
    expect(await (await fetch(`${sb.url}/_sandbox/lifecycle`)).json()).toEqual({ apiVersion: '2026-07', versionPhase: 'supported', sunset: null });
  });
});

describe('lifecycle settings from outside the code', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sandbox-versions-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads apiVersion, versionPhase and sunset from the options file, and refuses bad ones', async () => {
    const file = join(dir, 'sandbox.json');
    writeFileSync(
      file,
      JSON.stringify({ apiVersion: '2027-01', versionPhase: 'deprecated', sunset: '2028-01-01', segments: [{ id: '5', advertiserId: '1' }] }),
    );
    const sb = await sandbox(loadSandboxOptionsFromFile(file));
    const answer = await http(sb, 'GET', '/2027-01/marketing-solutions/audience-segments/5/contact-list/statistics', { token: await token(sb) });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('sunset')).toBe('Sat, 01 Jan 2028 00:00:00 GMT');

    writeFileSync(file, JSON.stringify({ versionPhase: 'sunset' }));
    expect(() => loadSandboxOptionsFromFile(file)).toThrow(/versionPhase/);
    writeFileSync(file, JSON.stringify({ sunset: 'next year' }));
    expect(() => loadSandboxOptionsFromFile(file)).toThrow(/sunset: must be a date/);
    writeFileSync(file, JSON.stringify({ apiVersion: '2026/07' }));
    expect(() => loadSandboxOptionsFromFile(file)).toThrow(/apiVersion/);
    await expect(startSandbox({ sunset: 'never' })).rejects.toThrow(/sunset must be a date/);
    await expect(startSandbox({ apiVersion: '' })).rejects.toThrow(/apiVersion/);
  });

  it('`audience-sync sandbox --api-version --version-phase --sunset` serves that version in that phase', async () => {
    const cli = startCli(['sandbox', '--port', '0', '--api-version', '2027-01', '--version-phase', 'deprecated', '--sunset', '2027-07-01'], {});
    try {
      await expect.poll(() => /listening on (http:\S+)/.exec(cli.output().stdout)?.[1], { timeout: 30_000, interval: 100 }).toBeDefined();
      const url = /listening on (http:\S+)/.exec(cli.output().stdout)![1]!;
      const tokenRes = await fetch(`${url}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret',
      });
      const { access_token: t } = (await tokenRes.json()) as { access_token: string };
      const res = await fetch(`${url}/2027-01/marketing-solutions/audience-segments/search`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
        body: JSON.stringify(searchBody({})),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('deprecation')).toBe('true');
      expect(res.headers.get('sunset')).toBe('Thu, 01 Jul 2027 00:00:00 GMT');
      expect((await fetch(`${url}/2026-07/marketing-solutions/audience-segments/search`, { method: 'POST' })).status).toBe(404);
    } finally {
      cli.child.kill('SIGTERM');
      await cli.done;
    }
  });
});

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultContractPath, loadSandboxOptionsFromFile, matchScore, startSandbox, type Sandbox, type SandboxOptions } from '../src/sandbox/server.js';
import { parseFaultPlan } from '../src/sandbox/faults.js';

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

const BASE = '/2026-07/marketing-solutions';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const hashes = (n: number, prefix = 'user') => Array.from({ length: n }, (_, i) => sha(`${prefix}${i}@example.com`));

// JSON under test: typed as far as the tests read it, the assertions do the checking.
/** One entry of the API's error list. */
interface ApiError {
  type: string;
  code: string;
  traceId: string;
}
interface Resource {
  id: string;
  type: string;
  attributes: Record<string, unknown>;
}
/** A contact-list amendment: the one resource whose attributes a test reads by name. */
interface Amendment extends Resource {
  attributes: { requestDate: string } & Record<string, unknown>;
}
/** The API's envelope; `errors` is empty on success. */
interface Envelope<D = Resource> {
  data: D;
  meta?: Record<string, unknown>;
  errors: ApiError[];
  warnings: unknown[];
}
/** The OAuth endpoint's answer: a token, or an error and its description. */
interface TokenBody {
  access_token?: string;
  token_type?: string;
  expires_in?: number;
  error?: string;
  error_description?: string;
}
/** The admin endpoints' refusal. */
interface AdminError {
  error: string;
}

interface Answer<B = Envelope> {
  status: number;
  headers: Headers;
  body: B;
}

async function http<B = Envelope>(
  sb: Sandbox,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; raw?: string; signal?: AbortSignal } = {},
): Promise<Answer<B>> {
  const headers: Record<string, string> = {};
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  let body: string | undefined = opts.raw;
  if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${sb.url}${path}`, { method, headers, body, signal: opts.signal });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as B };
}

async function tokenFor(sb: Sandbox, clientId = 'sandbox-client', clientSecret = 'sandbox-secret'): Promise<Answer<TokenBody>> {
  const res = await fetch(`${sb.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret }).toString(),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as TokenBody };
}

async function token(sb: Sandbox, clientId?: string, secret?: string): Promise<string> {
  const answer = await tokenFor(sb, clientId, secret);
  expect(answer.status).toBe(200);
  return answer.body.access_token as string;
}

const amendment = (operation: 'add' | 'remove', identifiers: string[], identifierType = 'email') => ({
  data: { type: 'ContactlistAmendment', attributes: { operation, identifierType, identifiers } },
});

const patch = (sb: Sandbox, t: string, id: string, operation: 'add' | 'remove', identifiers: string[], signal?: AbortSignal) =>
  http<Envelope<Amendment>>(sb, 'PATCH', `${BASE}/audience-segments/${id}/contact-list`, { token: t, body: amendment(operation, identifiers), signal });

const started: Sandbox[] = [];
async function sandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const sb = await startSandbox({ segments: [{ id: '101', advertiserId: '7', name: 'List A' }], ...opts });
  started.push(sb);
  return sb;
}

afterEach(async () => {
  for (const sb of started) {
    // Every answer the sandbox gave during the test must have matched the contract.
    expect(sb.contractViolations).toEqual([]);
  }
  await Promise.all(started.splice(0).map((sb) => sb.close()));
});

beforeAll(async () => {
  // Warm the (cached) contract compilation so individual tests stay fast.
  const sb = await startSandbox();
  await sb.close();
});

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

describe('token endpoint', () => {
  it('issues bearer tokens for good credentials and refuses bad ones', async () => {
    const sb = await sandbox();
    const ok = await tokenFor(sb);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ token_type: 'Bearer', expires_in: 900 });
    expect(ok.body.access_token).toEqual(expect.any(String));
    // Several tokens are valid at once.
    const second = await token(sb);
    expect(second).not.toBe(ok.body.access_token);
    expect((await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: ok.body.access_token })).status).toBe(200);
    expect((await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: second })).status).toBe(200);

    const bad = await tokenFor(sb, 'sandbox-client', 'wrong');
    expect(bad.status).toBe(401);
    expect(bad.body.error).toBe('invalid_client');
    expect(bad.body.error_description).toEqual(expect.any(String));
  });

  it('refuses everyone when the fault plan says so', async () => {
    const sb = await sandbox({ faults: { refuseCredentials: true } });
    const answer = await tokenFor(sb);
    expect(answer.status).toBe(401);
    expect(answer.body.error).toBe('invalid_client');
    sb.setFaults(undefined);
    expect((await tokenFor(sb)).status).toBe(200);
  });

  it('expires tokens after tokenTtlSeconds with authorization-token-expired', async () => {
    const sb = await sandbox({ tokenTtlSeconds: 1 });
    const t = await token(sb);
    expect((await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    const expired = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t });
    expect(expired.status).toBe(401);
    expect(expired.body.errors[0]).toMatchObject({ type: 'authentication', code: 'authorization-token-expired' });
    expect(expired.body.errors[0]!.traceId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers authorization-token-invalid for a missing or unknown token', async () => {
    const sb = await sandbox();
    const missing = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`);
    const unknown = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: 'nope' });
    for (const answer of [missing, unknown]) {
      expect(answer.status).toBe(401);
      expect(answer.body).toMatchObject({ errors: [{ type: 'authentication', code: 'authorization-token-invalid' }], warnings: [] });
    }
    expect(missing.body.errors[0]!.traceId).not.toBe(unknown.body.errors[0]!.traceId);
  });
});

describe('contact lists', () => {
  it('adds and removes identifiers, idempotently, and counts valid / invalid ones', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    const ids = hashes(10);
    const invalid = ['NOT-AN-EMAIL', ids[0]!.toUpperCase(), 'a'.repeat(63)];
    const added = await patch(sb, t, '101', 'add', [...ids, ...invalid, 'plain@example.com']);
    expect(added.status).toBe(200);
    expect(added.body).toMatchObject({
      data: {
        type: 'ContactlistAmendment',
        attributes: {
          operation: 'add',
          contactListId: 101,
          identifierType: 'email',
          nbValidIdentifiers: 11,
          nbInvalidIdentifiers: 3,
          sampleInvalidIdentifiers: invalid,
        },
      },
      errors: [],
      warnings: [],
    });
    expect(Date.parse(added.body.data.attributes.requestDate)).not.toBeNaN();
    expect(sb.members('101')).toEqual(new Set([...ids, 'plain@example.com']));

    // Adding again changes nothing.
    await patch(sb, t, '101', 'add', ids.slice(0, 5));
    expect(sb.members('101').size).toBe(11);

    const removed = await patch(sb, t, '101', 'remove', [...ids.slice(0, 4), sha('never-added')]);
    expect(removed.status).toBe(200);
    expect(removed.body.data.attributes).toMatchObject({ operation: 'remove', nbValidIdentifiers: 5, nbInvalidIdentifiers: 0 });
    expect(sb.members('101')).toEqual(new Set([...ids.slice(4), 'plain@example.com']));

    expect(sb.calls.filter((c) => c.operation === 'patch').map((c) => [c.op, c.identifiers, c.status, c.segmentId])).toEqual([
      ['add', 14, 200, '101'],
      ['add', 5, 200, '101'],
      ['remove', 5, 200, '101'],
    ]);
  });

  it('audits received identifiers cheaply (and fully on request)', async () => {
    const sb = await sandbox({ recordReceivedIdentifiers: true });
    const t = await token(sb);
    await patch(sb, t, '101', 'add', [...hashes(3), 'raw@example.com']);
    expect(sb.identifierAudit()).toEqual({ received: 4, notSha256Hex: 1, samples: ['raw@example.com'] });
    expect([...sb.receivedIdentifiers()]).toContain('raw@example.com');

    const lean = await sandbox();
    expect(() => lean.receivedIdentifiers()).toThrow(/recordReceivedIdentifiers/);
  });

  it('rejects more than 50,000 identifiers with too-many-identifiers', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    const ids = hashes(50_001, 'big');
    const answer = await patch(sb, t, '101', 'add', ids);
    expect(answer.status).toBe(400);
    expect(answer.body.errors[0]).toMatchObject({ type: 'validation', code: 'too-many-identifiers' });
    expect(sb.members('101').size).toBe(0);
    // Exactly 50,000 is fine.
    expect((await patch(sb, t, '101', 'add', ids.slice(1))).status).toBe(200);
    expect(sb.members('101').size).toBe(50_000);
  });

  it('validates request bodies against the contract', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    const path = `${BASE}/audience-segments/101/contact-list`;
    const cases: unknown[] = [
      { data: { attributes: { operation: 'add', identifiers: [] } } }, // no type
      { data: { type: 'ContactlistAmendment', attributes: { operation: 'replace', identifiers: [] } } },
      { data: { type: 'ContactlistAmendment', attributes: { operation: 'add', identifiers: [1, 2] } } },
      { data: { type: 'ContactlistAmendment', attributes: { operation: 'add', identifierType: 'fax', identifiers: [] } } },
      {},
    ];
    for (const body of cases) {
      const answer = await http(sb, 'PATCH', path, { token: t, body });
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.body.errors[0]).toMatchObject({ type: 'validation', code: 'invalid-request', instance: path });
    }
    const malformed = await http(sb, 'PATCH', path, { token: t, raw: '{"data":' });
    expect(malformed.status).toBe(400);
    expect(malformed.body.errors[0]!.code).toBe('invalid-json');
    const noBody = await http(sb, 'PATCH', path, { token: t });
    expect(noBody.status).toBe(400);
    // The segment id is an int32 in the contract.
    expect((await http(sb, 'GET', `${BASE}/audience-segments/abc/contact-list/statistics`, { token: t })).status).toBe(400);
  });

  it('answers 404 for unknown segments and 403 for advertisers the app may not use', async () => {
    const sb = await sandbox({
      clients: [{ clientId: 'narrow', clientSecret: 's', advertiserIds: ['7'] }],
      segments: [
        { id: '101', advertiserId: '7' },
        { id: '202', advertiserId: '8' },
        { id: '303', advertiserId: '7' },
        { id: '404', advertiserId: '7' },
      ],
      faults: { forbiddenSegments: ['303'], unknownSegments: ['404'] },
    });
    const t = await token(sb, 'narrow', 's');
    const check = async (id: string, status: number, type: string) => {
      for (const answer of [
        await patch(sb, t, id, 'add', hashes(1)),
        await http(sb, 'DELETE', `${BASE}/audience-segments/${id}/contact-list`, { token: t }),
        await http(sb, 'GET', `${BASE}/audience-segments/${id}/contact-list/statistics`, { token: t }),
      ]) {
        expect(answer.status, id).toBe(status);
        expect(answer.body.errors[0]!.type).toBe(type);
      }
    };
    await check('999', 404, 'validation');
    await check('404', 404, 'validation');
    await check('202', 403, 'access-control');
    await check('303', 403, 'access-control');
    expect((await patch(sb, t, '101', 'add', hashes(1))).status).toBe(200);
    expect(sb.members('202').size).toBe(0);
  });

  it('DELETE empties the list', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    await patch(sb, t, '101', 'add', hashes(20));
    const answer = await http(sb, 'DELETE', `${BASE}/audience-segments/101/contact-list`, { token: t });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ data: { id: '101', type: 'AudienceContactlist' }, errors: [], warnings: [] });
    expect(sb.members('101').size).toBe(0);
    const stats = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t });
    expect(stats.body.data.attributes).toEqual({ numberOfIdentifiers: 0, numberOfMatches: 0, matchRate: 0 });
  });

  it('reports statistics from a deterministic match share', async () => {
    const sb = await sandbox({ matchShare: 0.5 });
    const t = await token(sb);
    const ids = hashes(1000, 'stat');
    await patch(sb, t, '101', 'add', ids);
    await patch(sb, t, '101', 'remove', ids.slice(0, 100));
    const kept = ids.slice(100);
    const expectedMatches = kept.filter((id) => parseInt(id.slice(0, 8), 16) / 2 ** 32 < 0.5).length;
    expect(kept.filter((id) => matchScore(id) < 0.5).length).toBe(expectedMatches);
    const stats = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t });
    expect(stats.status).toBe(200);
    expect(stats.body).toEqual({
      data: {
        id: '101',
        type: 'ContactlistStatistics',
        attributes: { numberOfIdentifiers: 900, numberOfMatches: expectedMatches, matchRate: (expectedMatches / 900) * 100 },
      },
      errors: [],
      warnings: [],
    });
    expect(expectedMatches).toBeGreaterThan(350);
    expect(expectedMatches).toBeLessThan(550);
  });
});

describe('routing', () => {
  it('answers 404 with the envelope for another API version or an unknown route, 405 for a wrong method', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    const other = await http(sb, 'GET', '/2025-10/marketing-solutions/audience-segments/101/contact-list/statistics', { token: t });
    expect(other.status).toBe(404);
    expect(other.body.errors[0]).toMatchObject({ type: 'validation', code: 'api-version-not-found' });
    expect((await http(sb, 'GET', `${BASE}/nothing-here`, { token: t })).status).toBe(404);
    expect((await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list`, { token: t })).status).toBe(405);
  });
});

describe('segment search and create', () => {
  it('finds the segments the client may use, filtered and paged', async () => {
    const sb = await sandbox({
      clients: [{ clientId: 'narrow', clientSecret: 's', advertiserIds: ['7'] }],
      segments: [
        { id: '101', advertiserId: '7', name: 'A' },
        { id: '102', advertiserId: '7', name: 'B' },
        { id: '103', advertiserId: '7', name: 'C' },
        { id: '201', advertiserId: '8', name: 'D' },
      ],
    });
    const t = await token(sb, 'narrow', 's');
    const search = (query: string, attributes: object) =>
      http<Envelope<Resource[]>>(sb, 'POST', `${BASE}/audience-segments/search${query}`, { token: t, body: { data: { type: 'AudienceSegment', attributes } } });

    const all = await search('?limit=2&offset=1', {});
    expect(all.status).toBe(200);
    expect(all.body.meta).toEqual({ limit: 2, offset: 1, totalItems: 3 });
    expect(all.body.data.map((s: { id: string }) => s.id)).toEqual(['102', '103']);
    expect(all.body.data[0]!.attributes).toMatchObject({ advertiserId: '7', name: 'B', type: 'ContactList' });

    const byId = await search('', { audienceSegmentIds: ['103', '201', '999'] });
    expect(byId.body.data.map((s: { id: string }) => s.id)).toEqual(['103']);
    const byType = await search('', { audienceSegmentTypes: ['Lookalike'] });
    expect(byType.body.data).toEqual([]);
    expect((await search('?limit=101', {})).status).toBe(400);
    expect((await search('', { advertiserIds: ['8'] })).status).toBe(403);
  });

  it('creates contact-list segments', async () => {
    const sb = await sandbox();
    const t = await token(sb);
    const body = { data: [{ type: 'AudienceSegment', attributes: { advertiserId: '7', name: 'Fresh list', contactList: {} } }] };
    const created = await http<Envelope<Resource[]>>(sb, 'POST', `${BASE}/audience-segments/create`, { token: t, body });
    expect(created.status).toBe(200);
    const id = created.body.data[0]!.id;
    expect(created.body.data[0]!.attributes).toMatchObject({ advertiserId: '7', name: 'Fresh list', type: 'ContactList' });
    expect(sb.members(id).size).toBe(0);
    expect((await patch(sb, t, id, 'add', hashes(2))).status).toBe(200);
    // Names are unique per advertiser.
    const again = await http(sb, 'POST', `${BASE}/audience-segments/create`, { token: t, body });
    expect(again.status).toBe(400);
    expect(again.body.errors[0]!.code).toBe('name-must-be-unique');
  });
});

describe('rate limit', () => {
  it.each([
    ["absent: Criteo's 250 a minute", undefined, '250'],
    ['null: none', null, null],
  ])('rateLimitPerMinute %s', async (_name, rateLimitPerMinute, limitHeader) => {
    const sb = await sandbox(rateLimitPerMinute === undefined ? {} : { rateLimitPerMinute });
    const t = await token(sb);
    const ok = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-ratelimit-limit')).toBe(limitHeader);
  });

  it('answers 429 with x-ratelimit headers past the per-client limit and does not count rejected calls', async () => {
    const sb = await sandbox({ rateLimitPerMinute: 5 });
    const t = await token(sb);
    const stats = () => http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t });
    for (let i = 0; i < 5; i++) {
      const ok = await stats();
      expect(ok.status).toBe(200);
      expect(ok.headers.get('x-ratelimit-remaining')).toBe(String(4 - i));
    }
    const limited = await stats();
    expect(limited.status).toBe(429);
    expect(limited.body.errors[0]).toMatchObject({ type: 'quota' });
    expect(limited.headers.get('x-ratelimit-limit')).toBe('5');
    expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
    const reset = Number(limited.headers.get('x-ratelimit-reset'));
    expect(reset).toBeGreaterThan(Date.now() / 1000);
    expect(reset).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 60);
    expect((await stats()).status).toBe(429);

    // Token calls are not limited; another client has its own window.
    expect((await tokenFor(sb)).status).toBe(200);
    expect(sb.maxCallsInAnyWindow('sandbox-client')).toBe(7);
    expect(sb.maxCallsInAnyWindow('sandbox-client', 60_000, { includeRejected: false })).toBe(5);
    expect(sb.maxCallsInAnyWindow('sandbox-client', 60_000, { includeTokenCalls: true })).toBe(9);
    expect(sb.maxCallsInAnyWindow('someone-else')).toBe(0);
  });
});

describe('fault plans', () => {
  it('fires scripted faults on the nth call of an operation', async () => {
    const sb = await sandbox({
      faults: {
        script: [
          { operation: 'patch', nth: 2, status: 503, times: 2 },
          { operation: 'token', nth: 1, status: 401 },
        ],
      },
    });
    const refused = await tokenFor(sb);
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('invalid_client');
    const t = await token(sb);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await patch(sb, t, '101', 'add', hashes(1, `n${i}`))).status);
    expect(statuses).toEqual([200, 503, 503, 200]);
    expect(sb.members('101').size).toBe(2); // the failed calls changed nothing
    const failed = sb.calls.filter((c) => c.status === 503);
    expect(failed.every((c) => c.fault === 'fail')).toBe(true);
  });

  it('applyThenFail applies the change and still answers the error', async () => {
    const sb = await sandbox({ faults: { script: [{ operation: 'patch', nth: 1, status: 200, applyThenFail: 502 }] } });
    const t = await token(sb);
    const ids = hashes(3);
    const answer = await patch(sb, t, '101', 'add', ids);
    expect(answer.status).toBe(502);
    expect(answer.body.errors[0]!.type).toBe('availability');
    expect(sb.members('101')).toEqual(new Set(ids));
  });

  it('hang never answers and changes nothing; applyThenHang changes and never answers', async () => {
    const sb = await sandbox({
      faults: {
        script: [
          { operation: 'patch', nth: 1, hang: true },
          { operation: 'patch', nth: 2, applyThenHang: true },
        ],
      },
    });
    const t = await token(sb);
    const first = hashes(2, 'first');
    const second = hashes(2, 'second');
    await expect(patch(sb, t, '101', 'add', first, AbortSignal.timeout(200))).rejects.toThrow();
    await expect(patch(sb, t, '101', 'add', second, AbortSignal.timeout(200))).rejects.toThrow();
    expect(sb.members('101')).toEqual(new Set(second));
    expect((await patch(sb, t, '101', 'add', first)).status).toBe(200);
    expect(sb.calls.filter((c) => c.operation === 'patch').map((c) => c.status)).toEqual([0, 0, 200]);
  });

  it('delayMs slows the answer down but applies the change at once', async () => {
    const sb = await sandbox({ faults: { script: [{ operation: 'patch', nth: 1, delayMs: 300 }] } });
    const t = await token(sb);
    const ids = hashes(2, 'slow');
    const started = Date.now();
    const pending = patch(sb, t, '101', 'add', ids);
    await new Promise((r) => setTimeout(r, 150));
    expect(sb.members('101')).toEqual(new Set(ids));
    expect((await pending).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(sb.calls.at(-1)).toMatchObject({ operation: 'patch', status: 200, fault: 'slow' });
  });

  it('injected 429s carry rate-limit headers a few seconds ahead', async () => {
    const sb = await sandbox({ faults: { script: [{ operation: 'statistics', nth: 1, status: 429 }], rateLimitResetSeconds: 3 } });
    const t = await token(sb);
    const answer = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t });
    expect(answer.status).toBe(429);
    expect(answer.body.errors[0]!.type).toBe('quota');
    const reset = Number(answer.headers.get('x-ratelimit-reset'));
    expect(reset - Date.now() / 1000).toBeGreaterThan(2);
    expect(reset - Date.now() / 1000).toBeLessThanOrEqual(4);
    expect(answer.headers.get('x-ratelimit-remaining')).toBe('0');
  });

  it('random faults are deterministic for a seed', async () => {
    const plan = { seed: 42, random: { errorRate: 0.3, errorStatuses: [500, 503], rateLimitBurstRate: 0.1 } };
    const run = async () => {
      const sb = await sandbox({ faults: plan });
      const t = await token(sb);
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t })).status);
      return statuses;
    };
    const a = await run();
    const b = await run();
    expect(a).toEqual(b);
    expect(new Set(a)).toEqual(new Set([200, 500, 503, 429]));
    const other = await (async () => {
      const sb = await sandbox({ faults: { ...plan, seed: 7 } });
      const t = await token(sb);
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t })).status);
      return statuses;
    })();
    expect(other).not.toEqual(a);
  });

  it('plan-level tokenTtlSeconds shortens tokens issued under the plan', async () => {
    const sb = await sandbox({ faults: { tokenTtlSeconds: 30 } });
    expect((await tokenFor(sb)).body.expires_in).toBe(30);
  });

  it('parseFaultPlan names the bad field', () => {
    expect(() => parseFaultPlan({ script: [{ operation: 'patch', nth: 0, status: 503 }] })).toThrow(/script\[0\]\.nth/);
    expect(() => parseFaultPlan({ random: { errorRate: 2 } })).toThrow(/random\.errorRate/);
    expect(() => parseFaultPlan({ random: { eror: 0.1 } })).toThrow(/random\.eror: unknown field/);
    expect(() => parseFaultPlan({ script: [{ operation: 'put', nth: 1, status: 500 }] })).toThrow(/script\[0\]\.operation/);
    expect(() => parseFaultPlan({ script: [{ operation: 'patch', nth: 1 }] })).toThrow(/script\[0\]/);
    expect(() => parseFaultPlan({ script: [{ operation: 'patch', nth: 1, status: 503, hang: true }] })).toThrow(/choose one/);
    expect(parseFaultPlan({ seed: 42, script: [{ operation: 'patch', nth: 5, status: 200, applyThenFail: 502 }] })).toMatchObject({
      seed: 42,
      script: [{ operation: 'patch', nth: 5, times: 1, applyThenFail: 502 }],
      forbiddenSegments: [],
    });
  });
});

describe('admin endpoints', () => {
  it('adds segments, lists members sorted, shows calls and sets faults over HTTP', async () => {
    const sb = await sandbox();
    const added = await http(sb, 'POST', '/_sandbox/segments', { body: { id: '555', advertiserId: '9', name: 'Admin list' } });
    expect(added.status).toBe(201);
    const t = await token(sb);
    const ids = hashes(5, 'adm');
    await patch(sb, t, '555', 'add', ids);
    const members = await http<string[]>(sb, 'GET', '/_sandbox/segments/555/members');
    expect(members.status).toBe(200);
    expect(members.body).toEqual([...ids].sort());
    expect((await http(sb, 'GET', '/_sandbox/segments/556/members')).status).toBe(404);

    const calls = await http<{ operation: string }[]>(sb, 'GET', '/_sandbox/calls');
    expect(calls.body.map((c: { operation: string }) => c.operation)).toEqual(['token', 'patch']);

    const faults = await http(sb, 'PUT', '/_sandbox/faults', { body: { script: [{ operation: 'patch', nth: 1, status: 500 }] } });
    expect(faults.status).toBe(200);
    expect((await patch(sb, t, '555', 'add', hashes(1, 'x'))).status).toBe(500);
    const badPlan = await http<AdminError>(sb, 'PUT', '/_sandbox/faults', { body: { script: [{ operation: 'patch', nth: 'one', status: 500 }] } });
    expect(badPlan.status).toBe(400);
    expect(badPlan.body.error).toMatch(/script\[0\]\.nth/);
    expect((await http(sb, 'PUT', '/_sandbox/faults', { raw: 'null' })).status).toBe(200);
    expect((await patch(sb, t, '555', 'add', hashes(1, 'x'))).status).toBe(200);

    const badSegment = await http<AdminError>(sb, 'POST', '/_sandbox/segments', { body: { id: 'abc', advertiserId: '9' } });
    expect(badSegment.status).toBe(400);
    expect(badSegment.body.error).toMatch(/^id:/);
  });
});

describe('configuration', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sandbox-test-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads options from a JSON file', async () => {
    const file = join(dir, 'sandbox.json');
    writeFileSync(
      file,
      JSON.stringify({
        segments: [{ id: '42', advertiserId: '3', name: 'From file', members: [sha('a')] }],
        clients: [{ clientId: 'c', clientSecret: 's', advertiserIds: ['3'] }],
        rateLimitPerMinute: null,
        faults: { seed: 1, unknownSegments: ['43'] },
      }),
    );
    const opts = loadSandboxOptionsFromFile(file);
    expect(opts.rateLimitPerMinute).toBe(0);
    const sb = await sandbox(opts);
    expect(sb.members('42')).toEqual(new Set([sha('a')]));
    expect((await token(sb, 'c', 's')).length).toBeGreaterThan(10);

    writeFileSync(file, JSON.stringify({ faults: { script: [{ operation: 'patch' }] } }));
    expect(() => loadSandboxOptionsFromFile(file)).toThrow(/script\[0\]\.nth/);
    writeFileSync(file, JSON.stringify({ segmnts: [] }));
    expect(() => loadSandboxOptionsFromFile(file)).toThrow(/segmnts/);
  });

  it('answers 500 and records a violation when a response breaks the contract', async () => {
    // A copy of the contract that demands a field the sandbox never sends.
    // Only the schema this test tightens is typed; the rest is written back as read.
    const contract = JSON.parse(readFileSync(defaultContractPath(), 'utf8')) as {
      components: { schemas: { ContactListStatisticsEntityV1: { required: string[] } } };
    };
    contract.components.schemas.ContactListStatisticsEntityV1.required = ['sandboxNeverSendsThis'];
    const contractPath = join(dir, 'strict-contract.json');
    writeFileSync(contractPath, JSON.stringify(contract));
    const logged: string[] = [];
    const sb = await startSandbox({ contractPath, segments: [{ id: '101', advertiserId: '7' }], log: (msg) => logged.push(msg) });
    try {
      const t = await token(sb);
      const answer = await http(sb, 'GET', `${BASE}/audience-segments/101/contact-list/statistics`, { token: t });
      expect(answer.status).toBe(500);
      expect(answer.body.errors[0]!.code).toBe('sandbox-contract-violation');
      expect(sb.contractViolations).toHaveLength(1);
      expect(logged.join('\n')).toMatch(/CONTRACT VIOLATION/);
    } finally {
      await sb.close();
    }
  });
});

import { readFileSync, readdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, redactValue } from '../src/core/logger.js';
import { hostileRows } from './drills/hostile-rows.js';
import { createWorld, runCli, seedCampaigns, seedCustomers, seedTargetGroup, type CliResult, type World } from './helpers.js';
import { LeakScanner, issuedTokens, startWiretap, type Wiretap } from './leak-scan.js';

/**
 * No raw email and no secret leaks: not in logs (at debug level), error
 * messages, run summaries, reports, the job's tables, nor in anything sent
 * to Criteo but SHA-256 identifiers (the secret goes to the token endpoint
 * only, tokens in Authorization headers only). The realistic flow runs every
 * command as a real process against the sandbox through a wiretap, with
 * Criteo faults so the error paths log too; test/leak-scan.ts does the
 * looking and is there for any other test to call.
 */

const DB_PASSWORD = 'db-pass-5f0c2e9a';

describe('a realistic flow leaks nothing', () => {
  let world: World;
  let tap: Wiretap;
  let env: Record<string, string>;
  const outputs: { name: string; r: CliResult }[] = [];

  beforeAll(async () => {
    world = await createWorld('security', {
      recordReceivedIdentifiers: true,
      tokenTtlSeconds: 3,
      segments: ['901', '902', '903'].map((id) => ({ id, advertiserId: '1' })),
    });
    tap = await startWiretap(world.sandbox.port);
    const dir = mkdtempSync(join(tmpdir(), 'as-security-'));
    writeFileSync(join(dir, 'criteo-secret'), `${world.env.CRITEO_CLIENT_SECRET}\n`);
    const url = new URL(world.databaseUrl);
    url.password = DB_PASSWORD; // the test server trusts loopback: the password is only there to be looked for
    const { CRITEO_CLIENT_SECRET: _secret, ...rest } = world.env;
    env = {
      ...rest,
      DATABASE_URL: url.toString(),
      CRITEO_CLIENT_SECRET_FILE: join(dir, 'criteo-secret'),
      CRITEO_API_URL: tap.url,
      CRITEO_BATCH_SIZE: '300',
      LOG_LEVEL: 'debug',
    };
    const db = world.database.db;
    await seedCustomers(db, 0, 1500);
    await db
      .insertInto('audience_sync.customers')
      .values(hostileRows(1).map((r) => ({ customer_id: r.customerId, email: r.email })))
      .execute();
    await seedCampaigns(db, [
      { id: 'sec-main', segmentId: '901' },
      { id: 'sec-forbidden', segmentId: '902' },
      { id: 'sec-ending', segmentId: '903' },
    ]);
    await seedTargetGroup(db, 'sec-main', 0, 1200);
    await sql`INSERT INTO audience_sync.campaign_target_groups SELECT 'sec-main', customer_id FROM audience_sync.customers WHERE customer_id LIKE 'h%'`.execute(
      db,
    );
    await seedTargetGroup(db, 'sec-forbidden', 1000, 1500);
    await seedTargetGroup(db, 'sec-ending', 0, 400);
  });
  afterAll(async () => {
    await tap?.close();
    await world?.close();
  });

  const cli = async (name: string, args: string[], extra: Record<string, string> = {}) => {
    const r = await runCli(args, { ...env, ...extra });
    outputs.push({ name, r });
    return r;
  };

  it('runs every command, through Criteo faults, an emptied list and refused credentials', async () => {
    // A token that expires mid-run, a 503, a 429, and a list whose advertiser withdrew consent.
    world.sandbox.setFaults({
      forbiddenSegments: ['902'],
      script: [
        { operation: 'patch', nth: 2, status: 401 },
        { operation: 'patch', nth: 4, status: 503 },
        { operation: 'patch', nth: 6, status: 429 },
      ],
    });
    expect((await cli('preflight', ['preflight', '--json'])).status).toBe(1);
    expect((await cli('plan', ['plan', '--json'])).status).toBe(0);
    const first = await cli('run', ['run', '--json']);
    expect(first.status, first.stderr.slice(-1500)).toBe(1);
    await sql`UPDATE audience_sync.campaigns SET measurement_ends_at = now() - interval '1 second' WHERE campaign_id = 'sec-ending'`.execute(world.database.db);
    const second = await cli('run after a campaign ended', ['run']);
    expect(second.status).toBe(1); // 902 still refused
    world.sandbox.setFaults(undefined);
    const runId = String((JSON.parse(first.stdout) as { runId: number }).runId);
    await Promise.all([
      cli('runs', ['runs', '--json']),
      cli('runs show --json', ['runs', 'show', runId, '--json']),
      cli('runs show', ['runs', 'show', runId]),
      cli('coverage --json', ['coverage', '--json']),
      cli('coverage', ['coverage']),
      cli('report json', ['report', '--format', 'json']),
      cli('report html', ['report', '--format', 'html']),
      cli('report csv', ['report', '--format', 'csv']),
    ]);
    expect((await cli('resync --full', ['resync', '--list', '901', '--full', '--json'])).status).toBe(0);
    const refused = await cli('run with a wrong secret', ['run', '--json'], { CRITEO_CLIENT_SECRET_FILE: '', CRITEO_CLIENT_SECRET: 'wrong-secret-1b7d4e' });
    expect(refused.status).toBe(1);
    for (const { name, r } of outputs) expect(r.stdout.length + r.stderr.length, name).toBeGreaterThan(0);
    // The job did log at debug level, and the error paths ran.
    const stderr = outputs.map((o) => o.r.stderr).join('\n');
    expect(stderr).toMatch(/"next":"renew-token"/);
    expect(stderr).toMatch(/"status":503/);
    expect(stderr).toMatch(/"status":429/);
    expect(stderr).toMatch(/"status":403/);
  });

  it('and nowhere (output, reports, wire, sandbox records, job tables) holds a raw email, the secret, the password or a token', async () => {
    const db = world.database.db;
    const { rows } = await sql<{ email: string | null }>`SELECT email FROM audience_sync.customers`.execute(db);
    const tokens = issuedTokens(tap);
    expect(tokens.length).toBeGreaterThanOrEqual(3); // renewals and a 401: several tokens were issued
    const scan = new LeakScanner({
      emails: rows.map((r) => r.email),
      secrets: [
        { name: 'client secret', value: world.env.CRITEO_CLIENT_SECRET! },
        { name: 'wrong client secret', value: 'wrong-secret-1b7d4e' },
        { name: 'database password', value: DB_PASSWORD },
        ...tokens.map((value, i) => ({ name: `access token #${i + 1}`, value })),
      ],
    });
    expect(scan.emails).toBeGreaterThan(1500);

    // Positive controls: the scanner finds what it is looking for.
    expect(new LeakScanner({ emails: ['  User7@Example.com '] }).text('control', 'x {"to":"user7@example.COM"} y')).toHaveLength(1);
    const control = new LeakScanner({ secrets: [{ name: 'client secret', value: world.env.CRITEO_CLIENT_SECRET! }] });
    expect(control.text('raw wire', tap.sent()).length).toBeGreaterThan(0); // the secret did go to the token endpoint

    for (const { name, r } of outputs) {
      scan.text(`${name}: stdout`, r.stdout, { identifiers: true });
      scan.text(`${name}: stderr`, r.stderr, { identifiers: true });
    }
    scan.wire(tap);
    scan.text('sandbox call records', JSON.stringify(world.sandbox.calls));
    scan.text('identifiers Criteo received', [...world.sandbox.receivedIdentifiers()].join('\n'));
    await scan.jobTables(db);
    expect(world.sandbox.identifierAudit()).toMatchObject({ notSha256Hex: 0 });
    expect(scan.leaks).toEqual([]);
    const chars = scan.scanned.reduce((n, s) => n + s.chars, 0);
    console.log(
      `leak scan: ${scan.scanned.length} sources, ${(chars / 1e6).toFixed(1)} MB, ${scan.emails} raw emails, ${tokens.length} tokens + secret + password + wrong secret looked for, ${scan.leaks.length} found`,
    );
  });
});

describe('the logger', () => {
  function capture(level = 'debug') {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    return { log: createLogger(level, sink), text: () => lines.join('') };
  }

  it('redacts Authorization headers, secrets, tokens and database URLs wherever an object carrying them is logged', () => {
    const { log, text } = capture();
    log.info({ headers: { authorization: 'Bearer tok-AAAA1111' } }, 'request');
    log.info({ req: { headers: { authorization: 'Bearer tok-BBBB2222', cookie: 'sid=cookie-CCCC3333' } } }, 'request');
    log.info({ config: { databaseUrl: 'postgres://u:pw-DDDD4444@h/db', criteo: { clientSecret: 'cs-EEEE5555' } } }, 'config');
    log.debug({ body: { access_token: 'tok-FFFF6666', token_type: 'Bearer' }, token: 'tok-GGGG7777', client_secret: 'cs-HHHH8888' }, 'token answer');
    log.info({ env: { DATABASE_URL: 'postgres://u:pw-IIII9999@h/db', CRITEO_CLIENT_SECRET: 'cs-JJJJ0000' } }, 'environment');
    const out = text();
    for (const v of ['AAAA1111', 'BBBB2222', 'DDDD4444', 'EEEE5555', 'FFFF6666', 'GGGG7777', 'HHHH8888', 'IIII9999', 'JJJJ0000']) expect(out).not.toContain(v);
    expect(out).toContain('[redacted]');
    expect(out).toContain('"token_type":"Bearer"');
  });

  it('scrubs a registered secret value from any line, even inside a message or an error text', () => {
    const { log, text } = capture();
    redactValue('s3cr3t-value-"quoted"');
    redactValue('p@ss/word');
    log.error({ error: 'connect failed for postgres://u:p%40ss%2Fword@db/x' }, 'database unreachable');
    log.warn('Criteo said: invalid client secret s3cr3t-value-"quoted"');
    log.info({ nested: { deep: { value: 'p@ss/word' } } }, 'odd place');
    const out = text();
    expect(out).not.toContain('s3cr3t-value');
    expect(out).not.toContain('p@ss/word');
    expect(out).not.toContain('p%40ss%2Fword');
    expect(out.match(/\[redacted\]/g)).toHaveLength(3);
  });
});

describe('secrets and SQL in the source', () => {
  const files = (dir: string) =>
    readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => ({ path: join(dir, f), text: readFileSync(join(dir, f), 'utf8') }));
  const source = [...files('src'), ...files('migrations'), ...files('dev')];

  it('no command takes a secret as a flag: secrets come from the environment or *_FILE only', () => {
    const cli = readFileSync('src/cli/main.ts', 'utf8');
    const flags = [...cli.matchAll(/(?:\.option|new Option)\(\s*'([^']+)'/g)].map((m) => m[1]!);
    expect(flags.length).toBeGreaterThan(10);
    // (--token-ttl is the sandbox's token lifetime, not a token.)
    expect(flags.filter((f) => f !== '--token-ttl <seconds>' && /secret|password|passwd|token|credential|database|dsn|url/i.test(f))).toEqual([]);
    // Only config.ts reads settings from the environment (and logger's default level, the demo's log level).
    const readers = source.filter((f) => /process\.env\b/.test(f.text)).map((f) => f.path);
    expect(readers.sort()).toEqual(['dev/demo.ts', 'src/cli/app.ts', 'src/core/config.ts', 'src/core/logger.ts']);
    for (const f of source.filter((x) => x.path !== 'src/core/config.ts')) {
      expect(f.text, f.path).not.toMatch(/process\.env(\.|\[')(CRITEO_CLIENT_SECRET|DATABASE_URL)/);
    }
  });

  it('every SQL statement goes through kysely or bound parameters, never a string built from values', () => {
    const findings: string[] = [];
    for (const f of source) {
      f.text.split('\n').forEach((line, i) => {
        const where = `${f.path}:${i + 1}: ${line.trim()}`;
        // The one exception: migration 0009 writes its pinned Unicode tables (constants) into function bodies.
        const pinnedData = f.path === 'migrations/0009-international-emails.ts' && line.trim() === 'const pinned = (text: string) => sql.lit(text);';
        if (/\bsql\.(raw|lit)\s*\(/.test(line) && !pinnedData) findings.push(where);
        if (/\.query\s*\(\s*`[^`]*\$\{/.test(line)) findings.push(where);
        if (/\.query\s*\(\s*['"`][^'"`]*['"`]\s*\+/.test(line)) findings.push(where);
        if (/\b(executeQuery|CompiledQuery\.raw)\s*\(/.test(line)) findings.push(where);
      });
    }
    expect(findings).toEqual([]);
  });
});

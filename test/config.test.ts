import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { unsupportedNode } from '../src/cli/node-version.js';
import { loadConfig, pgConnectionString } from '../src/core/config.js';
import { ConfigError } from '../src/core/errors.js';
import { describeDatabaseUrl } from '../src/db/connection.js';

const good = {
  DATABASE_URL: 'postgres://u:pw@127.0.0.1:5432/db',
  CRITEO_CLIENT_ID: 'id',
  CRITEO_CLIENT_SECRET: 'super-secret-value',
};

function errorOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = loadConfig(good);
    expect(c.criteo).toMatchObject({
      apiUrl: 'https://api.criteo.com',
      apiVersion: '2026-07',
      maxCallsPerMinute: 200,
      rateFallbackProcesses: 2,
      batchSize: 50_000,
    });
    expect(c.maxRemovalRatio).toBe(0.5);
    expect(c.pgPreparedStatements).toBe(true);
    expect(loadConfig({ ...good, PG_PREPARED_STATEMENTS: 'off' }).pgPreparedStatements).toBe(false);
  });

  it.each([
    [{ DATABASE_URL: '' }, 'DATABASE_URL is not set'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL: must be a postgres:// URL'],
    [{ CRITEO_CLIENT_ID: '' }, 'CRITEO_CLIENT_ID is not set'],
    [{ CRITEO_CLIENT_SECRET: '' }, 'CRITEO_CLIENT_SECRET (or CRITEO_CLIENT_SECRET_FILE) is not set'],
    [{ CRITEO_MAX_CALLS_PER_MINUTE: 'lots' }, 'CRITEO_MAX_CALLS_PER_MINUTE'],
    [{ CRITEO_MAX_CALLS_PER_MINUTE: '0' }, 'CRITEO_MAX_CALLS_PER_MINUTE'],
    [{ CRITEO_BATCH_SIZE: '50001' }, 'CRITEO_BATCH_SIZE'],
    [{ CRITEO_RATE_FALLBACK_PROCESSES: '0' }, 'CRITEO_RATE_FALLBACK_PROCESSES'],
    [{ CRITEO_API_VERSION: 'v1' }, 'CRITEO_API_VERSION: must look like 2026-07'],
    [{ CRITEO_API_URL: 'ftp://criteo' }, 'CRITEO_API_URL'],
    [{ MAX_REMOVAL_RATIO: '1.5' }, 'MAX_REMOVAL_RATIO'],
    [{ CONSOLE_PORT: '70000' }, 'CONSOLE_PORT'],
    [{ PG_PREPARED_STATEMENTS: 'yes' }, 'PG_PREPARED_STATEMENTS'],
    [{ CONSOLE_TOKEN: 'short' }, 'CONSOLE_TOKEN: must be at least 16 characters'],
    [{ CONSOLE_BASIC_AUTH: 'alice' }, 'CONSOLE_BASIC_AUTH: must be lines of user:password'],
    [{ CONSOLE_BASIC_AUTH: 'alice:short' }, 'CONSOLE_BASIC_AUTH: must be lines of user:password'],
    [{ CONSOLE_TRUSTED_PROXY: 'proxy.internal' }, 'CONSOLE_TRUSTED_PROXY: must be the IP address of the authenticating proxy'],
    [{ SYNC_TIMEZONE: 'Mars/Base' }, 'SYNC_TIMEZONE: not a time zone'],
  ])('rejects %o in one line naming the setting', (override, message) => {
    const text = errorOf({ ...good, ...override });
    expect(text).toContain(message);
    expect(text).not.toContain('\n');
    expect(text).not.toContain('super-secret-value');
  });

  // An unescaped @, /, ? or # in the password moves the rest of it into the host, port, path, query or fragment.
  it.each([
    'postgres://postgres:S3cretPw@127.0.0.1:notaport/x',
    'postgres://postgres:S3c@ret/Pw@127.0.0.1:5432/db',
    'postgres://postgres:S3c/retPw@127.0.0.1:5432/db',
    'postgres://postgres:12/S3cretPw@127.0.0.1:5432/db',
    'postgres://postgres:12?S3cretPw@127.0.0.1:5432/db',
    'postgres://postgres:12#S3cretPw@127.0.0.1:5432/db',
  ])('rejects DATABASE_URL %s in one line saying to percent-encode, echoing no part of it', (url) => {
    const text = errorOf({ ...good, DATABASE_URL: url });
    expect(text).toBe(
      'DATABASE_URL: must be a URL whose parts are where they seem: percent-encode special characters in the user name and password (@ as %40, / as %2F, ? as %3F, # as %23)',
    );
  });

  it('takes a DATABASE_URL whose password percent-encodes its special characters, or a socket directory in ?host=', () => {
    for (const url of [
      'postgres://postgres:S3c%40ret%2FPw%3F%23@127.0.0.1:5432/db',
      'postgres://postgres:p@ss@127.0.0.1/db',
      'postgres://u@[::1]:5432/db',
      'postgres:///db?host=/var/run/postgresql',
      'postgres://u:pw@/db?host=/var/run/postgresql',
      // No host: pg connects to PGHOST's, or localhost. An @ in a parameter's value is the value's (a Cloud SQL IAM user).
      'postgres:///db',
      'postgresql://u:pw@/db',
      'postgres://db.internal/db?user=sa@project.iam&application_name=job@host',
      'postgres://placeholder/db',
    ]) {
      expect(loadConfig({ ...good, DATABASE_URL: url }).databaseUrl).toBe(url);
    }
  });

  it('describes a database URL by host, port and path, never by any part of a URL whose parts are not where they seem', () => {
    expect(describeDatabaseUrl('postgres://u:S3cretPw@db.internal:6543/audience')).toBe('db.internal:6543/audience');
    expect(describeDatabaseUrl('postgres://u:S3cretPw@db.internal/audience?sslmode=require')).toBe('db.internal:5432/audience');
    expect(describeDatabaseUrl('postgres://u:pw@/db?host=/var/run/postgresql')).toBe('/var/run/postgresql:5432/db');
    expect(describeDatabaseUrl('postgres://u:pw@/db')).toBe(`${process.env['PGHOST'] || 'localhost'}:5432/db`);
    expect(describeDatabaseUrl('postgres://u:pw@db.internal/db?user=sa@project.iam')).toBe('db.internal:5432/db');
    for (const odd of [
      'postgres://postgres:S3c@ret/Pw@127.0.0.1:5432/db',
      'postgres://postgres:12#S3cretPw@127.0.0.1:5432/db',
      'postgres://postgres:12?S3cretPw@127.0.0.1:5432/db',
      'postgres://postgres:S3cretPw@127.0.0.1:notaport/x',
      'mysql://postgres:S3cretPw@db/x',
      'S3cretPw',
    ]) {
      expect(describeDatabaseUrl(odd), odd).toBe('the configured database');
    }
  });

  it("names verify-full for pg's sslmode aliases of it, keeping pg's behaviour without its SECURITY WARNING", () => {
    expect(pgConnectionString('postgres://u:pw@h/db?sslmode=require')).toBe('postgres://u:pw@h/db?sslmode=verify-full');
    expect(pgConnectionString('postgres://u:pw@h/db?application_name=x&sslmode=prefer')).toBe('postgres://u:pw@h/db?application_name=x&sslmode=verify-full');
    expect(pgConnectionString('postgres://u:pw@h/db?sslmode=verify-ca&x=1')).toBe('postgres://u:pw@h/db?sslmode=verify-full&x=1');
    for (const kept of ['postgres://u:pw@h/db?sslmode=disable', 'postgres://u:pw@h/db?uselibpqcompat=true&sslmode=require', 'postgres://u:pw@h/db']) {
      expect(pgConnectionString(kept)).toBe(kept);
    }
    expect(loadConfig({ ...good, DATABASE_URL: 'postgres://u:pw@h/db?sslmode=require' }).databaseUrl).toBe('postgres://u:pw@h/db?sslmode=verify-full');
  });

  it('takes an IANA time zone for SYNC_TIMEZONE', () => {
    expect(loadConfig({ ...good, SYNC_TIMEZONE: 'Europe/Paris' }).syncTimezone).toBe('Europe/Paris');
    expect(loadConfig({ ...good, SYNC_TIMEZONE: 'UTC' }).syncTimezone).toBe('UTC');
  });

  it('reads the secret from CRITEO_CLIENT_SECRET_FILE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'as-config-'));
    writeFileSync(join(dir, 'secret'), 'from-file\n');
    const { CRITEO_CLIENT_SECRET: _, ...rest } = good;
    expect(loadConfig({ ...rest, CRITEO_CLIENT_SECRET_FILE: join(dir, 'secret') }).criteo.clientSecret).toBe('from-file');
    expect(errorOf({ ...rest, CRITEO_CLIENT_SECRET_FILE: join(dir, 'missing') })).toContain('CRITEO_CLIENT_SECRET_FILE: cannot read');
  });
});

describe("the console's settings", () => {
  const consoleNeeds = { database: true, criteo: true, console: true };

  it('listens on 127.0.0.1:8080 with no authentication by default', () => {
    expect(loadConfig(good, consoleNeeds).console).toEqual({
      host: '127.0.0.1',
      port: 8080,
      token: undefined,
      basicUsers: [],
      trustedProxy: undefined,
      userHeader: 'X-Forwarded-User',
    });
  });

  it('refuses another address without authentication, and takes it with any of the three', () => {
    expect(() => loadConfig({ ...good, CONSOLE_HOST: '0.0.0.0' }, consoleNeeds)).toThrow(/^CONSOLE_HOST 0\.0\.0\.0 is not loopback: set CONSOLE_TOKEN_FILE/);
    // Other commands never serve: the console's address is not theirs to refuse.
    expect(loadConfig({ ...good, CONSOLE_HOST: '0.0.0.0' }).console.host).toBe('0.0.0.0');
    for (const auth of [{ CONSOLE_TOKEN: 'a-token-long-enough' }, { CONSOLE_BASIC_AUTH: 'alice:a-long-password' }, { CONSOLE_TRUSTED_PROXY: '10.0.0.7' }]) {
      expect(loadConfig({ ...good, CONSOLE_HOST: '0.0.0.0', ...auth }, consoleNeeds).console.host).toBe('0.0.0.0');
    }
  });

  it('reads basic credentials from CONSOLE_BASIC_AUTH_FILE, one user a line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'as-config-'));
    writeFileSync(join(dir, 'users'), 'alice:alices-password-1\nbob:bobs:password-2\n');
    expect(loadConfig({ ...good, CONSOLE_BASIC_AUTH_FILE: join(dir, 'users') }, consoleNeeds).console.basicUsers).toEqual([
      { user: 'alice', password: 'alices-password-1' },
      { user: 'bob', password: 'bobs:password-2' },
    ]);
  });
});

describe('the CLI on bad configuration', () => {
  const cli = (args: string[], env: Record<string, string>) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });

  it('exits 2 with one clear line before touching anything', () => {
    const r = cli(['run'], { ...good, CRITEO_MAX_CALLS_PER_MINUTE: '-3' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^audience-sync: CRITEO_MAX_CALLS_PER_MINUTE: /);
    expect(r.stderr + r.stdout).not.toContain('super-secret-value');
  });

  it('exits 2 when a required setting is missing', () => {
    const r = cli(['run'], { DATABASE_URL: good.DATABASE_URL });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('audience-sync: CRITEO_CLIENT_ID is not set');
  });

  it('exits 2 on an unknown command or option', () => {
    expect(cli(['frobnicate'], good).status).toBe(2);
    expect(cli(['run', '--no-such-flag'], good).status).toBe(2);
  });

  it('exits 2 naming DATABASE_URL when its password holds an unescaped special character, echoing no part of it', () => {
    for (const url of ['postgres://postgres:S3c@ret/Pw@127.0.0.1:5432/db', 'postgres://postgres:S3cretPw@127.0.0.1:notaport/x']) {
      const r = cli(['runs'], { ...good, DATABASE_URL: url });
      expect(r.status, url).toBe(2);
      expect(r.stderr.trim().split('\n'), url).toHaveLength(1);
      expect(r.stderr, url).toMatch(/^audience-sync: DATABASE_URL: must be a URL whose parts are where they seem: percent-encode special characters/);
      for (const fragment of ['S3c', 'ret', 'Pw', 'notaport']) expect(r.stderr + r.stdout, url).not.toContain(fragment);
    }
  });

  it('exits 2 naming SYNC_TIMEZONE when it is not a time zone, before planning anything', () => {
    const r = cli(['plan'], { ...good, SYNC_TIMEZONE: 'Mars/Base' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('audience-sync: SYNC_TIMEZONE: not a time zone (an IANA name such as Europe/Paris, or UTC)');
  });

  it('exits 2 naming the option when a number is negative or not a number', () => {
    const r = cli(['runs', '--limit', '-3'], good);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('audience-sync: --limit: expected a whole number of 0 or more, got "-3"');
    const show = cli(['runs', 'show', '1.5'], good);
    expect(show.status).toBe(2);
    expect(show.stderr.trim()).toBe('audience-sync: run id: expected a whole number of 0 or more, got "1.5"');
  });

  it('exits 2 with one line when the sandbox cannot start with its settings', () => {
    const r = cli(['sandbox', '--port', '0', '--config', 'no-such-sandbox.json'], {});
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^audience-sync: sandbox options no-such-sandbox\.json: ENOENT/);
  });

  it('exits 1 with one line when Postgres cannot be reached, never echoing the password', () => {
    const r = cli(['run'], { ...good, DATABASE_URL: 'postgres://u:hunter2@127.0.0.1:1/db' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^audience-sync: cannot reach Postgres at 127\.0\.0\.1:1\/db/);
    expect(r.stderr).not.toContain('hunter2');
  });
});

describe('the Node the CLI runs on', () => {
  it("is one of package.json's engines: 22.22+ or 24.11+", () => {
    expect((JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } }).engines.node).toBe('^22.22.0 || ^24.11.0');
    for (const supported of ['22.22.0', '22.23.5', '24.11.0', '24.22.3']) expect(unsupportedNode(supported), supported).toBeUndefined();
    for (const unsupported of ['20.20.2', '22.21.9', '23.11.0', '24.10.0', '25.0.0', '18.0.0']) {
      expect(unsupportedNode(unsupported), unsupported).toBe(
        `needs Node 22.22+ or 24.11+ (this is ${unsupported}): run it through scripts/with-node or npm run cli`,
      );
    }
  });

  // The system Node of a machine, when it is too old: what `AUDIENCE_SYNC_NODE=system` runs.
  const systemNode = '/usr/bin/node';
  const systemVersion = existsSync(systemNode) ? spawnSync(systemNode, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim() : '';
  it.runIf(systemVersion !== '' && unsupportedNode(systemVersion) !== undefined)(
    `exits 2 with one line on an unsupported Node (${systemNode}, ${systemVersion || 'absent'}), before loading what would fail on it`,
    () => {
      const r = spawnSync(systemNode, ['--import', 'tsx', 'src/cli/main.ts', 'runs'], {
        env: { PATH: process.env.PATH ?? '', ...good },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(`audience-sync: needs Node 22.22+ or 24.11+ (this is ${systemVersion}): run it through scripts/with-node or npm run cli\n`);
      expect(r.stdout).toBe('');
    },
  );
});

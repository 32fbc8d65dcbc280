import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/core/config.js';
import { ConfigError } from '../src/core/errors.js';

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
  ])('rejects %o in one line naming the setting', (override, message) => {
    const text = errorOf({ ...good, ...override });
    expect(text).toContain(message);
    expect(text).not.toContain('\n');
    expect(text).not.toContain('super-secret-value');
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

  it('exits 1 with one line when Postgres cannot be reached, never echoing the password', () => {
    const r = cli(['run'], { ...good, DATABASE_URL: 'postgres://u:hunter2@127.0.0.1:1/db' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^audience-sync: cannot reach Postgres at 127\.0\.0\.1:1\/db/);
    expect(r.stderr).not.toContain('hunter2');
  });
});

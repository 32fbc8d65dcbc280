import type { Command } from 'commander';
import { withApp } from './app.js';
import { out } from './output.js';

/**
 * `console`: the CSMs' web console over the job's database (see src/console).
 * It runs beside the scheduler, not inside it: the advisory locks keep a
 * console resync and a scheduled run off the same list at the same time.
 * SIGTERM/SIGINT stop it; a resync it started finishes its batches in flight
 * and is recorded as interrupted, as the CLI's is.
 */
export function addConsoleCommand(program: Command): void {
  program
    .command('console')
    .description('serve the web console for CSMs (lists, coverage, campaigns, runs, resync) on CONSOLE_HOST:CONSOLE_PORT (default 127.0.0.1:8080)')
    .action(async () => {
      await withApp({ database: true, criteo: true, console: true }, async (app) => {
        // Loaded here, not at the top: the other commands start without the web server's modules.
        const { startConsole } = await import('../console/server.js');
        const deps = { db: app.database.db, locks: app.database.locks, client: app.client, config: app.config, log: app.log };
        const console = await startConsole(deps);
        out(`audience-sync console listening on ${console.url}`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve).once('SIGTERM', resolve);
        });
        await console.close();
      });
    });
}

#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { withApp } from './app.js';
import { ConfigError, SchemaError, oneLine } from './errors.js';
import { formatCoverage, formatRunSummary } from './format.js';
import { migrateToLatest } from './migrate.js';
import { coverageByList } from './report.js';
import { segmentsOfCampaigns } from './source.js';
import { runSync, type RunSummary } from './sync.js';

/**
 * Exit codes: 0 every list converged; 1 a list failed or the run could not
 * complete; 2 bad usage, configuration or schema (nothing was written).
 */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const program = new Command('audience-sync')
  .description('Keeps Criteo Audience Lists in step with campaign target groups held in Postgres')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program
  .command('migrate')
  .description('create or upgrade the audience_sync schema (safe when two start at once)')
  .action(async () => {
    const applied = await withApp({ database: true }, ({ database }) => migrateToLatest(database.db));
    process.stdout.write(applied.length ? `applied ${applied.join(', ')}\n` : 'schema up to date\n');
  });

program
  .command('run')
  .description('sync every list (or the chosen ones) once')
  .option('--json', 'print the run summary as JSON on stdout')
  .addOption(new Option('--list <id...>', 'only these audience segment ids'))
  .addOption(new Option('--campaign <id...>', 'only the lists these campaigns feed'))
  .addOption(new Option('--trigger <name>', 'recorded with the run').default('cli'))
  .action(async (opts: { json?: boolean; list?: string[]; campaign?: string[]; trigger: string }) => {
    const summary = await withApp({ database: true, criteo: true }, async (app) => {
      const segmentIds = await chosenLists(app.database.db, opts);
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once('SIGTERM', stop).once('SIGINT', stop);
      try {
        return await runSync(
          { db: app.database.db, pool: app.database.pool, client: app.client, config: app.config, log: app.log },
          { trigger: opts.trigger, signal: controller.signal, ...(segmentIds ? { segmentIds } : {}) },
        );
      } finally {
        process.off('SIGTERM', stop).off('SIGINT', stop);
      }
    });
    printSummary(summary, opts.json);
    process.exitCode = exitCodeOf(summary);
  });

program
  .command('coverage')
  .description('match coverage of each list, from its latest sync')
  .option('--json', 'print as JSON')
  .action(async (opts: { json?: boolean }) => {
    const rows = await withApp({ database: true }, ({ database }) => coverageByList(database.db));
    process.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatCoverage(rows)}\n`);
  });

program
  .command('sandbox')
  .description('serve the Criteo sandbox (token, contact lists, statistics, segment search) on loopback')
  .option('--port <n>', 'port (0 = any free one)', parseInteger, 8787)
  .option('--host <host>', 'address to bind', '127.0.0.1')
  .option('--config <file>', 'JSON file: segments, clients, faults, limits')
  .option('--token-ttl <seconds>', 'token lifetime', parseInteger)
  .option('--rate-limit <n>', 'calls per minute per client (0 = none)', parseInteger)
  .option('--faults <file>', 'JSON fault plan')
  .action(async (opts: { port: number; host: string; config?: string; tokenTtl?: number; rateLimit?: number; faults?: string }) => {
    const { startSandbox, loadSandboxOptionsFromFile } = await import('./sandbox.js');
    const { parseFaultPlan } = await import('./sandbox-faults.js');
    const { readFileSync } = await import('node:fs');
    const base = opts.config ? loadSandboxOptionsFromFile(opts.config) : {};
    const sandbox = await startSandbox({
      ...base,
      port: opts.port,
      host: opts.host,
      ...(opts.tokenTtl !== undefined ? { tokenTtlSeconds: opts.tokenTtl } : {}),
      ...(opts.rateLimit !== undefined ? { rateLimitPerMinute: opts.rateLimit } : {}),
      ...(opts.faults ? { faults: parseFaultPlan(JSON.parse(readFileSync(opts.faults, 'utf8'))) } : {}),
    });
    process.stdout.write(`criteo sandbox listening on ${sandbox.url}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve).once('SIGTERM', resolve);
    });
    await sandbox.close();
  });

async function chosenLists(db: Parameters<typeof segmentsOfCampaigns>[0], opts: { list?: string[]; campaign?: string[] }) {
  if (!opts.list && !opts.campaign) return undefined;
  for (const id of opts.list ?? []) if (!/^\d+$/.test(id)) throw new ConfigError(`--list: ${JSON.stringify(id)} is not a numeric audience segment id`);
  const fromCampaigns = opts.campaign ? await segmentsOfCampaigns(db, opts.campaign) : [];
  if (opts.campaign && fromCampaigns.length === 0) throw new ConfigError(`--campaign: no campaign named ${opts.campaign.join(', ')}`);
  return [...new Set([...(opts.list ?? []), ...fromCampaigns])];
}

function printSummary(summary: RunSummary, json?: boolean) {
  process.stdout.write(json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatRunSummary(summary)}\n`);
}

export function exitCodeOf(summary: RunSummary): number {
  return summary.status === 'succeeded' ? EXIT_OK : EXIT_FAILED;
}

function parseInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`expected a whole number, got ${JSON.stringify(value)}`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help' ? EXIT_OK : EXIT_USAGE;
    }
    const usage = error instanceof ConfigError || error instanceof SchemaError;
    process.stderr.write(`audience-sync: ${oneLine(error)}\n`);
    return usage ? EXIT_USAGE : EXIT_FAILED;
  }
}

process.exitCode = await main(process.argv);

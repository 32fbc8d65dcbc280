#!/usr/bin/env node
// First: on an unsupported Node it exits with one line before any other module runs (see node-version.ts).
import './node-version.js';
import { Command, CommanderError, Option } from 'commander';
import { withApp, type App } from './app.js';
import { ConfigError, SchemaError, oneLine } from '../core/errors.js';
import { formatChecks, formatCoverage, formatPlan, formatRunDetail, formatRuns, formatRunSummary } from './format.js';
import { recentRuns, runDetail } from '../report/history.js';
import { migrateToLatest } from '../db/migrate.js';
import { preflight } from '../sync/preflight.js';
import { addListsCommands } from './lists-commands.js';
import { addConsoleCommand } from './console-command.js';
import { json, out } from './output.js';
import { progressReporter } from './progress.js';
import { pushRunMetrics } from '../report/metrics.js';
import { buildCoverageReport, coverageByList } from '../report/build.js';
import { writeReport, type ReportFormat } from '../report/output.js';
import { isValidCron, runSchedule } from '../sync/schedule.js';
import { assertSegmentId, chosenLists, type ListChoice } from './list-choice.js';
import { planSync, runSync, type RunSummary, type SyncOptions } from '../sync/run.js';

/**
 * Exit codes: 0 every list converged; 1 a list failed, is incomplete or
 * held, or the run could not complete; 2 bad usage, configuration or schema
 * (nothing was written).
 */
const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

const program = new Command('audience-sync')
  .description('Keeps Criteo Audience Lists in step with campaign target groups held in Postgres')
  .exitOverride()
  // A command's options go before its subcommand: `runs show 1 --json` is show's --json, not runs'.
  .enablePositionalOptions()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const listOptions = (cmd: Command) =>
  cmd
    .addOption(new Option('--list <id...>', 'only these audience segment ids'))
    .addOption(new Option('--campaign <id...>', 'only the lists these campaigns feed'));

program
  .command('migrate')
  .description('create or upgrade the audience_sync schema (safe when two start at once)')
  .action(async () => {
    const applied = await withApp({ database: true }, ({ database }) => migrateToLatest(database.db));
    out(applied.length ? `applied ${applied.join(', ')}` : 'schema up to date');
  });

listOptions(
  program
    .command('run')
    .description('sync every list (or the chosen ones) once')
    .option('--json', 'print the run summary as JSON on stdout')
    .option('--dry-run', 'only show what a run would do (same as `plan`)')
    .option('--allow-mass-removal', 'let removals through the mass-removal guard for this run')
    .addOption(new Option('--trigger <name>', 'recorded with the run').default('cli')),
).action(async (opts: ListChoice & { json?: boolean; dryRun?: boolean; allowMassRemoval?: boolean; trigger: string }) => {
  if (opts.dryRun) return showPlan(opts);
  await syncOnce(opts.trigger, opts, { json: opts.json, allowMassRemoval: opts.allowMassRemoval });
});

listOptions(
  program
    .command('plan')
    .description('what a run would do now, per list; sends and changes nothing')
    .option('--json', 'print as JSON')
    .option('--full', 'plan a full resync')
    .option('--allow-mass-removal', 'plan as if the mass-removal guard were lifted'),
).action((opts: ListChoice & { json?: boolean; full?: boolean; allowMassRemoval?: boolean }) => showPlan(opts));

listOptions(
  program
    .command('resync')
    .description('sync the chosen lists now (a CSM resync)')
    .option('--full', 're-send every desired identifier and remove every ledger identifier not desired (for a list that drifted in Criteo)')
    .option('--allow-mass-removal', 'let removals through the mass-removal guard')
    .option('--json', 'print the run summary as JSON'),
).action(async (opts: ListChoice & { full?: boolean; allowMassRemoval?: boolean; json?: boolean }) => {
  if (!opts.list && !opts.campaign) throw new ConfigError('resync needs --list ID or --campaign ID');
  await syncOnce('resync', opts, { json: opts.json, full: opts.full, allowMassRemoval: opts.allowMassRemoval, progress: true });
});

program
  .command('schedule')
  .description('stay up and run on SYNC_CRON (default 0 3 * * *) in SYNC_TIMEZONE; SIGTERM stops cleanly')
  .action(async () => {
    await withApp({ database: true, criteo: true }, async (app) => {
      if (!isValidCron(app.config.syncCron)) throw new ConfigError(`SYNC_CRON: not a cron expression: ${app.config.syncCron}`);
      await runSchedule({
        cron: app.config.syncCron,
        timezone: app.config.syncTimezone,
        log: app.log,
        runOnce: async (signal) => {
          const summary = await runSync(deps(app), { trigger: 'schedule', signal });
          await pushMetrics(app, summary);
          return summary;
        },
      });
    });
  });

program
  .command('preflight')
  .description('check database, credentials and access to every active list before a run')
  .option('--json', 'print as JSON')
  .action(async (opts: { json?: boolean }) => {
    const checks = await withApp({ database: true, criteo: true }, ({ database, client }) => preflight(database.db, client));
    if (opts.json) json(checks);
    else out(formatChecks(checks));
    process.exitCode = checks.every((c) => c.ok) ? EXIT_OK : EXIT_FAILED;
  });

const runs = program
  .command('runs')
  .alias('history')
  .enablePositionalOptions()
  .description('the last runs with their status and counts')
  .option('--limit <n>', 'how many', parseInteger('--limit'), 20)
  .option('--json', 'print as JSON')
  .action(async (opts: { limit: number; json?: boolean }) => {
    const rows = await withApp({ database: true }, ({ database }) => recentRuns(database.db, opts.limit));
    if (opts.json) json(rows);
    else out(formatRuns(rows));
  });

runs
  .command('show <runId>')
  .description('one run, list by list and batch by batch')
  .option('--json', 'print as JSON')
  .action(async (runId: string, opts: { json?: boolean }) => {
    const id = parseInteger('run id')(runId);
    const detail = await withApp({ database: true }, ({ database }) => runDetail(database.db, id));
    if (!detail) throw new ConfigError(`no run ${id}`);
    // `runs --json show 1` asks for JSON too.
    if (opts.json || runs.opts<{ json?: boolean }>().json) json(detail);
    else out(formatRunDetail(detail));
  });

program
  .command('coverage')
  .description('match coverage of each list, from its latest sync (one line each; see `report`)')
  .option('--json', 'print as JSON')
  .action(async (opts: { json?: boolean }) => {
    const rows = await withApp({ database: true }, ({ database, config }) => coverageByList(database.db, { lowMatchRate: config.lowMatchRate }));
    if (opts.json) json(rows);
    else out(formatCoverage(rows));
  });

program
  .command('report')
  .description('match coverage per list and campaign, run by run, with warnings and what to do (table, JSON, CSV or a self-contained HTML page)')
  .addOption(new Option('--campaign <id>', 'only the list this campaign feeds, and this campaign').conflicts('list'))
  .addOption(new Option('--list <id>', 'only this audience segment id'))
  .option('--since <date>', 'runs started on or after this date (YYYY-MM-DD, UTC, or an ISO instant); default 30 days ago')
  .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'csv', 'html']).default('table'))
  .option('--out <file>', 'write to this file instead of stdout')
  .action(async (opts: { campaign?: string; list?: string; since?: string; format: ReportFormat; out?: string }) => {
    if (opts.list !== undefined) assertSegmentId(opts.list);
    const since = opts.since === undefined ? undefined : parseSince(opts.since);
    const report = await withApp({ database: true }, ({ database, config }) =>
      buildCoverageReport(database.db, { segmentId: opts.list, campaignId: opts.campaign, since, lowMatchRate: config.lowMatchRate }),
    );
    const written = await writeReport(report, opts.format, opts.out);
    if (written) process.stderr.write(`report written to ${written} (${report.lists.length} lists, ${report.warnings.length} warnings)\n`);
  });

addListsCommands(program);
addConsoleCommand(program);

program
  .command('load-sample-data')
  .description("load the demo's sample campaigns and customers (refuses if campaigns exist)")
  .action(async () => {
    const { hasCampaigns, loadSampleData } = await import('../source/sample-data.js');
    await withApp({ database: true }, async ({ database }) => {
      if (await hasCampaigns(database.db)) throw new ConfigError('load-sample-data: campaigns already exist; sample data is only loaded into an empty source');
      await loadSampleData(database.db, new Date());
    });
    out('sample data loaded');
  });

program
  .command('sandbox')
  .description('serve the Criteo sandbox (token, contact lists, statistics, segment search), on loopback unless --host says otherwise')
  .option('--port <n>', 'port (0 = any free one)', parseInteger('--port'), 8787)
  .option('--host <host>', 'address to bind', '127.0.0.1')
  .option('--config <file>', 'JSON file: segments, clients, faults, limits')
  .option('--token-ttl <seconds>', 'token lifetime', parseInteger('--token-ttl'))
  .option('--rate-limit <n>', 'calls per minute per client (0 = none)', parseInteger('--rate-limit'))
  .option('--faults <file>', 'JSON fault plan')
  .option('--api-version <version>', 'the API version served (default: the client default CRITEO_API_VERSION); others answer 404')
  .addOption(
    new Option('--version-phase <phase>', 'deprecated: Deprecation header on every API answer; retired: every API call answers 410').choices([
      'supported',
      'deprecated',
      'retired',
    ]),
  )
  .option('--sunset <date>', "the served version's sunset (e.g. 2027-07-01), sent as the Sunset header")
  .action(async (opts: SandboxCommandOptions) => {
    // A setting it cannot start with (a missing or bad --config or --faults file, a port in use) is bad usage: exit 2.
    const sandbox = await startSandboxOf(opts);
    out(`criteo sandbox listening on ${sandbox.url}`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve).once('SIGTERM', resolve);
    });
    await sandbox.close();
  });

/** The sandbox the options ask for, started; any failure to start is a ConfigError naming what was wrong. */
async function startSandboxOf(opts: SandboxCommandOptions) {
  const { startSandbox, loadSandboxOptionsFromFile } = await import('../sandbox/server.js');
  const { parseFaultPlan } = await import('../sandbox/faults.js');
  const { readFileSync } = await import('node:fs');
  const usage = (prefix: string) => (error: unknown) => new ConfigError(`${prefix}${oneLine(error)}`);
  const attempt = <T>(fn: () => T, prefix: string): T => {
    try {
      return fn();
    } catch (error) {
      throw usage(prefix)(error);
    }
  };
  const { config: configFile, faults: faultsFile } = opts;
  const base = configFile ? attempt(() => loadSandboxOptionsFromFile(configFile), '') : {};
  const faults = faultsFile ? attempt(() => parseFaultPlan(JSON.parse(readFileSync(faultsFile, 'utf8'))), `--faults ${faultsFile}: `) : undefined;
  return startSandbox({
    ...base,
    port: opts.port,
    host: opts.host,
    ...(opts.tokenTtl !== undefined ? { tokenTtlSeconds: opts.tokenTtl } : {}),
    ...(opts.rateLimit !== undefined ? { rateLimitPerMinute: opts.rateLimit } : {}),
    ...(faults ? { faults } : {}),
    ...(opts.apiVersion !== undefined ? { apiVersion: opts.apiVersion } : {}),
    ...(opts.versionPhase !== undefined ? { versionPhase: opts.versionPhase } : {}),
    ...(opts.sunset !== undefined ? { sunset: opts.sunset } : {}),
  }).catch((error: unknown) => {
    throw usage('sandbox: ')(error);
  });
}

interface SandboxCommandOptions {
  port: number;
  host: string;
  config?: string;
  tokenTtl?: number;
  rateLimit?: number;
  faults?: string;
  apiVersion?: string;
  versionPhase?: 'supported' | 'deprecated' | 'retired';
  sunset?: string;
}

function deps(app: App) {
  return { db: app.database.db, locks: app.database.locks, client: app.client, config: app.config, log: app.log };
}

async function showPlan(opts: ListChoice & { json?: boolean; full?: boolean; allowMassRemoval?: boolean }): Promise<void> {
  const plan = await withApp({ database: true }, async (app) => {
    const segmentIds = await chosenLists(app.database.db, opts);
    return planSync(deps(app), {
      ...(segmentIds ? { segmentIds } : {}),
      ...(opts.full ? { full: true } : {}),
      ...(opts.allowMassRemoval ? { allowMassRemoval: true } : {}),
    });
  });
  if (opts.json) json(plan);
  else out(formatPlan(plan));
}

async function syncOnce(
  trigger: string,
  choice: ListChoice,
  opts: { json?: boolean | undefined; full?: boolean | undefined; allowMassRemoval?: boolean | undefined; progress?: boolean },
): Promise<void> {
  const summary = await withApp({ database: true, criteo: true }, async (app) => {
    const segmentIds = await chosenLists(app.database.db, choice);
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGTERM', stop).once('SIGINT', stop);
    const progress = opts.progress ? progressReporter(app.log) : undefined;
    try {
      const options: SyncOptions = {
        trigger,
        signal: controller.signal,
        ...(segmentIds ? { segmentIds } : {}),
        ...(opts.full ? { full: true } : {}),
        ...(opts.allowMassRemoval ? { allowMassRemoval: true } : {}),
        ...(progress ? { onProgress: progress.update } : {}),
      };
      const summary = await runSync(deps(app), options);
      await pushMetrics(app, summary);
      return summary;
    } finally {
      progress?.stop();
      process.off('SIGTERM', stop).off('SIGINT', stop);
    }
  });
  if (opts.json) json(summary);
  else out(formatRunSummary(summary));
  process.exitCode = exitCodeOf(summary);
}

function exitCodeOf(summary: RunSummary): number {
  return summary.status === 'succeeded' || summary.status === 'interrupted' ? EXIT_OK : EXIT_FAILED;
}

/** Pushes the run's metrics when PUSHGATEWAY_URL is set; a failure is a logged warning, never a failed run. */
async function pushMetrics(app: App, summary: RunSummary): Promise<void> {
  await pushRunMetrics(
    { db: app.database.db, log: app.log, pushgatewayUrl: app.config.pushgatewayUrl, lowMatchRate: app.config.lowMatchRate },
    summary,
    app.client.lifecycle(),
  ).catch((error: unknown) => app.log.warn({ error: oneLine(error) }, 'could not push metrics'));
}

/** A date is midnight UTC; an instant is taken as written. */
function parseSince(value: string): Date {
  const at = /^\d{4}-\d{2}-\d{2}$/.test(value) ? Date.parse(`${value}T00:00:00Z`) : /^\d{4}-\d{2}-\d{2}T/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(at)) throw new ConfigError(`--since: ${JSON.stringify(value)} is not a date (YYYY-MM-DD) or an ISO instant`);
  return new Date(at);
}

/** A parser of whole numbers of 0 or more for the option (or argument) `name`, which its error names. */
function parseInteger(name: string): (value: string) => number {
  return (value) => {
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n)) throw new ConfigError(`${name}: expected a whole number of 0 or more, got ${JSON.stringify(value)}`);
    return n;
  };
}

async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      return ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code) ? EXIT_OK : EXIT_USAGE;
    }
    const usage = error instanceof ConfigError || error instanceof SchemaError;
    process.stderr.write(`audience-sync: ${oneLine(error)}\n`);
    return usage ? EXIT_USAGE : EXIT_FAILED;
  }
}

process.exitCode = await main(process.argv);

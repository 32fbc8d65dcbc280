/**
 * `npm run demo`: the whole job on a laptop with nothing but Node. Starts an
 * embedded Postgres and the Criteo sandbox, loads sample data, runs a sync,
 * applies a day of churn, runs again (one day later, so a campaign's
 * measurement period ends), prints what each run did and each list's
 * coverage, and removes everything it started. With `--console` it then
 * serves the CSMs' web console on the demo's database and sandbox until
 * Ctrl-C (on 127.0.0.1: no sign-in).
 */
import { mkdirSync } from 'node:fs';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import { join } from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from '../src/core/config.js';
import { CriteoClient } from '../src/criteo/client.js';
import { connect, type Db } from '../src/db/connection.js';
import { formatCoverage, formatRunSummary } from '../src/cli/format.js';
import { createLogger } from '../src/core/logger.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { buildCoverageReport, coverageRows } from '../src/report/build.js';
import type { CoverageReport } from '../src/report/types.js';
import { writeReport } from '../src/report/output.js';
import { CAMPAIGN_LISTS } from '../src/source/list-bindings.js';
import { SAMPLE_CUSTOMERS, SAMPLE_SEGMENTS, applySampleChurn, loadSampleData } from '../src/source/sample-data.js';
import { startSandbox } from '../src/sandbox/server.js';
import { runSync, type SyncDeps } from '../src/sync/run.js';
import { startConsole } from '../src/console/server.js';

const DAY = 86_400_000;
const out = (s = '') => process.stdout.write(`${s}\n`);
const withConsole = process.argv.includes('--console');

/** Lists whose ledger differs from what the sandbox holds (the demo's self-check). */
async function listsDriftingFromCriteo(db: Db, members: (segmentId: string) => ReadonlySet<string>): Promise<string[]> {
  const { rows } = await sql<{ segment_id: string; ids: string[] }>`
    SELECT c.audience_segment_id::text AS segment_id,
           coalesce(array_agg(encode(m.identifier, 'hex')) FILTER (WHERE m.identifier IS NOT NULL), '{}') AS ids
    FROM (SELECT DISTINCT audience_segment_id FROM ${CAMPAIGN_LISTS} l WHERE audience_segment_id IS NOT NULL) c
    LEFT JOIN audience_sync.list_members m ON m.audience_segment_id = c.audience_segment_id
    GROUP BY c.audience_segment_id`.execute(db);
  return rows
    .filter((r) => {
      const held = members(r.segment_id);
      return held.size !== r.ids.length || r.ids.some((id) => !held.has(id));
    })
    .map((r) => r.segment_id);
}

const REPORT_DIR = '.demo-report';

/** Where the report's synced, in-Criteo and matched figures differ from the sandbox's members and statistics. */
async function reportMismatches(report: CoverageReport, sandbox: { members(id: string): ReadonlySet<string> }, client: CriteoClient): Promise<string[]> {
  const out: string[] = [];
  for (const list of report.lists) {
    const latest = list.latest;
    if (!latest) continue;
    const held = sandbox.members(list.segmentId).size;
    if (latest.synced !== held) out.push(`list ${list.segmentId}: synced ${latest.synced}, sandbox holds ${held}`);
    if (!latest.criteo) continue;
    const stats = (await client.getStatistics(list.segmentId)).body;
    if (latest.criteo.identifiers !== stats.numberOfIdentifiers || latest.criteo.matched !== stats.numberOfMatches) {
      out.push(
        `list ${list.segmentId}: report ${latest.criteo.identifiers}/${latest.criteo.matched}, sandbox ${stats.numberOfIdentifiers}/${stats.numberOfMatches}`,
      );
    }
  }
  return out;
}

/** A campaign that names its list instead of giving its id: the first run creates "Summer preview" under advertiser 501. */
async function addCampaignNamingItsList(db: Db, now: Date): Promise<void> {
  await sql`
    INSERT INTO audience_sync.campaigns (campaign_id, name, advertiser_id, audience_segment_id, audience_segment_name, starts_at, measurement_ends_at)
    VALUES ('summer-preview', 'Summer preview', 501, NULL, 'Summer preview', ${new Date(now.getTime() - 2 * DAY)}, ${new Date(now.getTime() + 40 * DAY)})`.execute(
    db,
  );
  await sql`
    INSERT INTO audience_sync.campaign_target_groups (campaign_id, customer_id)
    SELECT 'summer-preview', 'cust-' || i FROM generate_series(36001, 40000) i`.execute(db);
}

function demoConfig(databaseUrl: string, criteoUrl: string) {
  return loadConfig({
    DATABASE_URL: databaseUrl,
    CRITEO_API_URL: criteoUrl,
    CRITEO_CLIENT_ID: 'demo-client',
    CRITEO_CLIENT_SECRET: 'demo-secret',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    CONSOLE_HOST: '127.0.0.1',
    CONSOLE_PORT: process.env.CONSOLE_PORT ?? '0',
  });
}

/** `--console`: the console on the demo's database and sandbox, until Ctrl-C (then the demo removes what it started). */
async function serveConsoleUntilInterrupted(deps: SyncDeps, onInterrupt: () => void): Promise<void> {
  const console = await startConsole(deps);
  out(`\nconsole: ${console.url}  (on 127.0.0.1 no sign-in is needed; Ctrl-C stops it and removes the demo's database)`);
  process.off('SIGINT', onInterrupt);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve).once('SIGTERM', resolve);
  });
  out('stopping the console');
  await console.close();
}

async function main(): Promise<void> {
  out('audience-sync demo: embedded Postgres + Criteo sandbox, two daily runs');
  const postgres = await startEmbeddedPostgres();
  const sandbox = await startSandbox({
    clients: [{ clientId: 'demo-client', clientSecret: 'demo-secret', advertiserIds: ['501', '502'] }],
    segments: SAMPLE_SEGMENTS,
  });
  const database = connect(postgres.url);
  const cleanup = async () => {
    await database.close().catch(() => {});
    await sandbox.close().catch(() => {});
    await postgres.stop();
  };
  const onInterrupt = () => void cleanup().then(() => process.exit(130));
  process.once('SIGINT', onInterrupt);
  try {
    const config = demoConfig(postgres.url, sandbox.url);
    const log = createLogger(config.logLevel);
    await migrateToLatest(database.db);
    const now = new Date();
    await loadSampleData(database.db, now);
    await addCampaignNamingItsList(database.db, now);
    out(
      `loaded ${SAMPLE_CUSTOMERS.toLocaleString('en-US')} customers, 6 campaigns, 4 lists and one named by a campaign (postgres ${postgres.url.replace(/:[^:@/]*@/, ':***@')}, criteo sandbox ${sandbox.url})\n`,
    );

    const client = new CriteoClient(config.criteo, log);
    const deps = { db: database.db, locks: database.locks, client, config, log };
    try {
      const day1 = await runSync(deps, { trigger: 'demo', asOf: now });
      out(`day 1: ${formatRunSummary(day1)}\n`);
      await applySampleChurn(database.db);
      const day2 = await runSync(deps, { trigger: 'demo', asOf: new Date(now.getTime() + DAY) });
      out(`day 2 (after churn; winter-teaser's measurement period has ended): ${formatRunSummary(day2)}\n`);
      // Judged on day 2, the demo's "today" (winter-teaser has ended by then).
      const report = await buildCoverageReport(database.db, { lowMatchRate: config.lowMatchRate, now: new Date(now.getTime() + DAY) });
      out('match coverage by list (Criteo statistics are approximate and lag up to a day in production):');
      out(formatCoverage(coverageRows(report)));
      const drift = await listsDriftingFromCriteo(database.db, (id) => sandbox.members(id));
      out(drift.length === 0 ? '\nledger == Criteo sandbox for every list' : `\nDRIFT between ledger and Criteo sandbox on lists ${drift.join(', ')}`);
      const mismatches = await reportMismatches(report, sandbox, client);
      out(mismatches.length === 0 ? 'report == what the Criteo sandbox holds and reports, for every list' : `REPORT MISMATCH: ${mismatches.join('; ')}`);
      mkdirSync(REPORT_DIR, { recursive: true });
      for (const format of ['html', 'json', 'csv'] as const) await writeReport(report, format, join(REPORT_DIR, `coverage.${format}`));
      out(
        `\nreport written to ${REPORT_DIR}/coverage.{html,json,csv} (open the HTML in a browser; \`audience-sync report --format html --out coverage.html\` makes the same from a real database)`,
      );
      if (day1.status !== 'succeeded' || day2.status !== 'succeeded' || drift.length > 0 || mismatches.length > 0) process.exitCode = 1;
      if (withConsole) await serveConsoleUntilInterrupted(deps, onInterrupt);
    } finally {
      await client.close();
    }
  } finally {
    await cleanup();
  }
}

await main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
// embedded-postgres's exit hook ends the process with 0 when the event loop empties: exit with the demo's own code first.
process.exit(process.exitCode ?? 0);

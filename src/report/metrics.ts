import { request } from 'undici';
import type { ApiLifecycle } from '../criteo/client.js';
import type { Db } from '../db/connection.js';
import type { Logger } from '../core/logger.js';
import { buildCoverageReport } from './build.js';
import type { ListReport } from './types.js';
import type { RunSummary } from '../sync/run.js';

/**
 * Pushes a finished run's metrics to a Prometheus Pushgateway (PUSHGATEWAY_URL),
 * the usual way for a batch job: Prometheus scrapes the gateway, which keeps
 * the last push of each group.
 *
 * Groups (PUT replaces a group's metrics, so nothing stale survives in it):
 *   /metrics/job/audience-sync/trigger/<trigger>   the run: duration, status, counts,
 *                                                  and what Criteo said of its API version
 *   /metrics/job/audience-sync/list/<segment id>   each list the run synced
 * A list has a group of its own so that a CSM's resync of one list replaces
 * that list's figures and leaves the others' in place; the run group is keyed
 * by trigger so a resync does not hide the daily run's outcome.
 *
 * Text exposition format 0.0.4, built here: a dozen gauges need no client
 * library. A push never fails a run: a failure is one logged warning.
 */

const PUSH_JOB = 'audience-sync';
const TIMEOUT_MS = 10_000;

interface Gauge {
  name: string;
  help: string;
  samples: { labels?: Record<string, string>; value: number }[];
}

interface PushGroup {
  /** Grouping key after /metrics/job/<job>, as label name → value. */
  key: Record<string, string>;
  gauges: Gauge[];
}

/**
 * What the run's Criteo answers said of CRITEO_API_VERSION: whether it is
 * deprecated (or retired), and its sunset when one was announced. None when the
 * caller passed no lifecycle; null (nothing heard) is "not deprecated".
 */
function lifecycleGauges(lifecycle: ApiLifecycle | null | undefined): Gauge[] {
  if (lifecycle === undefined) return [];
  const sunset = lifecycle?.sunset ? Date.parse(lifecycle.sunset) / 1000 : null;
  const gauges = [
    gauge(
      'audience_sync_criteo_api_deprecated',
      '1 when Criteo announced CRITEO_API_VERSION deprecated or retired in the last run, else 0.',
      lifecycle?.deprecated ? 1 : 0,
    ),
    gauge('audience_sync_criteo_api_sunset_timestamp_seconds', 'The sunset Criteo announced for CRITEO_API_VERSION (Unix time).', sunset),
  ];
  return gauges.filter((g) => g.samples.length > 0);
}

/** The run's groups: its own, and one per list it synced (with that list's latest coverage). */
function runMetricGroups(summary: RunSummary, lists: readonly ListReport[], lifecycle?: ApiLifecycle | null): PushGroup[] {
  const finished = Date.parse(summary.finishedAt) / 1000;
  const notConverged = summary.lists.filter((l) => l.status === 'failed' || l.status === 'incomplete' || l.status === 'held').length;
  const run: PushGroup = {
    key: { trigger: summary.trigger },
    gauges: [
      gauge('audience_sync_run_duration_seconds', 'Wall time of the last run.', summary.durationMs / 1000),
      gauge('audience_sync_run_succeeded', '1 when the last run converged every list, else 0.', summary.status === 'succeeded' ? 1 : 0),
      gauge('audience_sync_run_finished_timestamp_seconds', 'When the last run finished (Unix time).', finished),
      gauge('audience_sync_run_id', 'Id of the last run (audience-sync runs show ID).', summary.runId),
      gauge('audience_sync_run_lists', 'Lists the last run handled.', summary.lists.length),
      gauge('audience_sync_run_lists_failed', 'Lists the last run left failed, incomplete or held.', notConverged),
      gauge('audience_sync_run_added_identifiers', 'Identifiers added to Criteo lists by the last run.', sum(summary.lists.map((l) => l.added))),
      gauge('audience_sync_run_removed_identifiers', 'Identifiers removed from Criteo lists by the last run.', sum(summary.lists.map((l) => l.removed))),
      ...lifecycleGauges(lifecycle),
    ],
  };
  const perList = summary.lists
    .filter((l) => l.listSyncId !== null && l.status !== 'skipped')
    .map((l): PushGroup => {
      const report = lists.find((r) => r.segmentId === l.segmentId);
      const latest = report?.latest;
      const gauges = [
        gauge('audience_sync_list_added_identifiers', 'Identifiers added by the last sync of the list.', l.added),
        gauge('audience_sync_list_removed_identifiers', 'Identifiers removed by the last sync of the list.', l.removed),
        gauge('audience_sync_list_failed', '1 when the last sync of the list failed, is incomplete or held, else 0.', l.status === 'succeeded' ? 0 : 1),
        gauge('audience_sync_list_run_id', 'Run of the last sync of the list.', summary.runId),
        gauge('audience_sync_list_synced_identifiers', 'Identifiers in the ledger (confirmed by Criteo) after the last sync.', latest?.synced ?? null),
        gauge(
          'audience_sync_list_target_group_customers',
          'Target-group customers of the active campaigns at the last sync.',
          latest?.funnel?.targetGroup ?? null,
        ),
        gauge(
          'audience_sync_list_criteo_identifiers',
          "Criteo's (approximate) count of identifiers in the list, latest reading.",
          latest?.criteo?.identifiers ?? null,
        ),
        gauge('audience_sync_list_criteo_matched', "Criteo's (approximate) count of matched identifiers, latest reading.", latest?.criteo?.matched ?? null),
        gauge('audience_sync_list_match_rate_ratio', 'Matched ÷ identifiers in Criteo (0–1), latest reading.', latest?.matchRate ?? null),
        gauge('audience_sync_list_coverage_ratio', 'Matched ÷ target-group customers (0–1), latest reading.', latest?.coverage ?? null),
        gauge(
          'audience_sync_list_criteo_read_timestamp_seconds',
          "When Criteo's statistics behind the match rate were read (Unix time).",
          latest?.criteo ? Date.parse(latest.criteo.readAt) / 1000 : null,
        ),
      ];
      return { key: { list: l.segmentId }, gauges: gauges.filter((g) => g.samples.length > 0) };
    });
  return [run, ...perList];
}

function gauge(name: string, help: string, value: number | null): Gauge {
  return { name, help, samples: value === null || !Number.isFinite(value) ? [] : [{ value }] };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Prometheus text exposition format 0.0.4. */
function exposition(gauges: readonly Gauge[]): string {
  const lines: string[] = [];
  for (const g of gauges) {
    lines.push(`# HELP ${g.name} ${g.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${g.name} gauge`);
    for (const s of g.samples) {
      const labels = Object.entries(s.labels ?? {});
      const text = labels.length
        ? `{${labels.map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',')}}`
        : '';
      lines.push(`${g.name}${text} ${formatValue(s.value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function formatValue(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(15).replace(/\.?0+$/, '');
}

/** /metrics/job/<job>/<label>/<value>…, values base64url-encoded when they could break a path segment. */
function groupPath(key: Record<string, string>): string {
  const parts = Object.entries(key).map(([k, v]) => (/^[A-Za-z0-9_.-]+$/.test(v) ? `${k}/${v}` : `${k}@base64/${Buffer.from(v).toString('base64url') || '='}`));
  return `/metrics/job/${PUSH_JOB}${parts.length ? `/${parts.join('/')}` : ''}`;
}

/** PUTs each group; returns how many were accepted. Never throws. */
async function pushGroups(baseUrl: string, groups: readonly PushGroup[], log: Logger): Promise<number> {
  let pushed = 0;
  for (const group of groups) {
    const url = `${baseUrl.replace(/\/+$/, '')}${groupPath(group.key)}`;
    try {
      const res = await request(url, {
        method: 'PUT',
        headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' },
        body: exposition(group.gauges),
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: TIMEOUT_MS,
      });
      const text = await res.body.text();
      if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}${text ? `: ${text.trim().slice(0, 200)}` : ''}`);
      pushed++;
    } catch (error) {
      log.warn(
        { group: group.key, error: error instanceof Error ? error.message : String(error) },
        'could not push metrics to the Pushgateway; the run itself is unaffected',
      );
    }
  }
  return pushed;
}

/**
 * After a run: the run's metrics and each synced list's coverage, pushed when
 * PUSHGATEWAY_URL is set. Reading the coverage failing is a warning too.
 * `lifecycle` is the client's `lifecycle()` after the run: when passed, the run
 * group carries whether the API version is deprecated and its sunset when known.
 */
export async function pushRunMetrics(
  deps: { db: Db; log: Logger; pushgatewayUrl: string | undefined; lowMatchRate: number },
  summary: RunSummary,
  lifecycle?: ApiLifecycle | null,
): Promise<void> {
  if (!deps.pushgatewayUrl) return;
  let lists: ListReport[] = [];
  try {
    const report = await buildCoverageReport(deps.db, { lowMatchRate: deps.lowMatchRate, since: new Date(Date.parse(summary.startedAt) - 1000) });
    lists = report.lists;
  } catch (error) {
    deps.log.warn({ error: error instanceof Error ? error.message : String(error) }, 'could not read coverage for the Pushgateway; pushing run counts only');
  }
  const pushed = await pushGroups(deps.pushgatewayUrl, runMetricGroups(summary, lists, lifecycle), deps.log);
  deps.log.info({ pushed }, 'metrics pushed to the Pushgateway');
}

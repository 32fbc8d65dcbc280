import { sql } from 'kysely';
import type { CriteoClient } from '../criteo/client.js';
import type { Db } from '../db/connection.js';
import { oneLine, VersionRetiredError } from '../core/errors.js';
import { assertMigrated } from '../db/migrate.js';
import { campaignActiveAt } from '../source/campaign-activity.js';
import { findListTargets, type ListTarget } from '../source/target-groups.js';
import { describeChangeLog } from '../source/log-catalog.js';
import { describeEmailRule } from '../source/email-rule.js';

/**
 * Checks, before a run writes anything, what would make it fail: the
 * database and its schema, the credentials, and for every list an active
 * campaign feeds, that the list exists under the campaign's advertiser for
 * these credentials (they can authenticate and still have no access to an
 * advertiser's lists), and what Criteo's answers say of CRITEO_API_VERSION (a
 * warning while it is deprecated, a failure once it is retired). Also reports
 * each target group's share of valid emails.
 */

export interface Check {
  name: string;
  ok: boolean;
  /** A passed check that still asks for action (shown as WARN): it fails nothing. */
  warning?: true;
  detail: string;
}

type CheckStep = (name: string, fn: () => Promise<string>) => Promise<boolean>;

export async function preflight(db: Db, client: CriteoClient, asOf = new Date()): Promise<Check[]> {
  const checks: Check[] = [];
  const check: CheckStep = async (name, fn) => {
    try {
      checks.push({ name, ok: true, detail: await fn() });
      return true;
    } catch (error) {
      checks.push({ name, ok: false, detail: oneLine(error) });
      return false;
    }
  };

  const dbOk = await check('database', async () => {
    const { rows } = await sql<{ v: string }>`SELECT current_setting('server_version') AS v`.execute(db);
    await assertMigrated(db);
    return `Postgres ${rows[0]!.v}, schema up to date`;
  });
  const tokenOk = await check('criteo token', async () => {
    await client.accessToken();
    return 'client credentials accepted';
  });
  if (!dbOk) {
    if (tokenOk) checks.push(await checkApiVersion(client, true));
    return checks;
  }

  // Informational: without the log every run still converges, reading whole target groups.
  await check('source change log', () => describeChangeLog(db));
  await check('email rule', () => describeEmailRule(db));
  const targets = (await findListTargets(db, asOf)).filter((t) => t.activeCampaignIds.length > 0);
  const searches = tokenOk && targets.length > 0;
  if (searches) checks.push(...(await checkListsReachable(client, targets, check)));
  // After the segment search its answers tell; without one, one small search asks.
  if (tokenOk) checks.push(await checkApiVersion(client, !searches));
  checks.push(...(await checkTargetGroups(db, asOf)));
  return checks;
}

/** Every list an active campaign feeds answers under its campaigns' one advertiser for these credentials. */
async function checkListsReachable(client: CriteoClient, targets: readonly ListTarget[], check: CheckStep): Promise<Check[]> {
  let visible = new Map<string, string | null>();
  const searched = await check('criteo segment search', async () => {
    const found = await client.findSegments(targets.map((t) => t.segmentId));
    visible = new Map(found.map((s) => [s.id, s.advertiserId]));
    return `${found.length} of ${targets.length} lists visible to these credentials`;
  });
  if (!searched) return [];
  return targets.map((t) => {
    const name = `list ${t.segmentId} (${t.activeCampaignIds.join(', ')})`;
    const advertiser = visible.get(t.segmentId);
    if (!visible.has(t.segmentId)) {
      return {
        name,
        ok: false,
        detail: `not found under these credentials: the list is unknown or its advertiser (${t.advertiserIds.join(', ')}) has not granted this app access`,
      };
    }
    if (advertiser && !t.advertiserIds.includes(advertiser)) {
      return { name, ok: false, detail: `belongs to advertiser ${advertiser}, but its campaigns name advertiser ${t.advertiserIds.join(', ')}` };
    }
    if (t.advertiserIds.length > 1) return { name, ok: false, detail: `campaigns feeding it name several advertisers (${t.advertiserIds.join(', ')})` };
    return { name, ok: true, detail: `reachable under advertiser ${advertiser ?? t.advertiserIds[0]}` };
  });
}

/**
 * What Criteo's answers said of CRITEO_API_VERSION: retired (410) fails, deprecated
 * or with a sunset date warns, with the date and the setting to change. `probe`:
 * no API call was made yet, so one small search asks.
 */
async function checkApiVersion(client: CriteoClient, probe: boolean): Promise<Check> {
  const name = 'criteo api version';
  if (probe && client.lifecycle() === null) {
    try {
      await client.checkVersion();
    } catch (error) {
      if (!(error instanceof VersionRetiredError)) return { name, ok: false, detail: `could not ask Criteo: ${oneLine(error)}` };
    }
  }
  const lifecycle = client.lifecycle();
  const warning = client.lifecycleWarning();
  if (lifecycle?.retired) return { name, ok: false, detail: warning ?? `${client.apiVersion} is retired` };
  if (warning) return { name, ok: true, warning: true, detail: warning };
  return { name, ok: true, detail: `${client.apiVersion}: Criteo announces no deprecation` };
}

/** Each active campaign's share of valid emails, by the recipe itself in Postgres: a rare check, worth being exact about today's customers. */
async function checkTargetGroups(db: Db, asOf: Date): Promise<Check[]> {
  const { rows } = await sql<{ campaign_id: string; tg: number; valid: number }>`
    SELECT c.campaign_id, count(tg.customer_id)::bigint AS tg,
           count(*) FILTER (WHERE audience_sync.email_identifier(cu.email) IS NOT NULL)::bigint AS valid
    FROM audience_sync.campaigns c
    LEFT JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
    LEFT JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
    WHERE ${campaignActiveAt(asOf)}
    GROUP BY c.campaign_id ORDER BY c.campaign_id`.execute(db);
  return rows.map((r) => {
    const share = r.tg > 0 ? r.valid / r.tg : 0;
    return {
      name: `target group ${r.campaign_id}`,
      ok: r.tg > 0,
      detail: r.tg > 0 ? `${r.valid} of ${r.tg} customers have a valid email (${(share * 100).toFixed(1)}%)` : 'empty target group',
    };
  });
}

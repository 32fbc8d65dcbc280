import type pg from 'pg';

/**
 * The two yardsticks the job's plan phase is measured against, run on the
 * same tables in the same run. Both are written here by hand, independent of
 * the job's SQL, and both only count (they write nothing).
 *
 * The naive statement: what planning costs with no cache at all. Every target
 * group member's email is normalised, validated with the WHATWG pattern and
 * hashed, the distinct identifiers are full-joined with the ledger.
 *
 * The floor: the plain join of the list's active target groups and
 * customers, counted: what merely reading the source costs, with no
 * validation, hashing or diff.
 */

const active = `c.audience_segment_id = $1::bigint AND c.starts_at <= now() AND now() < c.measurement_ends_at`;

/** The recipe of the README over the normalised email `n.e`, spelled out (not audience_sync.email_identifier, so the yardstick stays fixed). */
const IDENTIFIER = `
  CASE
    WHEN length(n.e) = 64 AND n.e ~ '^[0-9a-f]{64}$' THEN decode(n.e, 'hex')
    -- Beyond ASCII, judged before anything lowercases it (a locale's lower() folds U+0130 to i): the rule's own
    -- function (NFC and Unicode lowercase have no shorter spelling), on the trimmed value.
    WHEN n.t ~ '[^\\x01-\\x7f]' THEN sha256(convert_to(audience_sync.international_email(n.t), 'UTF8'))
    WHEN length(n.e) <= 254 AND strpos(n.e, '@') BETWEEN 2 AND 65 AND strpos(split_part(n.e, '@', 2), '.') > 0
     AND n.e ~ '^[a-z0-9.!#$%&''*+/=?^_\`{|}~-]+@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$'
    THEN sha256(convert_to(n.e, 'UTF8'))
  END`;

export const NAIVE_SQL = `
  SELECT count(*) FILTER (WHERE d.identifier IS NOT NULL AND l.identifier IS NULL)::bigint AS adds,
         count(*) FILTER (WHERE d.identifier IS NULL AND l.identifier IS NOT NULL)::bigint AS removes,
         count(d.identifier)::bigint AS desired
  FROM (
    -- DISTINCT keeps the subquery from being pulled up; OFFSET 0 keeps the normalised
    -- email a column, so each email is normalised, validated and hashed once.
    SELECT DISTINCT ${IDENTIFIER} AS identifier
    FROM (
      SELECT lower(btrim(cu.email, E' \\t\\n\\r\\f')) AS e, btrim(cu.email, E' \\t\\n\\r\\f') AS t
      FROM audience_sync.campaigns c
      JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
      JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
      WHERE ${active}
      OFFSET 0
    ) n
  ) d
  FULL JOIN (SELECT identifier FROM audience_sync.list_members WHERE audience_segment_id = $1::bigint) l
    ON l.identifier = d.identifier`;

export const FLOOR_SQL = `
  SELECT count(*)::bigint AS n
  FROM audience_sync.campaigns c
  JOIN audience_sync.campaign_target_groups tg ON tg.campaign_id = c.campaign_id
  JOIN audience_sync.customers cu ON cu.customer_id = tg.customer_id
  WHERE ${active}`;

export interface ReferenceTiming {
  ms: number;
  /** Backend CPU time (user + system) of the leader; workers' time is not in it. */
  cpuMs: number;
  /** The plan has parallel workers: wall time is then shared across processes. */
  parallel: boolean;
  rows: Record<string, number>;
  plan?: string;
}

/** CPU time reported by log_executor_stats notices while `run` runs. */
async function withCpu<T>(client: pg.Client, run: () => Promise<T>): Promise<{ value: T; cpuMs: number }> {
  let cpuMs = 0;
  const onNotice = (n: { message?: string; detail?: string }) => {
    const m = n.message === 'EXECUTOR STATISTICS' ? /([\d.]+) s user, ([\d.]+) s system/.exec(n.detail ?? '') : null;
    if (m) cpuMs += (Number(m[1]) + Number(m[2])) * 1000;
  };
  client.on('notice', onNotice);
  await client.query('SET log_executor_stats = on; SET client_min_messages = log');
  try {
    const value = await run();
    return { value, cpuMs };
  } finally {
    await client.query('SET client_min_messages = notice; SET log_executor_stats = off');
    client.off('notice', onNotice);
  }
}

async function timed(client: pg.Client, text: string, segmentId: string, explain: boolean): Promise<ReferenceTiming> {
  const shape = await client.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${text}`, [segmentId]);
  const parallel = JSON.stringify(shape.rows[0]?.['QUERY PLAN']).includes('"Workers Planned"');
  const started = performance.now();
  const { value: result, cpuMs } = await withCpu(client, () => client.query<Record<string, string>>(text, [segmentId]));
  const ms = performance.now() - started;
  const out: ReferenceTiming = {
    ms,
    cpuMs,
    parallel,
    rows: Object.fromEntries(Object.entries(result.rows[0] ?? {}).map(([k, v]) => [k, Number(v)])),
  };
  if (explain) {
    const plan = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, [segmentId]);
    out.plan = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
  }
  return out;
}

/**
 * The floor twice (the first run warms the cache for all), the floor once
 * more without parallel workers (its CPU time is then the whole of it), then
 * the naive statement once.
 */
export async function measureReferences(client: pg.Client, segmentId: string, explain: boolean) {
  await timed(client, FLOOR_SQL, segmentId, false);
  const floor = await timed(client, FLOOR_SQL, segmentId, explain);
  await client.query('SET max_parallel_workers_per_gather = 0');
  const floorSerial = await timed(client, FLOOR_SQL, segmentId, false);
  await client.query('RESET max_parallel_workers_per_gather');
  const naive = await timed(client, NAIVE_SQL, segmentId, explain);
  return { floor, floorSerial, naive };
}

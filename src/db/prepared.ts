import { createHash } from 'node:crypto';
import type pg from 'pg';

/**
 * Named (prepared) statements for the statements a connection runs again
 * and again, as graphile-worker names its own. A list's sync runs about
 * twenty statements, each the same text for every list; sent unnamed,
 * Postgres parses every one anew. Named, a connection parses a text once:
 * in a day's run of 500 small lists, parsing took 141 ms of Postgres's time
 * instead of 1,348 ms (docs/BENCHMARKS.md).
 *
 * Postgres still plans each execution for its own parameters: connect sets
 * plan_cache_mode = force_custom_plan for sessions that name statements. A
 * generic plan, priced for an average list, would serve a list of ten
 * million members as if it held a few thousand. And in the default mode
 * (auto), a run of 500 small lists planned more than with unnamed
 * statements, 3.1 s against 2.9 s (the plan's statements on its temporary
 * table and on the snapshot, a partition a list, kept losing their generic
 * plans and building them again), and its initial run was slower.
 *
 * Only statements with parameters are named, and only DML and queries: a
 * text without parameters is mostly a one-off (DDL, ANALYZE, a list's own
 * table's name). A connection names at most PREPARED_PER_CONNECTION texts;
 * later ones go unnamed, so a text that embeds a list's own name (a
 * snapshot table's fill) cannot grow a connection's statements without
 * bound. A name lives as long as its connection, and the pool closes idle
 * ones. pg records a name only once Postgres has parsed its text, so a
 * text that failed to parse is sent whole again.
 */
export const PREPARED_PER_CONNECTION = 200;

/** DML and queries, which Postgres plans and caches; not utility statements. */
const PLANNABLE = /^\s*(?:SELECT|WITH|INSERT|UPDATE|DELETE)\b/i;

/** Makes the client send the texts it runs with parameters as named statements (see above). */
export function prepareRepeatedStatements(client: pg.ClientBase): void {
  const names = new Map<string, string>();
  const query = client.query.bind(client) as (config: unknown, values?: unknown, callback?: unknown) => unknown;
  const nameOf = (text: string): string | undefined => {
    const known = names.get(text);
    if (known !== undefined || names.size >= PREPARED_PER_CONNECTION) return known;
    const name = `as_${createHash('sha1').update(text).digest('base64url')}`;
    names.set(text, name);
    return name;
  };
  client.query = ((config: unknown, values?: unknown, callback?: unknown) => {
    if (typeof config === 'string' && Array.isArray(values) && values.length > 0 && PLANNABLE.test(config)) {
      const name = nameOf(config);
      if (name !== undefined) return query({ name, text: config, values }, callback);
    }
    return query(config, values, callback);
  }) as typeof client.query;
}

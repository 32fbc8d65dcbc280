import { createHash } from 'node:crypto';
import type pg from 'pg';

/**
 * Named (prepared) statements for the statements a connection runs again
 * and again. A list's sync runs about twenty statements, each the same text
 * for every list; sent unnamed, Postgres parses and plans every one of them
 * anew, which was two fifths of its time in a run of 500 small lists. Named,
 * a connection parses a text once, and Postgres's plan cache may keep its
 * plan (plan_cache_mode decides: a custom plan for each execution until a
 * generic one is priced no dearer than them).
 *
 * Only statements with parameters are named, and only DML and queries: a
 * text without parameters is mostly a one-off (DDL, ANALYZE, a list's own
 * table's name). A connection names at most PREPARED_PER_CONNECTION texts;
 * later ones go unnamed, so a text that embeds a list's own name (a
 * snapshot table's fill) cannot grow a connection's statements without
 * bound. The pool's connections close when idle, and their statements with
 * them.
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

import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type DbHandle } from '../src/db/connection.js';
import { PREPARED_PER_CONNECTION } from '../src/db/prepared.js';
import { createTestDatabase } from './helpers.js';

/**
 * The job's sessions name the statements they run with parameters, so
 * Postgres parses each text once a connection (src/db/prepared.ts). Each
 * handle here has one connection, so pg_prepared_statements, read on it,
 * shows what that connection named.
 */
describe('named statements', () => {
  let url: string;
  let drop: () => Promise<void>;
  const handles: DbHandle[] = [];

  beforeAll(async () => {
    const t = await createTestDatabase('prepared_statements');
    url = t.url;
    drop = t.drop;
  });

  afterAll(async () => {
    await Promise.all(handles.map((h) => h.close()));
    await drop?.();
  });

  const oneConnection = (preparedStatements?: boolean) => {
    const handle = connect(url, 1, preparedStatements === undefined ? {} : { preparedStatements });
    handles.push(handle);
    return handle;
  };

  const named = async (handle: DbHandle) => {
    const { rows } = await sql<{ name: string; statement: string }>`SELECT name, statement FROM pg_prepared_statements ORDER BY statement`.execute(handle.db);
    return rows;
  };

  it('names a statement with parameters once, and runs it again by name', async () => {
    const handle = oneConnection();
    const squares = [];
    for (const n of [2, 3, 4]) {
      const { rows } = await sql<{ square: number }>`SELECT ${n}::int * ${n}::int AS square`.execute(handle.db);
      squares.push(rows[0]!.square);
    }
    await sql`SELECT 1`.execute(handle.db);
    await sql`CREATE TEMP TABLE unnamed_ddl (a int)`.execute(handle.db);
    expect(squares).toEqual([4, 9, 16]);
    const statements = await named(handle);
    // The one text with parameters, however often it ran; neither the statement without parameters nor the DDL.
    expect(statements).toHaveLength(1);
    expect(statements[0]!.name).toMatch(/^as_/);
    expect(statements[0]!.statement).toBe('SELECT $1::int * $2::int AS square');
    // Planned for each execution's parameters, never one generic plan for lists of every size.
    expect((await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(handle.db)).rows[0]!.plan_cache_mode).toBe('force_custom_plan');
  });

  it('names none when turned off (PG_PREPARED_STATEMENTS=off)', async () => {
    const handle = oneConnection(false);
    await sql`SELECT ${1}::int AS one`.execute(handle.db);
    await sql`SELECT ${1}::int AS one`.execute(handle.db);
    expect(await named(handle)).toEqual([]);
    // No startup options either: a pooler may refuse them.
    expect((await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(handle.db)).rows[0]!.plan_cache_mode).toBe('auto');
  });

  it(`names at most ${PREPARED_PER_CONNECTION} texts a connection, and runs the later ones unnamed`, async () => {
    const handle = oneConnection();
    const extra = 5;
    for (let i = 0; i < PREPARED_PER_CONNECTION + extra; i++) {
      const { rows } = await sql<{ n: number }>`SELECT ${i}::int + ${sql.lit(i)} AS n`.execute(handle.db);
      expect(rows[0]!.n).toBe(2 * i);
    }
    // An unnamed text runs again unnamed, and a named one by its name, with its answer right.
    const { rows } = await sql<{ n: number }>`SELECT ${7}::int + ${sql.lit(PREPARED_PER_CONNECTION + 1)} AS n`.execute(handle.db);
    expect(rows[0]!.n).toBe(PREPARED_PER_CONNECTION + 8);
    expect((await sql<{ n: number }>`SELECT ${1}::int + ${sql.lit(3)} AS n`.execute(handle.db)).rows[0]!.n).toBe(4);
    expect(await named(handle)).toHaveLength(PREPARED_PER_CONNECTION);
  });

  it('runs a named statement on a temporary table dropped and made again, with other column types', async () => {
    // As the plan's table of changes: kept by the session, or dropped and made again by a whole read.
    const handle = oneConnection();
    const count = async (key: string) =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_temp.changes WHERE key = ${key}`.execute(handle.db)).rows[0]!.n;
    await sql`CREATE TEMP TABLE changes (key text, known boolean)`.execute(handle.db);
    await sql`INSERT INTO pg_temp.changes VALUES ('a', true), ('a', false), ('b', true)`.execute(handle.db);
    expect(await count('a')).toBe(2);
    await sql`DROP TABLE pg_temp.changes`.execute(handle.db);
    await sql`CREATE TEMP TABLE changes AS SELECT 'a'::varchar AS key, 1 AS known`.execute(handle.db);
    expect(await count('a')).toBe(1);
    expect(await count('b')).toBe(0);
  });
});

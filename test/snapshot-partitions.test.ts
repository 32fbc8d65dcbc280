import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type DbHandle } from '../src/db/connection.js';
import { migrator } from '../src/db/migrate.js';
import { createTestDatabase } from './helpers.js';

/**
 * Migration 0016 gives each list's snapshot a table of its own: the rows a
 * database holds when it upgrades move into one unlogged partition per
 * list, with its indexes, and nothing is lost or moved between lists.
 */
describe('the snapshot, partitioned by list (migration 0016)', () => {
  let database: DbHandle;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const t = await createTestDatabase('snapshot_partitions');
    drop = t.drop;
    database = connect(t.url);
    await sql`CREATE SCHEMA audience_sync`.execute(database.db);
  });

  afterAll(async () => {
    await database?.close();
    await drop?.();
  });

  it("moves each list's rows into its own unlogged partition, with both indexes", async () => {
    const steps = migrator(database.db);
    expect((await steps.migrateTo('0015-rate-slot-ends')).error).toBeUndefined();
    await sql`
      INSERT INTO audience_sync.list_targets (audience_segment_id, customer_id, campaign_id, email_fingerprint, email_state, identifier)
      SELECT s, 'c' || i, 'k' || s, i, CASE WHEN i % 4 = 0 THEN 'invalid' ELSE 'valid' END,
             CASE WHEN i % 4 <> 0 THEN sha256(convert_to(s || '-' || i, 'UTF8')) END
      FROM unnest('{901,902}'::bigint[]) s, generate_series(1, 300) i
      WHERE s = 901 OR i <= 120`.execute(database.db);
    const before = await sql<{ rows: string }>`SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) AS rows FROM audience_sync.list_targets t`.execute(
      database.db,
    );

    expect((await steps.migrateToLatest()).error).toBeUndefined();

    const after = await sql<{ rows: string }>`SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) AS rows FROM audience_sync.list_targets t`.execute(
      database.db,
    );
    expect(after.rows[0]!.rows).toBe(before.rows[0]!.rows);
    const { rows: partitions } = await sql<{ name: string; persistence: string; n: number; indexes: number }>`
      SELECT c.relname AS name, c.relpersistence AS persistence,
             (SELECT count(*)::int FROM audience_sync.list_targets t WHERE t.tableoid = c.oid) AS n,
             (SELECT count(*)::int FROM pg_index x WHERE x.indrelid = c.oid) AS indexes
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'audience_sync.list_targets'::regclass ORDER BY 1`.execute(database.db);
    expect(partitions).toEqual([
      { name: 'list_targets_901', persistence: 'u', n: 300, indexes: 2 },
      { name: 'list_targets_902', persistence: 'u', n: 120, indexes: 2 },
    ]);
    // A list's statement reads its own partition only.
    const { rows: plan } = await sql<{ 'QUERY PLAN': string }>`
      EXPLAIN SELECT count(*) FROM audience_sync.list_targets WHERE audience_segment_id = ${'902'}::bigint`.execute(database.db);
    const text = plan.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toContain('list_targets_902');
    expect(text).not.toContain('list_targets_901');
  });
});

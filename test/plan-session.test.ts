import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type DbHandle } from '../src/db/connection.js';
import type { SyncOptions } from '../src/sync/run.js';
import { convergence, createWorld, seedCampaigns, seedCustomers, seedTargetGroup, type World } from './helpers.js';

/**
 * Every plan of a session reads its changed rows into pg_temp.target_changes:
 * a table kept by the session for a few keys from the run's map of the log,
 * a table of the plan's own (dropped at its commit) for a whole read. Here
 * every statement of the runs goes to one connection, and the locks'
 * connections come from a pool of their own, so each kind of read follows
 * the other on the same session.
 */

let world: World;
/** One connection for every statement of the runs; the locks' connections come from its pool of locks. */
let statements: DbHandle;
const LIST = '801';

beforeAll(async () => {
  world = await createWorld('plan_session', { segments: [{ id: LIST, advertiserId: '1' }] });
  const db = world.database.db;
  await seedCustomers(db, 0, 1500);
  await seedCampaigns(db, [{ id: 's1', segmentId: LIST }]);
  await seedTargetGroup(db, 's1', 0, 200);
  statements = connect(world.databaseUrl, 1);
});

afterAll(async () => {
  await statements?.close();
  await world?.close();
});

async function runOnOneSession(options: Partial<SyncOptions> = {}) {
  const run = await world.run(options, { LIST_CONCURRENCY: '1' }, { database: { db: statements.db, locks: statements.locks } });
  return run.lists[0]!;
}

async function churn(day: number) {
  const db = world.database.db;
  await sql`DELETE FROM audience_sync.campaign_target_groups WHERE campaign_id = 's1' AND customer_id = ${`c${day}`}`.execute(db);
  await seedTargetGroup(db, 's1', 200 + day, 201 + day);
  await sql`UPDATE audience_sync.customers SET email = ${`moved${day}@example.org`} WHERE customer_id = ${`c${100 + day}`}`.execute(db);
  // Customers outside the list, more than it looks up key by key, each statement under that limit: the run maps the
  // list's window of the log to its few keys (run-changes.ts).
  for (let from = 300; from < 1500; from += 400) {
    await sql`
      UPDATE audience_sync.customers SET email = 'User' || substr(customer_id, 2) || ${`@day${day}.example.com`}
      WHERE substr(customer_id, 2)::int BETWEEN ${from} AND ${from + 399}`.execute(db);
  }
}

/** Sessions holding a kept table of changed rows (a whole read's own table is gone with its commit). */
async function keptTables(): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_catalog.pg_class WHERE relname = 'target_changes' AND relpersistence = 't'`.execute(world.database.db);
  return rows[0]!.n;
}

describe("one session's plans", () => {
  it('read a few changes into the kept table and a whole target group into a table of its own, in any order, and stay exact', async () => {
    const reads: string[] = [];
    const one = async (day: number, options: Partial<SyncOptions> = {}) => {
      if (day > 0) await churn(day);
      const list = await runOnOneSession(options);
      expect(list).toMatchObject({ status: 'succeeded' });
      expect(await convergence(world, LIST)).toMatchObject({ exact: true });
      reads.push(`${list.sourceRead}${(await keptTables()) > 0 ? ', kept' : ''}`);
    };
    await one(0); // the first plan reads the whole target group
    await one(1); // the run's map names a few keys: the kept table is created
    await one(2); // ... and used again
    await one(3, { full: true }); // a whole read on a session that keeps the table
    await one(4); // the kept table, created again
    expect(reads).toEqual(['whole', 'changes, kept', 'changes, kept', 'whole', 'changes, kept']);
    expect(await convergence(world, LIST)).toMatchObject({ desired: 200, exact: true });
  });
});

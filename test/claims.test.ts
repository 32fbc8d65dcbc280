import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type DbHandle } from '../src/db/connection.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { claimBatch } from '../src/sync/claim.js';
import { applyConfirmedBatches, confirmAnswers, settleInStep } from '../src/sync/ledger.js';
import { createTestDatabase } from './helpers.js';

/**
 * A claim writes the batch ahead and returns its identifiers as the request
 * body's JSON array, formatted by Postgres a thousand to a part: the parts
 * must join into exactly the plan batch's identifiers, whatever the batch's
 * size against the part's, and anything that is not a 64-hex identifier must
 * stop the claim before a request could carry it.
 */
describe('claiming a batch', () => {
  let database: DbHandle;
  let drop: () => Promise<void>;
  let listSyncId: number;
  const SEGMENT = '700';

  beforeAll(async () => {
    const t = await createTestDatabase('claims');
    drop = t.drop;
    database = connect(t.url);
    await migrateToLatest(database.db);
    const { rows } = await sql<{ id: number }>`
      WITH run AS (INSERT INTO audience_sync.runs (trigger, as_of) VALUES ('test', now()) RETURNING run_id)
      INSERT INTO audience_sync.list_syncs (run_id, audience_segment_id, campaign_ids, action)
      SELECT run_id, ${SEGMENT}, '{}', 'sync' FROM run RETURNING list_sync_id AS id`.execute(database.db);
    listSyncId = rows[0]!.id;
  });

  afterAll(async () => {
    await database?.close();
    await drop?.();
  });

  const hex = (n: number) => createHash('sha256').update(`member-${n}`).digest('hex');

  /** Plan batch `batchNo` of the add operation with the identifiers of members from..to-1. */
  async function planBatch(batchNo: number, from: number, to: number): Promise<string[]> {
    const ids = Array.from({ length: to - from }, (_, i) => hex(from + i));
    await sql`
      INSERT INTO audience_sync.plan_entries (list_sync_id, operation, batch_no, identifier)
      SELECT ${listSyncId}, 'add', ${batchNo}, decode(h, 'hex') FROM unnest(${ids}::text[]) h`.execute(database.db);
    return ids;
  }

  const claim = (batchNo: number, ranged = false) =>
    claimBatch(database.db, { listSyncId, segmentId: SEGMENT, seq: batchNo + 1, operation: 'add', batchNo, ranged });

  it.each([1, 999, 1000, 1001, 2500])('a batch of %i identifiers comes back as one JSON array of them, in parts of at most a thousand', async (size) => {
    const batchNo = size;
    const ids = await planBatch(batchNo, size * 10, size * 10 + size);
    const batch = await claim(batchNo);
    expect(batch).not.toBeNull();
    const body = Buffer.concat(batch!.encoded.chunks);
    expect(body.length).toBe(batch!.encoded.length);
    expect(batch!.encoded.chunks.length).toBe(Math.ceil(size / 1000));
    expect(batch!.size).toBe(size);
    expect(new Set(JSON.parse(body.toString('latin1')) as string[])).toEqual(new Set(ids));
    // Written ahead: the batch row holds the same identifiers, before any request.
    const { rows } = await sql<{ n: number; status: string }>`
      SELECT cardinality(payload) AS n, status FROM audience_sync.batches WHERE batch_id = ${batch!.batchId}`.execute(database.db);
    expect(rows[0]).toEqual({ n: size, status: 'sending' });
  });

  it('an empty plan batch claims nothing', async () => {
    expect(await claim(9999)).toBeNull();
  });

  /**
   * A first fill plans ranges of the snapshot's identifiers (plan_ranges): the snapshot below holds members 0..99,
   * each in two campaigns, and members 10..19 of a customer with no valid email, so each identifier is there twice.
   */
  describe('a first fill, planned as ranges of the snapshot', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => hex(i)).sort();
    beforeAll(async () => {
      // The list's table, made as a first plan makes it (fillNewSnapshot), here empty.
      await sql`CREATE UNLOGGED TABLE ${sql.table(`audience_sync.list_targets_${SEGMENT}`)} (LIKE audience_sync.list_targets)`.execute(database.db);
      await sql`SELECT audience_sync.constrain_snapshot_table(${SEGMENT}::bigint)`.execute(database.db);
      await sql`SELECT audience_sync.attach_snapshot_table(${SEGMENT}::bigint)`.execute(database.db);
      await sql`
        INSERT INTO audience_sync.list_targets (audience_segment_id, customer_id, campaign_id, email_fingerprint, email_state, identifier)
        SELECT ${SEGMENT}::bigint, 'c' || i, c, 0, 'valid', decode(h, 'hex')
        FROM unnest(${sorted}::text[]) WITH ORDINALITY AS x (h, i), unnest(ARRAY['a', 'b']) AS c
        UNION ALL
        SELECT ${SEGMENT}::bigint, 'nobody' || i, 'a', NULL, 'missing', NULL FROM generate_series(1, 10) i`.execute(database.db);
    });

    const planRange = (batchNo: number, first: number, last: number, size: number) =>
      sql`
      INSERT INTO audience_sync.plan_ranges (list_sync_id, batch_no, first_identifier, last_identifier, size)
      VALUES (${listSyncId}, ${batchNo}, decode(${sorted[first]!}, 'hex'), decode(${sorted[last]!}, 'hex'), ${size})`.execute(database.db);

    it("a range claims each identifier from its first to its last once, as planned, and holds them in the batch's row", async () => {
      await planRange(20_000, 10, 59, 50);
      const batch = await claim(20_000, true);
      expect(batch?.size).toBe(50);
      const body = Buffer.concat(batch!.encoded.chunks).toString('latin1');
      expect((JSON.parse(body) as string[]).sort()).toEqual(sorted.slice(10, 60));
      const { rows } = await sql<{ n: number }>`SELECT cardinality(payload) AS n FROM audience_sync.batches WHERE batch_id = ${batch!.batchId}`.execute(
        database.db,
      );
      expect(rows[0]!.n).toBe(50);
    });

    it("a range's payload is in identifier order, so a fill's settle appends it to the ledger as it is", async () => {
      await planRange(20_003, 0, 9, 10);
      const batch = await claim(20_003, true);
      const body = Buffer.concat(batch!.encoded.chunks).toString('latin1');
      expect(JSON.parse(body) as string[]).toEqual(sorted.slice(0, 10));
    });

    it("a fill's settle that finds an identifier in the ledger is refused whole; its batches wait, confirmed, for the next sync's anti-join", async () => {
      const db = database.db;
      const { rows: sync } = await sql<{ id: number }>`
        INSERT INTO audience_sync.list_syncs (run_id, audience_segment_id, campaign_ids, action)
        SELECT run_id, ${SEGMENT}, '{}', 'sync' FROM audience_sync.list_syncs WHERE list_sync_id = ${listSyncId} RETURNING list_sync_id AS id`.execute(db);
      const fillSync = sync[0]!.id;
      await sql`
        INSERT INTO audience_sync.plan_ranges (list_sync_id, batch_no, first_identifier, last_identifier, size)
        VALUES (${fillSync}, 0, decode(${sorted[0]!}, 'hex'), decode(${sorted[49]!}, 'hex'), 50),
               (${fillSync}, 1, decode(${sorted[50]!}, 'hex'), decode(${sorted[99]!}, 'hex'), 50)`.execute(db);
      for (const batchNo of [0, 1]) {
        expect(await claimBatch(db, { listSyncId: fillSync, segmentId: SEGMENT, seq: batchNo + 1, operation: 'add', batchNo, ranged: true })).not.toBeNull();
      }
      await sql`UPDATE audience_sync.batches SET status = 'confirmed' WHERE list_sync_id = ${fillSync}`.execute(db);
      await sql`INSERT INTO audience_sync.list_members (audience_segment_id, identifier) VALUES (${SEGMENT}::bigint, decode(${sorted[70]!}, 'hex'))`.execute(
        db,
      );

      const refused = await settleInStep(db, SEGMENT, fillSync, [], null, [], { fill: true }).then(
        () => null,
        (e: unknown) => e as { code?: string },
      );
      expect(refused?.code).toBe('23505');
      const ledger = sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.list_members WHERE audience_segment_id = ${SEGMENT}::bigint`;
      expect((await ledger.execute(db)).rows[0]!.n).toBe(1);
      const { rows: waiting } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM audience_sync.batches WHERE list_sync_id = ${fillSync} AND status = 'confirmed' AND payload IS NOT NULL`.execute(db);
      expect(waiting[0]!.n).toBe(2);
      await applyConfirmedBatches(db, SEGMENT);
      expect((await ledger.execute(db)).rows[0]!.n).toBe(100);
    });

    it('a range whose snapshot no longer holds the size planned, or that is gone, claims nothing', async () => {
      await planRange(20_001, 60, 99, 41);
      expect(await claim(20_001, true)).toBeNull();
      expect(await claim(20_002, true)).toBeNull();
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audience_sync.batches WHERE seq IN (20002, 20003)`.execute(database.db);
      expect(rows[0]!.n).toBe(0);
    });
  });

  it('an identifier that is not 32 bytes stops the claim with a one-line error naming no identifier', async () => {
    await planBatch(5000, 900_000, 900_003);
    await sql`
      INSERT INTO audience_sync.plan_entries (list_sync_id, operation, batch_no, identifier)
      VALUES (${listSyncId}, 'add', 5000, decode('00ff', 'hex'))`.execute(database.db);
    const error = await claim(5000).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toBe('claimBatch: identifiers did not come back as JSON strings of 64 hex digits');
  });

  it("a first fill's confirmation appends its identifiers before it takes the list sync's row, so the fill's confirmations never queue behind each other's appends", async () => {
    // Every confirmation of a fill counts its identifiers on the list sync's row. Taken first, that row lock was held
    // for the whole append, and the fill's other confirmations waited for it, one after the other.
    const ids = await planBatch(6000, 1_000_000, 1_005_000);
    const batch = (await claim(6000))!;
    const membersSize = async () => {
      const { rows } = await sql<{ bytes: number }>`SELECT pg_relation_size('audience_sync.list_members')::bigint AS bytes`.execute(database.db);
      return rows[0]!.bytes;
    };
    const before = await membersSize();
    const holder = await database.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM audience_sync.list_syncs WHERE list_sync_id = $1 FOR UPDATE', [listSyncId]);
      const answer = {
        batchId: batch.batchId,
        operation: 'add' as const,
        size: batch.size,
        call: { httpStatus: 200, attempts: 1, waitedMs: 0, durationMs: 5 },
        result: { nbValidIdentifiers: batch.size, nbInvalidIdentifiers: 0, sampleInvalidIdentifiers: [] },
        answeredAt: new Date(),
      };
      const confirmed = confirmAnswers(database.db, listSyncId, [answer], { intoLedger: true });
      // The confirmation waits for the row; by then its 5,000 identifiers are written (uncommitted) into the ledger's table.
      let waiting = false;
      for (let i = 0; i < 200 && !waiting; i++) {
        const { rows } = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO audience_sync.list_members%'`.execute(database.db);
        waiting = rows[0]!.n === 1;
        if (!waiting) await new Promise((r) => setTimeout(r, 25));
      }
      expect(waiting).toBe(true);
      expect(await membersSize()).toBeGreaterThan(before);
      await holder.query('COMMIT');
      await confirmed;
    } finally {
      // On a failed expectation the row is still held: closing the connection lets it go, and the confirmation ends.
      holder.release(true);
    }
    const { rows } = await sql<{ members: number; status: string; payload: boolean; added: number }>`
      SELECT (SELECT count(*)::int FROM audience_sync.list_members m
              WHERE m.audience_segment_id = ${SEGMENT}::bigint AND m.identifier = ANY(${ids.map((h) => Buffer.from(h, 'hex'))}::bytea[])) AS members,
             b.status, b.payload IS NOT NULL AS payload, s.added
      FROM audience_sync.batches b JOIN audience_sync.list_syncs s USING (list_sync_id) WHERE b.batch_id = ${batch.batchId}`.execute(database.db);
    expect(rows[0]).toEqual({ members: 5000, status: 'confirmed', payload: false, added: 5000 });
  });
});

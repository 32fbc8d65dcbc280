import { sql, type Kysely } from 'kysely';

/**
 * Plans proportional to churn. Each list keeps a snapshot of the
 * target-group rows it was last planned from (list_targets: one row per
 * campaign and customer, with a 64-bit fingerprint of the email and the
 * verdict of the recipe), so a day's plan validates and hashes only the rows
 * that are new or whose email changed, and diffs the ledger only for the
 * identifiers those rows touch. The snapshot replaces the per-customer
 * identifier cache.
 *
 * lists.in_step records that the ledger equals the snapshot's identifiers
 * (the last sync of the list succeeded and nothing is uncertain): only then
 * may a plan look at the touched identifiers alone. The funnel counters are
 * kept with the snapshot, in the same transactions, and recounted from it
 * whenever a plan is not in step.
 *
 * plan_entries gets its batch number at planning time, so batches can be
 * claimed independently (several in flight, no key read between them), and
 * a confirmed batch keeps its identifiers until the ledger takes them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE audience_sync.list_targets (
      audience_segment_id bigint NOT NULL,
      customer_id         text NOT NULL,
      campaign_id         text NOT NULL,
      email_fingerprint   bigint,
      email_state         text NOT NULL CHECK (email_state IN ('no_customer', 'missing', 'invalid', 'valid')),
      identifier          bytea CHECK ((identifier IS NOT NULL) = (email_state = 'valid')),
      PRIMARY KEY (audience_segment_id, customer_id, campaign_id)
    )`.execute(db);
  await sql`
    CREATE INDEX list_targets_identifier_idx ON audience_sync.list_targets (audience_segment_id, identifier)
    WHERE identifier IS NOT NULL`.execute(db);

  await sql`
    CREATE TABLE audience_sync.lists (
      audience_segment_id bigint PRIMARY KEY,
      in_step             boolean NOT NULL DEFAULT false,
      identifiers         bigint NOT NULL DEFAULT 0,
      updated_at          timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  // scope: a campaign id, or '' for the list with each customer counted once.
  await sql`
    CREATE TABLE audience_sync.list_target_counts (
      audience_segment_id bigint NOT NULL,
      scope               text NOT NULL,
      email_state         text NOT NULL,
      n                   bigint NOT NULL,
      PRIMARY KEY (audience_segment_id, scope, email_state)
    )`.execute(db);

  // A payload is 50,000 random identifiers: compressing it only costs time.
  await sql`ALTER TABLE audience_sync.batches ALTER COLUMN payload SET STORAGE EXTERNAL`.execute(db);
  // Confirmed batches keep their identifiers until the ledger takes them (once per list sync).
  await sql`
    CREATE INDEX batches_unapplied_idx ON audience_sync.batches (audience_segment_id)
    WHERE status = 'confirmed' AND payload IS NOT NULL`.execute(db);

  await sql`DROP TABLE audience_sync.customer_identifiers`.execute(db);

  await sql`DROP TABLE audience_sync.plan_entries`.execute(db);
  await sql`
    CREATE UNLOGGED TABLE audience_sync.plan_entries (
      list_sync_id bigint NOT NULL,
      operation    text NOT NULL,
      batch_no     integer NOT NULL,
      identifier   bytea NOT NULL
    )`.execute(db);
  await sql`CREATE INDEX plan_entries_batch_idx ON audience_sync.plan_entries (list_sync_id, operation, batch_no)`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

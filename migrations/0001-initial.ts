import { sql, type Kysely } from 'kysely';

/**
 * The source contract (customers, campaigns, campaign_target_groups), the
 * identifier recipe, and the job's own tables: identifier cache, ledger, and
 * the run / list-sync / batch records. Operators may replace a source table by
 * a view of the same name and columns.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE SCHEMA IF NOT EXISTS audience_sync`.execute(db);

  // --- Source contract -------------------------------------------------------
  await sql`
    CREATE TABLE audience_sync.customers (
      customer_id text PRIMARY KEY,
      email       text
    )`.execute(db);
  await sql`
    CREATE TABLE audience_sync.campaigns (
      campaign_id         text PRIMARY KEY,
      name                text NOT NULL,
      advertiser_id       bigint NOT NULL,
      audience_segment_id bigint NOT NULL,
      starts_at           timestamptz NOT NULL,
      measurement_ends_at timestamptz NOT NULL
    )`.execute(db);
  await sql`
    CREATE TABLE audience_sync.campaign_target_groups (
      campaign_id text NOT NULL,
      customer_id text NOT NULL,
      PRIMARY KEY (campaign_id, customer_id)
    )`.execute(db);

  // --- The identifier recipe -------------------------------------------------
  // Trim ASCII white space, lowercase; a 64-hex value is already a SHA-256 and
  // passes unchanged; otherwise the WHATWG "valid e-mail address" syntax, a
  // dotted domain, at most 254 characters and a local part of at most 64, and
  // the identifier is SHA-256 of the UTF-8 bytes. NULL means "not a member".
  // Kept in SQL so a raw email never leaves the database.
  await sql`
    CREATE FUNCTION audience_sync.normalize_email(raw text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT lower(btrim(raw, E' \\t\\n\\r\\f')) $$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.normalized_email_identifier(e text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $fn$ SELECT CASE
      WHEN length(e) = 64 AND e ~ '^[0-9a-f]{64}$' THEN decode(e, 'hex')
      WHEN length(e) <= 254
       AND strpos(e, '@') BETWEEN 2 AND 65
       AND strpos(split_part(e, '@', 2), '.') > 0
       AND e ~ '^[a-z0-9.!#$%&''*+/=?^_\`{|}~-]+@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$'
      THEN sha256(convert_to(e, 'UTF8'))
    END $fn$`.execute(db);
  await sql`
    CREATE FUNCTION audience_sync.email_identifier(raw text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT audience_sync.normalized_email_identifier(audience_sync.normalize_email(raw)) $$`.execute(db);

  // --- Identifier cache: one row per customer ---------------------------------
  // email_fingerprint (a 64-bit hash of the raw value) tells a changed email without
  // keeping it, so a day's validation and hashing is proportional to churn.
  await sql`
    CREATE TABLE audience_sync.customer_identifiers (
      customer_id       text PRIMARY KEY,
      email_fingerprint bigint,
      email_state       text NOT NULL CHECK (email_state IN ('missing', 'invalid', 'valid')),
      identifier        bytea CHECK ((identifier IS NOT NULL) = (email_state = 'valid'))
    )`.execute(db);

  // --- Ledger: what each list holds, as Criteo confirmed it --------------------
  await sql`
    CREATE TABLE audience_sync.list_members (
      audience_segment_id bigint NOT NULL,
      identifier          bytea NOT NULL,
      PRIMARY KEY (audience_segment_id, identifier)
    )`.execute(db);

  // --- Records: runs, list syncs, batches -----------------------------------
  await sql`
    CREATE TABLE audience_sync.runs (
      run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      trigger     text NOT NULL,
      status      text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'aborted')),
      as_of       timestamptz NOT NULL,
      options     jsonb NOT NULL DEFAULT '{}',
      started_at  timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz,
      error       text
    )`.execute(db);
  await sql`
    CREATE TABLE audience_sync.list_syncs (
      list_sync_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      run_id              bigint NOT NULL REFERENCES audience_sync.runs ON DELETE CASCADE,
      audience_segment_id bigint NOT NULL,
      advertiser_id       bigint,
      campaign_ids        text[] NOT NULL,
      action              text NOT NULL CHECK (action IN ('sync', 'empty')),
      status              text NOT NULL DEFAULT 'planning'
                          CHECK (status IN ('planning', 'sending', 'succeeded', 'failed', 'incomplete', 'skipped')),
      target_group_size   bigint,
      missing_customers   bigint,
      without_email       bigint,
      invalid_emails      bigint,
      unique_identifiers  bigint,
      ledger_before       bigint,
      to_add              bigint,
      to_remove           bigint,
      added               bigint NOT NULL DEFAULT 0,
      removed             bigint NOT NULL DEFAULT 0,
      emptied             boolean NOT NULL DEFAULT false,
      reason              text,
      error_code          text,
      trace_id            text,
      stats_identifiers   bigint,
      stats_matches       bigint,
      stats_match_rate    double precision,
      stats_read_at       timestamptz,
      started_at          timestamptz NOT NULL DEFAULT now(),
      finished_at         timestamptz
    )`.execute(db);
  await sql`CREATE INDEX list_syncs_run_idx ON audience_sync.list_syncs (run_id)`.execute(db);
  await sql`CREATE INDEX list_syncs_segment_idx ON audience_sync.list_syncs (audience_segment_id, list_sync_id)`.execute(db);

  // A batch row is written before its request leaves (status 'sending', with
  // the identifiers in payload) and settled after: 'confirmed' (ledger
  // updated in the same transaction), 'failed' (Criteo certainly did not
  // apply it) or 'unknown' (it may have). 'sending' and 'unknown' rows are the
  // uncertainty the next plan re-sends; 'superseded' once a later sync did.
  await sql`
    CREATE TABLE audience_sync.batches (
      batch_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      list_sync_id        bigint NOT NULL REFERENCES audience_sync.list_syncs ON DELETE CASCADE,
      audience_segment_id bigint NOT NULL,
      seq                 integer NOT NULL,
      operation           text NOT NULL CHECK (operation IN ('add', 'remove', 'delete')),
      size                integer NOT NULL,
      status              text NOT NULL DEFAULT 'sending'
                          CHECK (status IN ('sending', 'confirmed', 'failed', 'unknown', 'superseded')),
      payload             bytea[],
      http_status         integer,
      nb_valid            integer,
      nb_invalid          integer,
      sample_invalid      text[],
      error_code          text,
      error_title         text,
      trace_id            text,
      attempts            integer NOT NULL DEFAULT 0,
      waited_ms           integer NOT NULL DEFAULT 0,
      duration_ms         integer,
      started_at          timestamptz NOT NULL DEFAULT now(),
      finished_at         timestamptz
    )`.execute(db);
  await sql`CREATE INDEX batches_list_sync_idx ON audience_sync.batches (list_sync_id)`.execute(db);
  await sql`
    CREATE INDEX batches_unsettled_idx ON audience_sync.batches (audience_segment_id)
    WHERE status IN ('sending', 'unknown')`.execute(db);

  // The diff of one list sync, written once and streamed to Criteo in
  // batches. Unlogged: it is recomputed from the ledger by the next run.
  await sql`
    CREATE UNLOGGED TABLE audience_sync.plan_entries (
      list_sync_id bigint NOT NULL,
      operation    text NOT NULL,
      identifier   bytea NOT NULL
    )`.execute(db);
  await sql`CREATE INDEX plan_entries_list_sync_idx ON audience_sync.plan_entries (list_sync_id, operation)`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

import { sql, type Kysely } from 'kysely';
import { DOMAIN_CHARACTERS, LOCAL_PART_CHARACTERS, LOWERCASE_FROM, LOWERCASE_TO, MARKS, WHITE_SPACE } from './unicode-17.js';

/**
 * Internationalised emails (RFC 6531): an address may hold UTF-8 in its local
 * part and U-labels in its domain, normalised as Criteo's own hasher does
 * (trim, lowercase by Unicode's default case mapping, hash the UTF-8 bytes,
 * domain as written), after Unicode NFC. ASCII addresses keep their path and
 * their identifiers.
 *
 * The case mapping is Unicode 17.0's, whatever the database's locale and
 * whatever ICU the server has: lower() under the ICU root collation
 * ("und-x-icu", never the database's LC_CTYPE), corrected for the
 * characters that server's ICU predates. calibrate_email_rule() finds those
 * by comparing ICU with the pinned table (migrations/unicode-17.ts) and
 * writes them into unicode_lower(); `migrate` runs it again when the ICU
 * library changes. NFC is Postgres' own normalize().
 *
 * lists.email_rule records the rule a list's snapshot was judged by (the
 * rule, the Postgres major version whose NFC tables it used, the ICU
 * version): a list whose stamp differs reads its whole target group and
 * judges again every row with an email beyond ASCII (see change-log.ts).
 * Existing lists have none, so their next plan does it once.
 */
/**
 * The pinned Unicode data as SQL literals: a function body takes no bound
 * parameters, and these are constants of this migration, never values.
 */
const pinned = (text: string) => sql.lit(text);

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE audience_sync.email_rule (
      one         boolean PRIMARY KEY DEFAULT true CHECK (one),
      rule        text NOT NULL,
      icu_version text,
      corrected   integer
    )`.execute(db);
  await sql`INSERT INTO audience_sync.email_rule (rule) VALUES ('RFC 6531, Unicode 17.0 case mapping')`.execute(db);
  await sql`ALTER TABLE audience_sync.lists ADD COLUMN email_rule text`.execute(db);
  // Customers whose email a change of rule made valid, per list sync (the report's "newly valid").
  await sql`ALTER TABLE audience_sync.list_syncs ADD COLUMN newly_valid_emails bigint`.execute(db);

  await createCalibration(db);
  await sql`SELECT audience_sync.calibrate_email_rule()`.execute(db);
  await createInternationalEmail(db);
  await createStamp(db);

  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.trimmed_email_identifier(t text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $fn$ SELECT CASE
      WHEN length(t) = 64 AND t ~ '^[0-9a-fA-F]{64}$' THEN decode(t, 'hex')
      WHEN length(t) <= 254
       AND strpos(t, '@') BETWEEN 2 AND 65
       AND strpos(split_part(t, '@', 2), '.') > 0
       AND t ~ '^[a-zA-Z0-9.!#$%&''*+/=?^_\`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$'
      THEN sha256(convert_to(lower(t COLLATE "C"), 'UTF8'))
      WHEN t ~ '[^\\x01-\\x7f]' THEN sha256(convert_to(audience_sync.international_email(t), 'UTF8'))
    END $fn$`.execute(db);
  // The normalised address, or NULL when the rule rejects it: what the identifier hashes (for tests and support).
  await sql`
    CREATE FUNCTION audience_sync.normalized_email(raw text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $fn$ SELECT CASE
      WHEN t ~ '^[0-9a-fA-F]{64}$' THEN NULL
      WHEN t ~ '[^\\x01-\\x7f]' THEN audience_sync.international_email(t)
      WHEN audience_sync.trimmed_email_identifier(t) IS NOT NULL THEN lower(t COLLATE "C")
    END FROM (SELECT btrim(raw, E' \\t\\n\\r\\f') AS t) trimmed $fn$`.execute(db);
}

/**
 * calibrate_email_rule(): (re)writes unicode_lower() for the server's ICU,
 * or as NULL when Postgres has no ICU or the database is not UTF-8 (then no
 * address beyond ASCII is valid, and preflight says why). Does nothing when
 * the ICU version is the one it last calibrated for.
 */
async function createCalibration(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION audience_sync.calibrate_email_rule() RETURNS text LANGUAGE plpgsql AS $fn$
    DECLARE
      icu oid := (SELECT oid FROM pg_catalog.pg_collation WHERE collname = 'und-x-icu' AND collnamespace = 'pg_catalog'::regnamespace);
      version text;
      fix_from text := '';
      fix_to text := '';
      body text;
    BEGIN
      -- One calibration at a time: CREATE OR REPLACE of one function from two sessions fails.
      PERFORM pg_catalog.pg_advisory_xact_lock(hashtext('audience_sync.calibrate_email_rule'));
      IF icu IS NULL OR pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
        version := 'none';
      ELSE
        version := coalesce(pg_catalog.pg_collation_actual_version(icu), 'unversioned');
      END IF;
      IF (SELECT icu_version FROM audience_sync.email_rule) IS NOT DISTINCT FROM version THEN RETURN version; END IF;
      IF version = 'none' THEN
        body := 'SELECT NULL::text';
      ELSE
        IF EXISTS (SELECT 1 FROM unnest(regexp_split_to_array(${pinned(LOWERCASE_FROM)}, ''), regexp_split_to_array(${pinned(LOWERCASE_TO)}, '')) AS p(u, l)
                   WHERE lower(u COLLATE "und-x-icu") NOT IN (u, l)) THEN
          RAISE EXCEPTION 'the server''s ICU (%) lowercases some letters unlike Unicode 17.0: addresses beyond ASCII cannot be judged exactly', version;
        END IF;
        -- The letters this ICU predates (it leaves them as they are): mapped first, by the pinned table.
        SELECT coalesce(string_agg(u, '' ORDER BY n), ''), coalesce(string_agg(l, '' ORDER BY n), '') INTO fix_from, fix_to
        FROM unnest(regexp_split_to_array(${pinned(LOWERCASE_FROM)}, ''), regexp_split_to_array(${pinned(LOWERCASE_TO)}, '')) WITH ORDINALITY AS p(u, l, n)
        WHERE lower(u COLLATE "und-x-icu") <> l;
        body := CASE WHEN fix_from = '' THEN 'SELECT lower(t COLLATE "und-x-icu")'
                ELSE format('SELECT lower(CASE WHEN t ~ %L THEN translate(t, %L, %L) ELSE t END COLLATE "und-x-icu")', '[' || fix_from || ']', fix_from, fix_to) END;
      END IF;
      EXECUTE format('CREATE OR REPLACE FUNCTION audience_sync.unicode_lower(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS %L', body);
      UPDATE audience_sync.email_rule SET icu_version = version, corrected = length(fix_from);
      RETURN version;
    END $fn$`.execute(db);
}

/**
 * international_email(t): the normalised address of a value (already
 * trimmed of ASCII white space) holding a character beyond ASCII, or NULL
 * when the rule rejects it. Regular expressions run under the "C" collation,
 * so no locale's character classes take part.
 */
async function createInternationalEmail(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ encoding: string }>`SELECT pg_catalog.getdatabaseencoding() AS encoding`.execute(db);
  if (rows[0]!.encoding !== 'UTF8') {
    await sql`
      CREATE FUNCTION audience_sync.international_email(t text) RETURNS text
      LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $fn$ SELECT NULL::text $fn$`.execute(db);
    return;
  }
  const local = pinned(`^[a-z0-9.!#$%&'*+/=?^_\`{|}~${LOCAL_PART_CHARACTERS}-]+$`);
  const domain = pinned(`^[a-z0-9${DOMAIN_CHARACTERS}-]+(\\.[a-z0-9${DOMAIN_CHARACTERS}-]+)+$`);
  const markFirst = pinned(`(^|\\.)[${MARKS}]`);
  await sql`
    CREATE FUNCTION audience_sync.international_email(t text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT AS $fn$
    DECLARE
      e text COLLATE "C" := audience_sync.unicode_lower(normalize(btrim(t, ${pinned(WHITE_SPACE)}), NFC));
      at integer := strpos(e, '@');
      local_part text COLLATE "C" := left(e, at - 1);
      domain text COLLATE "C" := substr(e, at + 1);
    BEGIN
      IF at < 2 OR octet_length(e) > 254 OR octet_length(local_part) > 64
         OR local_part !~ ${local}
         OR domain !~ ${domain}
         OR domain ~ '(^|\\.)-|-(\\.|$)|[^.]{64}'
         OR domain ~ ${markFirst}
         OR NOT domain IS NFKC NORMALIZED THEN
        RETURN NULL;
      END IF;
      RETURN e;
    END $fn$`.execute(db);
}

/**
 * email_rule_stamp(): the rule, the Postgres major version (its NFC tables)
 * and the ICU version it is calibrated for. Fails with the command to run
 * when the server's ICU changed since the last calibration.
 */
async function createStamp(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION audience_sync.email_rule_stamp() RETURNS text LANGUAGE plpgsql STABLE AS $fn$
    DECLARE
      icu oid := (SELECT oid FROM pg_catalog.pg_collation WHERE collname = 'und-x-icu' AND collnamespace = 'pg_catalog'::regnamespace);
      r audience_sync.email_rule;
    BEGIN
      SELECT * INTO r FROM audience_sync.email_rule;
      IF r.icu_version <> 'none' AND r.icu_version IS DISTINCT FROM coalesce(pg_catalog.pg_collation_actual_version(icu), 'unversioned') THEN
        RAISE EXCEPTION 'the server''s ICU library changed since the email rule was calibrated for ICU %: run \`audience-sync migrate\`', r.icu_version
          USING ERRCODE = 'object_not_in_prerequisite_state';
      END IF;
      RETURN format('%s; NFC of Postgres %s; ICU %s', r.rule, current_setting('server_version_num')::int / 10000, r.icu_version);
    END $fn$`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

import { sql, type Kysely } from 'kysely';

/**
 * The identifier recipe checks the WHATWG syntax (ASCII only) before it
 * lowercases, not after: Postgres' lower() folds some non-ASCII letters to
 * ASCII (U+212A KELVIN SIGN to 'k', U+0130 to 'i', depending on the server's
 * locale), which turned addresses nobody typed into valid ones. Customers
 * whose email has a non-ASCII character are re-validated on the next run.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION audience_sync.trimmed_email_identifier(t text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $fn$ SELECT CASE
      WHEN length(t) = 64 AND t ~ '^[0-9a-fA-F]{64}$' THEN decode(t, 'hex')
      WHEN length(t) <= 254
       AND strpos(t, '@') BETWEEN 2 AND 65
       AND strpos(split_part(t, '@', 2), '.') > 0
       AND t ~ '^[a-zA-Z0-9.!#$%&''*+/=?^_\`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$'
      THEN sha256(convert_to(lower(t), 'UTF8'))
    END $fn$`.execute(db);
  await sql`
    CREATE OR REPLACE FUNCTION audience_sync.email_identifier(raw text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT audience_sync.trimmed_email_identifier(btrim(raw, E' \\t\\n\\r\\f')) $$`.execute(db);
  await sql`DROP FUNCTION audience_sync.normalized_email_identifier(text)`.execute(db);
  await sql`DROP FUNCTION audience_sync.normalize_email(text)`.execute(db);
  await sql`
    UPDATE audience_sync.customer_identifiers ci SET email_fingerprint = NULL
    FROM audience_sync.customers c
    WHERE c.customer_id = ci.customer_id AND c.email ~ '[^\\x01-\\x7f]'`.execute(db);
}

export function down(): Promise<void> {
  return Promise.reject(new Error('migrations are forward-only'));
}

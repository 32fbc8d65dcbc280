import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * JSON logs on stderr (stdout is kept for `--json` output). Identifiers and
 * emails are never logged: counts and hash prefixes only.
 *
 * Secrets have three lines of defence. The first is never passing them to a
 * logger. The second redacts, by path, the fields where they live
 * (Authorization headers, client secrets, tokens, database URLs) wherever
 * an object carrying them is logged. The third replaces every secret value
 * the process knows (registered with `redactValue`: the client secret, the
 * database password, each access token) wherever it appears in a line, a
 * message or an error's text included.
 */

const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  'headers.cookie',
  '*.headers.cookie',
  'clientSecret',
  '*.clientSecret',
  '*.*.clientSecret',
  'client_secret',
  '*.client_secret',
  'secret',
  '*.secret',
  'password',
  '*.password',
  'access_token',
  '*.access_token',
  'accessToken',
  '*.accessToken',
  'token',
  '*.token',
  'databaseUrl',
  '*.databaseUrl',
  'connectionString',
  '*.connectionString',
  'CRITEO_CLIENT_SECRET',
  '*.CRITEO_CLIENT_SECRET',
  'DATABASE_URL',
  '*.DATABASE_URL',
];

const CENSOR = '[redacted]';
/** Shorter values are not registered: replacing every 'test' in a log would hide more than it protects. */
const MIN_SECRET_LENGTH = 6;
/** A long-lived process renews its token every quarter hour: keep the most recent values only. */
const MAX_SECRETS = 200;
const secrets = new Set<string>();

/**
 * Registers a secret value: from now on it is replaced by "[redacted]" in
 * every log line of every logger (as written, JSON-escaped and URL-encoded).
 */
export function redactValue(value: string | null | undefined): void {
  if (!value || value.length < MIN_SECRET_LENGTH) return;
  for (const form of [value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]) {
    secrets.delete(form);
    secrets.add(form);
  }
  while (secrets.size > MAX_SECRETS) secrets.delete(secrets.values().next().value as string);
}

/** `text` with every registered secret value replaced. For messages that do not go through a logger. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(CENSOR);
  return out;
}

/** A destination that scrubs registered secret values from each line before writing it. */
function scrubbing(destination: DestinationStream): DestinationStream {
  return { write: (line: string) => destination.write(secrets.size === 0 ? line : redactSecrets(line)) };
}

export function createLogger(level: string = process.env.LOG_LEVEL ?? 'info', destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: 'audience-sync' },
      redact: { paths: REDACT_PATHS, censor: CENSOR },
    },
    scrubbing(destination ?? pino.destination({ fd: 2, sync: true })),
  );
}

/** A logger that drops everything, for library use and quiet tests. */
export const silentLogger: Logger = pino({ level: 'silent' });

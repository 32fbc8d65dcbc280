import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { redactValue } from './logger.js';

/**
 * Every setting the job reads, checked in one place with its bounds. A bad
 * value stops the process with one line naming the setting (exit 2) before
 * anything is written. Secrets come from the environment or from a `*_FILE`
 * path (Kubernetes and Docker secrets), never from flags; every secret value
 * read is registered with the logger, which then never writes it.
 */

const int = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback);
const ratio = (fallback: number) => z.coerce.number().min(0).max(1).default(fallback);

const databaseUrl = z
  .string()
  .min(1)
  .refine((v) => /^postgres(ql)?:\/\//.test(v), { message: 'must be a postgres:// URL', abort: true })
  .refine(
    (v) => databaseUrlParts(v) !== undefined,
    'must be a URL whose parts are where they seem: percent-encode special characters in the user name and password (@ as %40, / as %2F, ? as %3F, # as %23)',
  );

/** A time zone the Intl API knows (node-cron reads SYNC_TIMEZONE through it), such as Europe/Paris or UTC. */
function isTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

const settingsSchema = z.object({
  DATABASE_URL: databaseUrl.optional(),
  CRITEO_API_URL: z.url({ protocol: /^https?$/ }).default('https://api.criteo.com'),
  CRITEO_API_VERSION: z
    .string()
    .regex(/^\d{4}-\d{2}$/, 'must look like 2026-07')
    .default('2026-07'),
  CRITEO_CLIENT_ID: z.string().min(1).optional(),
  // A stray newline or space (a secret file saved by an editor) would fail authentication later, less clearly.
  CRITEO_CLIENT_SECRET: z
    .string()
    .min(1)
    .regex(/^[^\s\p{Cc}]+$/u, 'must not contain white space or control characters')
    .optional(),
  CRITEO_MAX_CALLS_PER_MINUTE: int(1, 1_000_000, 200),
  // Processes expected to share the app's credentials: one that loses the database keeps to the limit divided by this.
  CRITEO_RATE_FALLBACK_PROCESSES: int(1, 1_000, 2),
  CRITEO_CONCURRENCY: int(1, 64, 4),
  CRITEO_MAX_ATTEMPTS: int(1, 20, 5),
  CRITEO_MAX_WAIT_SECONDS: int(0, 86_400, 900),
  CRITEO_TIMEOUT_SECONDS: int(1, 3_600, 120),
  CRITEO_BATCH_SIZE: int(1, 50_000, 50_000),
  CRITEO_RETRY_BASE_MS: int(1, 60_000, 1_000),
  LIST_CONCURRENCY: int(1, 32, 4),
  LOCK_WAIT_SECONDS: int(0, 86_400, 30),
  MAX_REMOVAL_RATIO: ratio(0.5),
  LOW_MATCH_RATE: ratio(0.3),
  SYNC_CRON: z.string().min(1).default('0 3 * * *'),
  SYNC_TIMEZONE: z.string().min(1).refine(isTimeZone, 'not a time zone (an IANA name such as Europe/Paris, or UTC)').optional(),
  PUSHGATEWAY_URL: z.url({ protocol: /^https?$/ }).optional(),
  // Unset by default: the benchmark measured 256MB slower than the server's 4MB for the 10M diff.
  PG_WORK_MEM: z
    .string()
    .regex(/^\d+(kB|MB|GB)$/, 'must look like 64MB')
    .optional(),
  // Named statements, parsed once a connection; off for a pooler that cannot carry them (PgBouncer before 1.21 in transaction mode).
  PG_PREPARED_STATEMENTS: z.enum(['on', 'off']).default('on'),
  // Days a list may go on reading only the source change log before it reads its whole target group again; 0: always whole.
  SOURCE_WHOLE_READ_DAYS: int(0, 365, 7),
  // A list with this many identifiers or more reads the source's side of its periodic check beside its plan, on a connection of its own; 0: none.
  SOURCE_CHECK_BESIDE_IDENTIFIERS: int(0, 1_000_000_000, 100_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  CONSOLE_HOST: z.string().min(1).default('127.0.0.1'),
  CONSOLE_PORT: int(0, 65_535, 8080),
  // A token is a password: long enough not to be guessed, and free of what a header or a file would mangle.
  CONSOLE_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
    .optional(),
  CONSOLE_BASIC_AUTH: z
    .string()
    .regex(/^([A-Za-z0-9._@-]{1,64}:[^\r\n]{12,}(\r?\n|$))+$/, 'must be lines of user:password (a password of at least 12 characters)')
    .optional(),
  CONSOLE_TRUSTED_PROXY: z.union([z.ipv4(), z.ipv6()], { error: 'must be the IP address of the authenticating proxy' }).optional(),
  CONSOLE_USER_HEADER: z
    .string()
    .regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name')
    .default('X-Forwarded-User'),
});

export interface CriteoSettings {
  apiUrl: string;
  apiVersion: string;
  clientId: string;
  clientSecret: string;
  maxCallsPerMinute: number;
  /** A process that cannot reach the shared rate budget keeps to maxCallsPerMinute / this. */
  rateFallbackProcesses: number;
  concurrency: number;
  maxAttempts: number;
  maxWaitSeconds: number;
  timeoutSeconds: number;
  batchSize: number;
  retryBaseMs: number;
}

export interface Config {
  databaseUrl: string;
  criteo: CriteoSettings;
  listConcurrency: number;
  lockWaitSeconds: number;
  maxRemovalRatio: number;
  lowMatchRate: number;
  syncCron: string;
  syncTimezone: string | undefined;
  pushgatewayUrl: string | undefined;
  logLevel: string;
  pgWorkMem: string | undefined;
  pgPreparedStatements: boolean;
  sourceWholeReadDays: number;
  sourceCheckBesideIdentifiers: number;
  console: ConsoleSettings;
}

/** The console's address and how it authenticates its users (any, all or none of the three). */
export interface ConsoleSettings {
  host: string;
  port: number;
  /** A bearer token (CONSOLE_TOKEN or CONSOLE_TOKEN_FILE). */
  token: string | undefined;
  /** Basic credentials (CONSOLE_BASIC_AUTH or CONSOLE_BASIC_AUTH_FILE: lines of user:password). */
  basicUsers: { user: string; password: string }[];
  /** The authenticating reverse proxy whose user header is trusted, and only from that address. */
  trustedProxy: string | undefined;
  userHeader: string;
}

/** What a command needs: `migrate` needs no Criteo credentials; `console` needs authentication unless it listens on loopback. */
export interface ConfigNeeds {
  database?: boolean;
  criteo?: boolean;
  console?: boolean;
}

type Env = Record<string, string | undefined>;

/** Reads `NAME`, or the file named by `NAME_FILE` (trailing line ends dropped: `echo` and editors add them). */
function withSecretFiles(env: Env, names: string[]): Env {
  const out: Env = { ...env };
  for (const name of names) {
    const file = env[`${name}_FILE`];
    if (!file) continue;
    if (env[name]) throw new ConfigError(`set ${name} or ${name}_FILE, not both`);
    try {
      out[name] = readFileSync(file, 'utf8').replace(/[\r\n]+$/, '');
    } catch {
      throw new ConfigError(`${name}_FILE: cannot read ${file}`);
    }
  }
  return out;
}

/** Empty strings count as unset, as in most twelve-factor tools. */
function dropEmpty(env: Env): Env {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
}

export function loadConfig(env: Env = process.env, needs: ConfigNeeds = { database: true, criteo: true }): Config {
  const raw = dropEmpty(withSecretFiles(env, ['CRITEO_CLIENT_SECRET', 'DATABASE_URL', 'CONSOLE_TOKEN', 'CONSOLE_BASIC_AUTH']));
  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'settings');
    // The value itself is never echoed: it may be a secret.
    throw new ConfigError(`${name}: ${issue.message}`);
  }
  const s = parsed.data;
  registerSecrets(s);
  if (needs.database && !s.DATABASE_URL) throw new ConfigError('DATABASE_URL is not set');
  if (needs.criteo) {
    if (!s.CRITEO_CLIENT_ID) throw new ConfigError('CRITEO_CLIENT_ID is not set');
    if (!s.CRITEO_CLIENT_SECRET) throw new ConfigError('CRITEO_CLIENT_SECRET (or CRITEO_CLIENT_SECRET_FILE) is not set');
  }
  const consoleSettings = consoleSettingsOf(s);
  if (needs.console) refuseOpenConsole(consoleSettings);
  return {
    databaseUrl: s.DATABASE_URL ? pgConnectionString(s.DATABASE_URL) : '',
    criteo: {
      apiUrl: s.CRITEO_API_URL.replace(/\/+$/, ''),
      apiVersion: s.CRITEO_API_VERSION,
      clientId: s.CRITEO_CLIENT_ID ?? '',
      clientSecret: s.CRITEO_CLIENT_SECRET ?? '',
      maxCallsPerMinute: s.CRITEO_MAX_CALLS_PER_MINUTE,
      rateFallbackProcesses: s.CRITEO_RATE_FALLBACK_PROCESSES,
      concurrency: s.CRITEO_CONCURRENCY,
      maxAttempts: s.CRITEO_MAX_ATTEMPTS,
      maxWaitSeconds: s.CRITEO_MAX_WAIT_SECONDS,
      timeoutSeconds: s.CRITEO_TIMEOUT_SECONDS,
      batchSize: s.CRITEO_BATCH_SIZE,
      retryBaseMs: s.CRITEO_RETRY_BASE_MS,
    },
    listConcurrency: s.LIST_CONCURRENCY,
    lockWaitSeconds: s.LOCK_WAIT_SECONDS,
    maxRemovalRatio: s.MAX_REMOVAL_RATIO,
    lowMatchRate: s.LOW_MATCH_RATE,
    syncCron: s.SYNC_CRON,
    syncTimezone: s.SYNC_TIMEZONE,
    pushgatewayUrl: s.PUSHGATEWAY_URL,
    logLevel: s.LOG_LEVEL,
    pgWorkMem: s.PG_WORK_MEM,
    pgPreparedStatements: s.PG_PREPARED_STATEMENTS === 'on',
    sourceWholeReadDays: s.SOURCE_WHOLE_READ_DAYS,
    sourceCheckBesideIdentifiers: s.SOURCE_CHECK_BESIDE_IDENTIFIERS,
    console: consoleSettings,
  };
}

type Settings = z.infer<typeof settingsSchema>;

function consoleSettingsOf(s: Settings): ConsoleSettings {
  const basicUsers = (s.CONSOLE_BASIC_AUTH ?? '')
    .split(/\r?\n/)
    .filter((line) => line !== '')
    .map((line) => ({ user: line.slice(0, line.indexOf(':')), password: line.slice(line.indexOf(':') + 1) }));
  for (const { password } of basicUsers) redactValue(password);
  redactValue(s.CONSOLE_TOKEN);
  return {
    host: s.CONSOLE_HOST,
    port: s.CONSOLE_PORT,
    token: s.CONSOLE_TOKEN,
    basicUsers,
    trustedProxy: s.CONSOLE_TRUSTED_PROXY,
    userHeader: s.CONSOLE_USER_HEADER,
  };
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Anywhere but loopback, the console serves only people it can name: without authentication it does not start. */
function refuseOpenConsole(c: ConsoleSettings): void {
  if (LOOPBACK.has(c.host) || c.token || c.basicUsers.length > 0 || c.trustedProxy) return;
  throw new ConfigError(
    `CONSOLE_HOST ${c.host} is not loopback: set CONSOLE_TOKEN_FILE, CONSOLE_BASIC_AUTH_FILE or CONSOLE_TRUSTED_PROXY, or listen on 127.0.0.1`,
  );
}

/** The secret values among the settings, for the logger to scrub wherever they would appear. */
function registerSecrets(s: { CRITEO_CLIENT_SECRET?: string | undefined; DATABASE_URL?: string | undefined; PUSHGATEWAY_URL?: string | undefined }): void {
  redactValue(s.CRITEO_CLIENT_SECRET);
  for (const url of [s.DATABASE_URL, s.DATABASE_URL && pgConnectionString(s.DATABASE_URL), s.PUSHGATEWAY_URL]) {
    if (!url) continue;
    redactValue(url);
    redactValue(passwordOf(url));
  }
}

function passwordOf(url: string): string | undefined {
  try {
    const password = new URL(url).password;
    return password ? decodeURIComponent(password) : undefined;
  } catch {
    return undefined;
  }
}

/** Where a postgres:// URL connects: its host (or socket directory), port and path, never its user or password. */
export interface DatabaseUrlParts {
  host: string;
  port: string;
  /** The path as written, `/name` (empty when the URL names no database). */
  path: string;
}

/**
 * The parts of a postgres:// URL, or undefined when it is not one whose parts
 * are where they seem. It must parse as a URL (as pg's own parser reads it),
 * and hold no `@` in its path or in a query parameter's name, nor a fragment:
 * an unescaped `@`, `/`, `?` or `#` in a password moves the rest of the
 * password into the host, port, path, query or fragment, and then either the
 * URL does not parse or such an `@` or fragment is left. (An `@` in a
 * parameter's value, `?user=sa@project.iam`, is the value's.) The parts are
 * therefore free of the password, and safe to print. With no host, pg
 * connects to PGHOST's, or localhost; a socket directory is `?host=`.
 */
export function databaseUrlParts(url: string): DatabaseUrlParts | undefined {
  const start = /^postgres(?:ql)?:\/\/([^/?#]*)/.exec(url);
  if (!start) return undefined;
  let u: URL;
  try {
    // A URL's parser refuses a user with no host (`user:pw@/db`), which pg reads as PGHOST's: a stand-in host for it.
    const noHost = start[1]!.endsWith('@');
    u = new URL(noHost ? `${start[0]}${NO_HOST}${url.slice(start[0].length)}` : url);
  } catch {
    return undefined;
  }
  if (u.hash !== '' || url.includes('#') || u.pathname.includes('@')) return undefined;
  const params = u.search.slice(1).split('&');
  if (params.some((p) => p.includes('@') && !(p.includes('=') && p.indexOf('=') < p.indexOf('@')))) return undefined;
  const hostname = u.hostname === NO_HOST ? '' : u.hostname;
  const host = u.searchParams.get('host') || hostname || process.env['PGHOST'] || 'localhost';
  return { host, port: u.port || '5432', path: u.pathname };
}

/** The stand-in host for a URL that names none (a reserved name: no real host has it). */
const NO_HOST = 'no-host.invalid';

/**
 * DATABASE_URL as pg is given it. pg treats `sslmode` prefer, require and
 * verify-ca as verify-full (the server's certificate is checked) and prints a
 * many-line SECURITY WARNING for each; naming verify-full, as that warning
 * advises for keeping this behaviour, keeps it without the warning. A URL
 * with `uselibpqcompat=true` asks for libpq's meaning of the modes and is
 * passed as written.
 */
export function pgConnectionString(url: string): string {
  if (/[?&]uselibpqcompat=/.test(url)) return url;
  return url.replace(/([?&]sslmode=)(prefer|require|verify-ca)(?=&|$)/, '$1verify-full');
}

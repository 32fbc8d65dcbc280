import pg from 'pg';
import { databaseUrlParts, loadConfig, type Config, type ConfigNeeds } from '../core/config.js';
import { CriteoClient } from '../criteo/client.js';
import { sharedRateLimiter } from '../criteo/shared-rate-limiter.js';
import { connect, connectionsFor, describeDatabaseUrl, ping, sessionSettingsOf, type DbHandle } from '../db/connection.js';
import { DatabaseUnreachableError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/logger.js';

/** Wires config, database, logger and client for a command, and closes them after. */
export interface App {
  config: Config;
  log: Logger;
  database: DbHandle;
  client: CriteoClient;
}

export async function withApp<T>(needs: ConfigNeeds, fn: (app: App) => Promise<T>, env = process.env): Promise<T> {
  const config = loadConfig(env, needs);
  const log = createLogger(config.logLevel);
  const database = connect(config.databaseUrl, connectionsFor(config.listConcurrency), sessionSettingsOf(config));
  // Every process with these credentials draws on one budget in the database it already uses (see shared-rate-limiter.ts).
  const limiter = config.criteo.clientId && config.databaseUrl ? sharedRateLimiter(config.criteo, config.databaseUrl, log) : undefined;
  const client = new CriteoClient(config.criteo, log, limiter);
  try {
    await ping(database.db).catch((error: unknown) => {
      throw new DatabaseUnreachableError(databaseFailure(error, config.databaseUrl));
    });
    return await fn({ config, log, database, client });
  } finally {
    await client.close();
    await database.close();
  }
}

/**
 * What went wrong connecting to the database at `url`, in one line that names
 * where (never the user or password) and the error's code: no such database,
 * refused credentials, no SSL or an untrusted certificate, or, when no server
 * answered, that it cannot be reached.
 */
export function databaseFailure(error: unknown, url: string): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  const at = describeDatabaseUrl(url);
  const parts = databaseUrlParts(url);
  const server = parts ? `${parts.host}:${parts.port}` : at;
  if (code === '3D000') return `Postgres at ${server} has no database ${databaseName(parts?.path)} (3D000)`;
  if (code === '28000' || code === '28P01') return `Postgres at ${at} refused the credentials (${code})`;
  if (typeof message === 'string' && /does not support SSL/i.test(message)) {
    return `Postgres at ${at} does not support SSL connections, which DATABASE_URL asks for (sslmode)`;
  }
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code))
    return `Postgres at ${at} presented a certificate that is not trusted (${code})`;
  // A server answered, and refused (too many connections, starting up, …).
  if (error instanceof pg.DatabaseError) return `Postgres at ${at} refused the connection (${String(code)})`;
  const why = typeof code === 'string' ? code : typeof message === 'string' && /timeout/i.test(message) ? 'timeout' : undefined;
  return `cannot reach Postgres at ${at}${why ? ` (${why})` : ''}`;
}

/** The database a URL's path names, quoted; with no path pg connects to the user's own. */
function databaseName(path: string | undefined): string {
  const name = path?.slice(1) ?? '';
  if (name === '') return "of the user's name";
  try {
    return JSON.stringify(decodeURIComponent(name));
  } catch {
    return JSON.stringify(name);
  }
}

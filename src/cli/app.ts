import { loadConfig, type Config, type ConfigNeeds } from '../core/config.js';
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
      const code = (error as { code?: string }).code;
      throw new DatabaseUnreachableError(`cannot reach Postgres at ${describeDatabaseUrl(config.databaseUrl)}${code ? ` (${code})` : ''}`);
    });
    return await fn({ config, log, database, client });
  } finally {
    await client.close();
    await database.close();
  }
}

import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON logs on stderr (stdout is kept for `--json` output). Secrets are
 * redacted by path as a second line of defence; the first is never passing
 * them to a logger. Identifiers and emails are never logged: counts only.
 */
export function createLogger(level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      level,
      base: { app: 'audience-sync' },
      redact: {
        paths: [
          'authorization',
          '*.authorization',
          'headers.authorization',
          '*.headers.authorization',
          'clientSecret',
          '*.clientSecret',
          'client_secret',
          'access_token',
          '*.access_token',
          'token',
          '*.token',
          'databaseUrl',
          '*.databaseUrl',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything, for library use and quiet tests. */
export const silentLogger: Logger = pino({ level: 'silent' });

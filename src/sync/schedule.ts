import cron from 'node-cron';
import type { Logger } from '../core/logger.js';
import type { RunSummary } from './run.js';

/**
 * The built-in scheduler: a long-running process that starts a run on each
 * SYNC_CRON tick. A tick while a run is still going is skipped, never queued.
 * SIGTERM or SIGINT lets the batches in flight finish, records the run as
 * interrupted, and resolves (the process then exits 0).
 */

export interface ScheduleOptions {
  cron: string;
  timezone?: string | undefined;
  log: Logger;
  runOnce: (signal: AbortSignal) => Promise<RunSummary>;
  /** Resolves to stop; defaults to SIGTERM or SIGINT. */
  stopWhen?: Promise<unknown>;
}

export function isValidCron(expression: string): boolean {
  return cron.validate(expression);
}

export async function runSchedule(options: ScheduleOptions): Promise<void> {
  const { log } = options;
  const controller = new AbortController();
  let current: Promise<unknown> | undefined;

  const task = cron.schedule(
    options.cron,
    () => {
      if (current) {
        log.warn('previous run still going; this tick is skipped');
        return;
      }
      log.info('scheduled run starting');
      current = options
        .runOnce(controller.signal)
        .then((summary) => log.info({ runId: summary.runId, status: summary.status }, 'scheduled run finished'))
        .catch((error: unknown) => log.error({ error: error instanceof Error ? error.message : String(error) }, 'scheduled run failed'))
        .finally(() => {
          current = undefined;
        });
    },
    { ...(options.timezone ? { timezone: options.timezone } : {}), noOverlap: true, name: 'audience-sync' },
  );
  log.info({ cron: options.cron, timezone: options.timezone ?? 'local' }, 'scheduler started');

  await (options.stopWhen ?? stopSignal());
  log.info('stopping: letting the batches in flight finish');
  await task.stop();
  controller.abort();
  await current;
  await task.destroy();
  log.info('scheduler stopped');
}

function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', on).off('SIGINT', on);
      resolve(signal);
    };
    process.on('SIGTERM', on).on('SIGINT', on);
  });
}

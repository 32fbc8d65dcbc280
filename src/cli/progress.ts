import cliProgress from 'cli-progress';
import type { Logger } from '../core/logger.js';
import type { ListProgress } from '../sync/run.js';

/** Plain function properties, so `update` can be handed on as a callback. */
export interface ProgressReporter {
  update: (p: ListProgress) => void;
  stop: () => void;
}

/**
 * A bar per list on a terminal; on anything else (cron, Kubernetes logs)
 * plain log lines at most every few seconds per list.
 */
export function progressReporter(log: Logger, stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  if (stream.isTTY) {
    const bars = new cliProgress.MultiBar(
      { format: 'list {list} [{bar}] {value}/{total} identifiers', hideCursor: true, clearOnComplete: false, stream },
      cliProgress.Presets.shades_classic,
    );
    const byList = new Map<string, cliProgress.SingleBar>();
    return {
      update: (p: ListProgress) => {
        let bar = byList.get(p.segmentId);
        if (!bar) {
          bar = bars.create(Math.max(p.planned, 1), 0, { list: p.segmentId });
          byList.set(p.segmentId, bar);
        }
        bar.setTotal(Math.max(p.planned, 1));
        bar.update(p.done, { list: p.segmentId });
      },
      stop: () => bars.stop(),
    };
  }
  const lastLogged = new Map<string, number>();
  return {
    update: (p: ListProgress) => {
      const now = Date.now();
      if (p.done !== p.planned && now - (lastLogged.get(p.segmentId) ?? 0) < 5000) return;
      lastLogged.set(p.segmentId, now);
      log.info({ list: p.segmentId, done: p.done, planned: p.planned }, 'resync progress');
    },
    stop: () => {},
  };
}

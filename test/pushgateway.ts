import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../dev/free-port.js';

/** Debian's Prometheus Pushgateway, a real peer for the metrics tests; they skip, saying why, without it. */
export const PUSHGATEWAY = process.env.PUSHGATEWAY_PATH ?? '/usr/bin/prometheus-pushgateway';
export const hasPushgateway = existsSync(PUSHGATEWAY);

/** A Pushgateway on a free loopback port, keeping its metrics in memory, ready when this resolves. */
export async function startPushgateway(): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pushgateway-'));
  // Debian's build persists to /var/lib/prometheus by default: an empty file name keeps metrics in memory only.
  const child: ChildProcess = spawn(PUSHGATEWAY, [`--web.listen-address=127.0.0.1:${port}`, '--persistence.file=', '--log.level=warn'], {
    cwd: dir,
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the Pushgateway did not start on ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

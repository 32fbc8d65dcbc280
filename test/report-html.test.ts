import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CriteoClient } from '../src/criteo/client.js';
import { silentLogger } from '../src/core/logger.js';
import type { CoverageReport } from '../src/report/types.js';
import { SAMPLE_SEGMENTS, applySampleChurn, loadSampleData } from '../src/source/sample-data.js';
import { createWorld, runCli, type World } from './helpers.js';

/**
 * The demo's story (sample data, a run, a day of churn, a second run), then
 * `report --format html` opened in a real headless Chromium: the funnel and
 * the trend it draws must carry the JSON report's numbers, and the JSON
 * report's must be what the sandbox holds and reports. A screenshot is kept
 * in test-artifacts/ for a person to look at.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const ARTIFACTS = resolve('test-artifacts');
const DAY = 86_400_000;
if (!hasChromium) console.warn(`report-html.test.ts: SKIPPED, ${CHROMIUM} is absent (Debian: apt-get install -y chromium)`);

let world: World;
let json: CoverageReport;
let htmlFile: string;

beforeAll(async () => {
  world = await createWorld('report_html', { segments: SAMPLE_SEGMENTS });
  const db = world.database.db;
  const now = new Date();
  await loadSampleData(db, now);
  expect((await world.run({ asOf: now })).status).toBe('succeeded');
  await applySampleChurn(db);
  expect((await world.run({ asOf: new Date(now.getTime() + DAY) })).status).toBe('succeeded');

  mkdirSync(ARTIFACTS, { recursive: true });
  htmlFile = join(ARTIFACTS, 'coverage.html');
  const [html, asJson] = await Promise.all([
    runCli(['report', '--format', 'html', '--out', htmlFile], world.env),
    runCli(['report', '--format', 'json'], world.env),
  ]);
  expect(html.status, html.stderr).toBe(0);
  expect(asJson.status, asJson.stderr).toBe(0);
  json = JSON.parse(asJson.stdout) as CoverageReport;
});
afterAll(async () => world?.close());

const fmt = (v: number) => v.toLocaleString('en-US');
const pct = (v: number | null) => (v === null ? '–' : `${(v * 100).toFixed(1)}%`);

describe('the coverage report after the demo', () => {
  it('holds, in JSON, what the sandbox holds and reports for every list', async () => {
    expect(json.lists.map((l) => l.segmentId)).toEqual(['9001', '9002', '9003', '9004']);
    const client = new CriteoClient(world.config.criteo, silentLogger);
    try {
      for (const list of json.lists) {
        expect(
          list.runs.map((r) => r.runId),
          list.segmentId,
        ).toHaveLength(2);
        expect(list.latest!.synced, list.segmentId).toBe(world.sandbox.members(list.segmentId).size);
        if (list.segmentId === '9004') {
          expect(list.latest!.criteo).toBeNull(); // long over: never touched, never read
          continue;
        }
        const stats = (await client.getStatistics(list.segmentId)).body;
        expect(list.latest!.criteo, list.segmentId).toMatchObject({ identifiers: stats.numberOfIdentifiers, matched: stats.numberOfMatches });
      }
    } finally {
      await client.close();
    }
    // The shared list's funnel per campaign, and the ended one emptied.
    const shared = json.lists.find((l) => l.segmentId === '9002')!;
    expect(shared.latest!.campaigns.map((c) => c.campaignId)).toEqual(['loyalty', 'loyalty-plus']);
    expect(json.lists.find((l) => l.segmentId === '9003')!.latest).toMatchObject({ action: 'empty', synced: 0 });
    expect(json.warnings).toEqual([]);
  });

  it.skipIf(!hasChromium)(
    `renders in headless Chromium a funnel and a trend per list with the JSON report's numbers, fetching nothing${hasChromium ? '' : ` (SKIPPED: ${CHROMIUM} is absent; apt-get install -y chromium)`}`,
    async () => {
      const { chromium } = await import('playwright-core');
      const profile = mkdtempSync(join(tmpdir(), 'audience-sync-chromium-'));
      const browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
        viewport: { width: 1280, height: 900 },
      });
      try {
        const page = await browser.newPage();
        const url = pathToFileURL(htmlFile).href;
        const requests: string[] = [];
        page.on('request', (r) => requests.push(r.url()));
        await page.goto(url);
        expect(requests).toEqual([url]); // self-contained: no script, style, font or image fetched

        for (const list of json.lists) {
          const section = page.locator(`section#list-${list.segmentId}`);
          await expect.poll(() => section.isVisible()).toBe(true);
          const latest = list.latest!;
          const stages: Record<string, number | null> = {
            targetGroup: latest.funnel?.targetGroup ?? null,
            withEmail: latest.funnel?.withEmail ?? null,
            validEmail: latest.funnel?.validEmail ?? null,
            uniqueIdentifiers: latest.funnel?.uniqueIdentifiers ?? null,
            synced: latest.synced,
            criteoIdentifiers: latest.criteo?.identifiers ?? null,
            matched: latest.criteo?.matched ?? null,
          };
          for (const [stage, value] of Object.entries(stages)) {
            const row = section.locator(`.funnel [data-stage="${stage}"]`);
            if (latest.funnel === null && ['targetGroup', 'withEmail', 'validEmail', 'uniqueIdentifiers'].includes(stage)) {
              expect(await row.count(), `${list.segmentId} ${stage}`).toBe(0);
              continue;
            }
            expect(await row.isVisible(), `${list.segmentId} ${stage}`).toBe(true);
            const count = (await row.locator('.count').innerText()).split('\n')[0]!.trim();
            expect(count, `${list.segmentId} ${stage}`).toBe(value === null ? 'not read yet' : fmt(value));
          }
          expect((await section.locator('[data-kpi="matchRate"] .kpi-value').innerText()).trim()).toBe(pct(latest.matchRate));
          expect((await section.locator('[data-kpi="coverage"] .kpi-value').innerText()).trim()).toBe(pct(latest.coverage));
          if (latest.criteo) expect(await section.locator('.meta').first().innerText()).toContain(`${latest.criteo.readAt.slice(0, 16).replace('T', ' ')} UTC`);

          // The trend: one point per run in range, each series carrying the JSON figure.
          const counts = section.locator(`svg[data-chart="counts-${list.segmentId}"]`);
          const rates = section.locator(`svg[data-chart="rate-${list.segmentId}"]`);
          expect(await counts.isVisible()).toBe(true);
          expect(await rates.isVisible()).toBe(true);
          const box = await counts.boundingBox();
          expect(box!.width).toBeGreaterThan(300);
          const series = async (chart: typeof counts, key: string) =>
            Object.fromEntries(
              await chart.locator(`circle[data-series="${key}"]`).evaluateAll((cs: { getAttribute(name: string): string | null }[]) =>
                // Runs in the page (the tests have no DOM types): each point's x and value.
                cs.map((c): [string, number] => [String(c.getAttribute('data-x')), Number(c.getAttribute('data-value'))]),
              ),
            );
          const expected = (pick: (r: CoverageReport['lists'][number]['runs'][number]) => number | null) =>
            Object.fromEntries(list.runs.flatMap((r) => (pick(r) === null ? [] : [[String(r.runId), pick(r)]])));
          expect(await series(counts, 'synced')).toEqual(expected((r) => r.synced));
          expect(await series(counts, 'criteoIdentifiers')).toEqual(expected((r) => r.criteo?.identifiers ?? null));
          expect(await series(counts, 'matched')).toEqual(expected((r) => r.criteo?.matched ?? null));
          expect(await series(rates, 'matchRate')).toEqual(expected((r) => r.matchRate));
          expect(await counts.locator('polyline').count()).toBeGreaterThan(0);
        }
        // The numbers a CSM reads first: 9001's funnel as printed.
        const first = json.lists[0]!.latest!;
        expect(await page.locator('#list-9001 .kpis').innerText()).toContain(
          `${fmt(first.criteo!.matched!)} matched ÷ ${fmt(first.criteo!.identifiers!)} identifiers in Criteo`,
        );
        expect(await page.locator('[data-warnings]').getAttribute('data-warnings')).toBe('0');

        const shot = join(ARTIFACTS, 'coverage-report.png');
        await page.screenshot({ path: shot, fullPage: true });
        expect(statSync(shot).size).toBeGreaterThan(50_000);
      } finally {
        await browser.close();
        rmSync(profile, { recursive: true, force: true });
      }
    },
  );
});

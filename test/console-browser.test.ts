import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { sql } from 'kysely';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLE_SEGMENTS, applySampleChurn, loadSampleData } from '../src/source/sample-data.js';
import pg from 'pg';
import { MAX_RESYNCS_IN_FLIGHT } from '../src/console/resync.js';
import { LIST_LOCK_CLASS } from '../src/db/locks.js';
import { CLIENT_SECRET, createWorld, seedListsOfTen, type World } from './helpers.js';
import { ALICE, startTestConsole, type TestConsole } from './console-world.js';
import { LeakScanner } from './leak-scan.js';

/**
 * A CSM's visit in Debian's headless Chromium, against a real Postgres and
 * the sandbox: the lists page, a list's page with the report's charts, the
 * Resync button, the run's progress until the page ends on its outcome, and
 * the new run in the history, recorded as started by console:alice. The
 * page's own script runs under the console's CSP with no violation, and no
 * page shows a raw email. A seventeenth resync, while sixteen wait for
 * their lists, is refused on a page that says why. Screenshots go to
 * test-artifacts/console/.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = resolve('test-artifacts/console');
const DAY = 86_400_000;

let world: World;
let console: TestConsole;
let browser: BrowserContext;
let profile: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`console-browser.test.ts needs Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  world = await createWorld('console_browser', { segments: SAMPLE_SEGMENTS });
  const db = world.database.db;
  const now = new Date();
  await loadSampleData(db, now);
  expect((await world.run({ asOf: new Date(now.getTime() - DAY) })).status).toBe('succeeded');
  // A day of changes waiting for the CSM's resync, sent in small, slowed batches so its progress can be watched.
  await applySampleChurn(db);
  world.sandbox.setFaults({ random: { slowRate: 1, slowMs: 400, operations: ['patch'] } });
  console = await startTestConsole(world, { CONSOLE_BASIC_AUTH: `${ALICE.user}:${ALICE.password}`, CRITEO_BATCH_SIZE: '100', CRITEO_CONCURRENCY: '2' });
  mkdirSync(ARTIFACTS, { recursive: true });
  const { chromium } = await import('playwright-core');
  profile = mkdtempSync(join(tmpdir(), 'audience-sync-console-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 900 },
    httpCredentials: { username: ALICE.user, password: ALICE.password },
  });
});
afterAll(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await console?.close();
  await world?.close();
});

/** A page that records every console error (a CSP violation is one) and keeps every HTML it showed for the leak scan. */
function watched(page: Page, errors: string[], seen: { url: string; html: string }[]) {
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  page.on(
    'load',
    () =>
      void page.content().then(
        (html) => seen.push({ url: page.url(), html }),
        () => {},
      ),
  );
  return page;
}

describe('the console in a browser', () => {
  it('lists, follows a list, resyncs it, shows the progress to the outcome, and the run in the history', async () => {
    const errors: string[] = [];
    const seen: { url: string; html: string }[] = [];
    const page = watched(await browser.newPage(), errors, seen);
    const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

    await page.goto(`${console.url}/`);
    expect(new URL(page.url()).pathname).toBe('/lists');
    await expect.poll(() => page.locator('table[data-lists] tbody tr').count()).toBe(4);
    expect(await page.locator('[data-user]').innerText()).toBe('alice');
    await shot('1-lists');

    await page.locator('a[href="/lists/9001"]').first().click();
    await page.waitForURL(/\/lists\/9001$/);
    expect(await page.locator('svg[data-chart="counts-9001"]').isVisible()).toBe(true);
    expect(await page.locator('.funnel [data-stage="targetGroup"]').isVisible()).toBe(true);
    await shot('2-list-9001');

    await page.getByRole('link', { name: 'Full resync…' }).click();
    expect(await page.locator('h1').innerText()).toBe('Full resync of list 9001?');
    expect(await page.locator('main').innerText()).toContain('sends Criteo every identifier this list should hold');
    await page.getByRole('link', { name: 'No, back to list 9001' }).click();

    await page.getByRole('button', { name: 'Resync', exact: true }).click();
    await page.waitForURL(/\/runs\/\d+\?started=9001$/);
    const runId = Number(/\/runs\/(\d+)/.exec(page.url())![1]);
    expect(await page.locator('[data-notice]').innerText()).toBe(`Resync of list 9001 started as run ${runId}.`);
    const progress = page.locator('[data-list-progress="9001"]');
    await expect.poll(async () => Number((await progress.getAttribute('data-done')) ?? 0), { timeout: 30_000, interval: 100 }).toBeGreaterThan(0);
    expect(await progress.innerText()).toMatch(/sending: [\d,]+ of [\d,]+ identifiers confirmed by Criteo/);
    await shot('3-run-in-progress');

    await page.locator('[data-outcome]').waitFor({ timeout: 60_000 });
    expect(await page.locator('[data-outcome]').getAttribute('data-outcome')).toBe('succeeded');
    expect(await page.locator('[data-trigger]').innerText()).toBe('console:alice');
    expect(await page.locator('[data-run-list="9001"] [data-status]').first().getAttribute('data-status')).toBe('succeeded');
    await shot('4-run-outcome');

    await page.getByRole('link', { name: 'Runs', exact: true }).click();
    const newest = page.locator('table[data-runs] tbody tr').first();
    expect(await newest.getAttribute('data-run')).toBe(String(runId));
    expect(await newest.locator('[data-col="trigger"]').innerText()).toBe('console:alice');
    await page.locator('#trigger').fill('console');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => page.locator('table[data-runs] tbody tr').count()).toBe(1);
    await shot('5-runs');

    for (const path of ['/campaigns', '/criteo-lists']) {
      await page.goto(`${console.url}${path}`);
      await shot(path.slice(1));
    }
    const recorded = await world.database.db.selectFrom('audience_sync.runs').select('trigger').where('run_id', '=', runId).executeTakeFirstOrThrow();
    expect(recorded.trigger).toBe('console:alice');
    expect(errors).toEqual([]);

    const { rows } = await sql<{ email: string | null }>`SELECT email FROM audience_sync.customers`.execute(world.database.db);
    const scan = new LeakScanner({
      emails: rows.map((r) => r.email),
      secrets: [
        { name: 'criteo client secret', value: CLIENT_SECRET },
        { name: 'password', value: ALICE.password },
      ],
    });
    await expect.poll(() => seen.length).toBeGreaterThan(8);
    for (const { url, html } of seen) scan.text(url, html, { identifiers: true });
    expect(scan.leaks).toEqual([]);
  });

  it('refuses a browser without credentials (headless Chromium cannot answer the sign-in prompt, so it asks as a script would)', async () => {
    const { chromium } = await import('playwright-core');
    const anonymousBrowser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const context = await anonymousBrowser.newContext();
      for (const path of ['/lists', '/lists/9001', '/runs']) {
        const res = await context.request.get(`${console.url}${path}`);
        expect(res.status(), path).toBe(401);
        expect(res.headers()['www-authenticate']).toMatch(/^Basic /);
        const body = await res.text();
        expect(body).toContain('Refused: sign in first');
        expect(body).not.toContain('<table');
      }
    } finally {
      await anonymousBrowser.close();
    }
  });

  it('says so on its page when a seventeenth resync is clicked while sixteen are going', async () => {
    // Sixteen lists held by another session (as a daily run would hold them): their resyncs wait for them, going.
    const lists = Array.from({ length: MAX_RESYNCS_IN_FLIGHT + 1 }, (_, i) => String(901 + i));
    const busy = await createWorld('console_busy', { segments: lists.map((id) => ({ id, advertiserId: '1' })) });
    const holder = new pg.Client({ connectionString: busy.databaseUrl });
    let busyConsole: TestConsole | undefined;
    try {
      await seedListsOfTen(busy.database.db, lists, 'c');
      await holder.connect();
      for (const id of lists.slice(0, -1)) await holder.query('SELECT pg_advisory_lock($1::int, $2::int)', [LIST_LOCK_CLASS, Number(id)]);
      busyConsole = await startTestConsole(busy, { CONSOLE_BASIC_AUTH: `${ALICE.user}:${ALICE.password}`, LOCK_WAIT_SECONDS: '60' });
      const page = await browser.newPage();
      for (const id of lists) {
        await page.goto(`${busyConsole.url}/lists/${id}`);
        const answered = page.waitForResponse((r) => r.url().endsWith(`/lists/${id}/resync`));
        await page.getByRole('button', { name: 'Resync', exact: true }).click();
        const status = (await answered).status();
        if (id === lists.at(-1)) expect(status).toBe(503);
        else await page.waitForURL(new RegExp(`/runs/\\d+\\?started=${id}$`));
      }
      expect(await page.locator('h1').innerText()).toBe('Too many resyncs');
      expect(await page.locator('main').innerText()).toContain(
        `${MAX_RESYNCS_IN_FLIGHT} resyncs are already going in this console: start this one again once one of them has finished.`,
      );
      await page.screenshot({ path: join(ARTIFACTS, '6-too-many-resyncs.png'), fullPage: true });
      expect(busy.sandbox.members(lists.at(-1)!).size).toBe(0);
      await page.close();
    } finally {
      await holder.end().catch(() => {});
      await busyConsole?.close();
      await busy.close();
    }
  });
});

import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** contract/ carries Criteo's OpenAPI excerpt so the package is self-contained; it must stay the shared one. */
const vendored = 'contract/criteo-marketing-solutions-2026-07.contact-list.openapi.json';
const shared = '../shared/criteo/criteo-marketing-solutions-2026-07.contact-list.openapi.json';

describe('the vendored Criteo contract', () => {
  it.skipIf(!existsSync(shared))('equals shared/criteo (copy it again if Criteo published a new excerpt)', () => {
    expect(readFileSync(vendored, 'utf8')).toBe(readFileSync(shared, 'utf8'));
  });

  it('is Criteo API version 2026-07, the version the client defaults to', async () => {
    const doc = JSON.parse(readFileSync(vendored, 'utf8')) as { info: { version: string } };
    const { loadConfig } = await import('../src/core/config.js');
    expect(doc.info.version).toBe(loadConfig({}, {}).criteo.apiVersion);
  });
});

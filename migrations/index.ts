import type { Migration } from 'kysely';
import * as initial from './0001-initial.js';

/** Numbered, forward-only, one change each. Static so a bundled build needs no file scanning. */
export const migrations: Record<string, Migration> = {
  '0001-initial': initial,
};

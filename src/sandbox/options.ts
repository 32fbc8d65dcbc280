/**
 * Sandbox options from outside the code: the JSON options file (CLI, demo), the
 * segment bodies of the admin route, and the checks every option set goes through.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { parseFaultPlan } from './faults.js';
import { isSegmentId } from './segment-store.js';
import type { SandboxOptions } from './types.js';
import { isVersionName, parseSunset, VERSION_PHASES } from './version.js';

/** The first issue of a zod error as `path: message`. */
export function formatZodError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid input';
  const path = issue.path
    .map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`))
    .join('')
    .replace(/^\./, '');
  return `${path || '(root)'}: ${issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')}` : issue.message}`;
}

const segmentIdSchema = z.union([z.string(), z.number().int()]).transform(String).refine(isSegmentId, {
  message: 'segment ids are positive int32 numbers written as strings',
});

/** A segment as the options file and POST /_sandbox/segments give it. */
export const adminSegmentSchema = z.strictObject({
  id: segmentIdSchema,
  advertiserId: z.union([z.string().min(1), z.number().int()]).transform(String),
  name: z.string().optional(),
  members: z.array(z.string()).optional(),
});

const optionsFileSchema = z.strictObject({
  port: z.number().int().min(0).max(65535).optional(),
  host: z.string().min(1).optional(),
  apiVersion: z.string().refine(isVersionName, { message: 'must be one path segment, e.g. 2026-07' }).optional(),
  versionPhase: z.enum(VERSION_PHASES).optional(),
  sunset: z
    .string()
    .refine((v) => Number.isFinite(Date.parse(v)), { message: 'must be a date, e.g. 2027-07-01' })
    .nullable()
    .optional(),
  clients: z
    .array(
      z.strictObject({
        clientId: z.string().min(1),
        clientSecret: z.string().min(1),
        advertiserIds: z.union([z.literal('*'), z.array(z.string())]),
      }),
    )
    .optional(),
  segments: z.array(adminSegmentSchema).optional(),
  tokenTtlSeconds: z.number().int().min(1).optional(),
  rateLimitPerMinute: z.number().min(0).nullable().optional(),
  matchShare: z.number().min(0).max(1).optional(),
  faults: z.unknown().optional(),
  validateResponses: z.boolean().optional(),
  contractPath: z.string().optional(),
  maxBodyBytes: z.number().int().min(1024).optional(),
  recordReceivedIdentifiers: z.boolean().optional(),
});

function optionsFileError(path: string, error: unknown): Error {
  return new Error(`sandbox options ${path}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

/**
 * Reads sandbox options from a JSON file (for the CLI / demo). `contractPath` is
 * resolved relative to the file; `faults` is checked with parseFaultPlan.
 */
export function loadSandboxOptionsFromFile(path: string): SandboxOptions {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw optionsFileError(path, error);
  }
  const result = optionsFileSchema.safeParse(json);
  if (!result.success) throw new Error(`sandbox options ${path}: ${formatZodError(result.error)}`);
  const { faults, contractPath, rateLimitPerMinute, ...rest } = result.data;
  const options: SandboxOptions = { ...rest };
  if (rateLimitPerMinute !== undefined) options.rateLimitPerMinute = rateLimitPerMinute ?? 0;
  if (contractPath !== undefined) options.contractPath = isAbsolute(contractPath) ? contractPath : resolve(dirname(path), contractPath);
  if (faults !== undefined && faults !== null) {
    try {
      options.faults = parseFaultPlan(faults);
    } catch (error) {
      throw optionsFileError(path, error);
    }
  }
  return options;
}

/** Refuses option values the sandbox cannot honour; the TS types cannot say them all. */
export function checkOptions(opts: SandboxOptions): void {
  if (opts.matchShare !== undefined && !(opts.matchShare >= 0 && opts.matchShare <= 1)) throw new Error('sandbox: matchShare must be within 0..1');
  if (opts.tokenTtlSeconds !== undefined && !(opts.tokenTtlSeconds > 0)) throw new Error('sandbox: tokenTtlSeconds must be > 0');
  if (opts.clients !== undefined && opts.clients.length === 0) throw new Error('sandbox: clients must not be empty');
  if (opts.rateLimitPerMinute !== undefined && opts.rateLimitPerMinute !== null && !(opts.rateLimitPerMinute >= 0)) {
    throw new Error('sandbox: rateLimitPerMinute must be >= 0 (0, null or Infinity = no limit)');
  }
  if (opts.apiVersion !== undefined && !isVersionName(opts.apiVersion)) throw new Error('sandbox: apiVersion must be one path segment, e.g. 2026-07');
  if (opts.versionPhase !== undefined && !VERSION_PHASES.includes(opts.versionPhase)) {
    throw new Error(`sandbox: versionPhase must be one of ${VERSION_PHASES.join(', ')}`);
  }
  parseSunset(opts.sunset);
}

/**
 * The API version the sandbox serves, and where it stands in Criteo's version
 * lifecycle (shared/criteo/README.md, "Version lifecycle"): in a version's last
 * months every answer carries `Deprecation: true` and a `Sunset` date; after
 * the sunset the version answers 410. Another version answers 404. The token
 * endpoint is not versioned and none of this touches it.
 *
 * The contract excerpt is one version's (its paths start with it); a served
 * version of another name keeps the same paths (Criteo: the 2027-01 release
 * candidate keeps the contact-list paths), so its requests are matched and
 * validated as the contract's version.
 */
import { loadConfig } from '../core/config.js';
import { ApiProblem } from './problems.js';

export const VERSION_PHASES = ['supported', 'deprecated', 'retired'] as const;

/** Where the served version stands: answering, answering with deprecation headers, or answering 410. */
export type VersionPhase = (typeof VERSION_PHASES)[number];

export interface VersionLifecycle {
  phase: VersionPhase;
  /** Sent as the Sunset header (an HTTP date) on every API answer when set. */
  sunset: Date | null;
}

/** Version names are one path segment: 2026-07, preview. */
const VERSION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const API_PREFIX = /^\/([^/]+)(\/marketing-solutions(?:\/.*)?)$/;

/** The version the job's client calls when CRITEO_API_VERSION is unset: the sandbox serves it by default. */
export function clientDefaultApiVersion(): string {
  return loadConfig({}, {}).criteo.apiVersion;
}

export function isVersionName(version: string): boolean {
  return VERSION_NAME.test(version);
}

/** A sunset as options give it (a Date, an ISO date or instant, an HTTP date); throws when it is not a date. */
export function parseSunset(value: string | Date | null | undefined): Date | null {
  if (value === undefined || value === null) return null;
  const at = value instanceof Date ? value.getTime() : Date.parse(value);
  if (!Number.isFinite(at)) throw new Error(`sandbox: sunset must be a date (e.g. 2027-07-01), got ${JSON.stringify(value)}`);
  return new Date(at);
}

/** The version the contract's paths are written under (its first API path). */
export function contractVersionOf(paths: readonly string[]): string {
  for (const path of paths) {
    const version = API_PREFIX.exec(path)?.[1];
    if (version !== undefined) return version;
  }
  throw new Error('sandbox: the contract has no /{version}/marketing-solutions path');
}

/** The version an API path names, and the rest of the path after it; undefined for a path outside the API. */
export function splitApiPath(pathname: string): { version: string; rest: string } | undefined {
  const match = API_PREFIX.exec(pathname);
  return match?.[1] === undefined || match[2] === undefined ? undefined : { version: match[1], rest: match[2] };
}

/** The path as the contract writes it: the served version's paths are the contract version's. */
export function contractPath(pathname: string, served: string, contractVersion: string): string {
  const parts = splitApiPath(pathname);
  return parts?.version === served ? `/${contractVersion}${parts.rest}` : pathname;
}

/** The lifecycle headers of an answer under the served version: Deprecation past 'supported', Sunset when set. */
export function lifecycleHeaders(lifecycle: VersionLifecycle): Record<string, string> {
  const headers: Record<string, string> = {};
  if (lifecycle.phase !== 'supported') headers['deprecation'] = 'true';
  // toUTCString is the IMF-fixdate form of an HTTP date (RFC 9110), as RFC 8594 asks.
  if (lifecycle.sunset) headers['sunset'] = lifecycle.sunset.toUTCString();
  return headers;
}

/** The 404 of a version the sandbox does not serve. */
export function versionNotFound(version: string, served: string): ApiProblem {
  return new ApiProblem(404, 'validation', 'api-version-not-found', 'Unknown API version', `API version ${version} is not available; use ${served}`);
}

/** The 410 of every call under a retired version, in Criteo's envelope. */
export function versionRetired(served: string, sunset: Date | null): ApiProblem {
  const when = sunset ? ` on ${sunset.toISOString().slice(0, 10)}` : '';
  return new ApiProblem(410, 'deprecation', 'api-version-retired', 'API version retired', `API version ${served} was retired${when}; use a supported version`);
}

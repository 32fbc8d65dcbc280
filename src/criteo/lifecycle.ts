import type { ResponseHeaders } from './problems.js';

/**
 * Where the API version the client calls stands in Criteo's lifecycle, as
 * Criteo's answers say it (shared/criteo/README.md, "Version lifecycle"): in a
 * version's last months every answer carries `Deprecation: true` and a
 * `Sunset` date; after the sunset the version answers 410. Token answers are
 * not versioned and say nothing about it.
 */

export interface ApiLifecycle {
  /** The version the client calls (CRITEO_API_VERSION). */
  version: string;
  /** An answer carried a Deprecation header, or the version answered 410. */
  deprecated: boolean;
  /** The latest Sunset date an answer announced, as an ISO instant; null when none did. */
  sunset: string | null;
  /** The version answered 410: it is past its sunset and no call under it succeeds. */
  retired: boolean;
}

function firstHeader(headers: ResponseHeaders, name: string): string | undefined {
  const value = headers[name];
  return (Array.isArray(value) ? value[0] : value)?.trim() || undefined;
}

/**
 * Whether a Deprecation header value says the version is deprecated. Criteo
 * sends `true`; RFC 9745 sends `@<unix seconds>` and its drafts an HTTP date.
 * A date, even a future one, is taken as deprecated: it announces the end
 * early enough to act on it. Only `false` (or nothing) says otherwise.
 */
function saysDeprecated(value: string | undefined): boolean {
  return value !== undefined && value.toLowerCase() !== 'false';
}

/** The instant of a Sunset header (an HTTP date, RFC 8594), or undefined when it is not a date. */
function sunsetOf(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const at = Date.parse(value);
  return Number.isFinite(at) ? at : undefined;
}

/** What the answers of one run said about the version: deprecation and sunset stick once heard. */
export class LifecycleTracker {
  private heard = false;
  private deprecated = false;
  private retired = false;
  private sunset: number | undefined;

  constructor(private readonly version: string) {}

  /** Notes the lifecycle headers of one API answer. */
  notice(headers: ResponseHeaders): void {
    const deprecated = saysDeprecated(firstHeader(headers, 'deprecation'));
    const sunset = sunsetOf(firstHeader(headers, 'sunset'));
    if (!deprecated && sunset === undefined) return;
    this.heard = true;
    if (deprecated) this.deprecated = true;
    if (sunset !== undefined) this.sunset = sunset;
  }

  /** The version answered 410. */
  noticeRetired(): void {
    this.heard = true;
    this.retired = true;
    this.deprecated = true;
  }

  /** Null until an answer said anything about the version's lifecycle. */
  current(): ApiLifecycle | null {
    if (!this.heard) return null;
    const sunset = this.sunset === undefined ? null : new Date(this.sunset).toISOString();
    return { version: this.version, deprecated: this.deprecated, sunset, retired: this.retired };
  }
}

/** The message of a 410: the version, that Criteo retired it, and the setting to change. */
export function retiredMessage(version: string, code: string | undefined, traceId: string | undefined): string {
  return `Criteo API version ${version} is retired by Criteo (HTTP 410 ${code ?? 'Gone'}): set CRITEO_API_VERSION to a supported version; traceId ${traceId ?? 'none'}`;
}

/**
 * One line for the operator when the version is deprecated, has a sunset date
 * or is retired: what Criteo said and the setting to change; null otherwise.
 */
export function lifecycleWarning(lifecycle: ApiLifecycle | null): string | null {
  if (!lifecycle) return null;
  const { version, sunset } = lifecycle;
  if (lifecycle.retired) return `Criteo API version ${version} is retired by Criteo: set CRITEO_API_VERSION to a supported version`;
  if (!lifecycle.deprecated && sunset === null) return null;
  const state = lifecycle.deprecated ? 'is deprecated by Criteo' : 'has a sunset date';
  const ends = sunset === null ? '' : ` and stops answering on ${sunset.slice(0, 10)} (Sunset ${sunset})`;
  const before = sunset === null ? '' : ' before then';
  return `Criteo API version ${version} ${state}${ends}: set CRITEO_API_VERSION to a newer supported version${before}`;
}

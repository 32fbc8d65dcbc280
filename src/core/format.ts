/**
 * How numbers, rates and instants read wherever the job prints them (the
 * terminal, the report's warnings, its HTML page): en-US digits whatever the
 * machine's locale, and UTC whatever the reader's zone. Pure functions; each
 * takes the placeholder to print for a value that is not known.
 */

/** A count with thousands separators: 1234567 → "1,234,567"; `unknown` for null or undefined. */
export function formatCount(value: number | null | undefined, unknown = '-'): string {
  return value === null || value === undefined ? unknown : value.toLocaleString('en-US');
}

/** A fraction (0–1) as a percent: 0.1234 → "12.3%" (`digits` decimals, 1 by default); `unknown` for null or undefined. */
export function formatPercent(fraction: number | null | undefined, options: { unknown?: string; digits?: number } = {}): string {
  return fraction === null || fraction === undefined ? (options.unknown ?? '-') : `${(fraction * 100).toFixed(options.digits ?? 1)}%`;
}

/** An ISO instant to the minute, without the zone: "2026-11-25 16:37" (for columns headed UTC). */
export function utcMinute(iso: string): string {
  return iso.slice(0, 16).replace('T', ' ');
}

/** An ISO instant to the minute, zone named: "2026-11-25 16:37 UTC", unambiguous whatever the reader's zone; `unknown` when absent. */
export function formatUtc(iso: string | null | undefined, unknown = '-'): string {
  return iso ? `${utcMinute(iso)} UTC` : unknown;
}

/** A plain-text table: the first column left-aligned, the others right-aligned, two spaces between columns. */
export function textTable(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

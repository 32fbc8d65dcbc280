import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { CoverageReport } from './types.js';
import { reportToCsv } from './render-csv.js';
import { reportToHtml } from './render-html.js';
import { formatReportTable } from './render-table.js';

/** One report, four renderings: the terminal's, tools' (JSON, CSV) and people's (HTML). */

export type ReportFormat = 'table' | 'json' | 'csv' | 'html';

function renderReport(report: CoverageReport, format: ReportFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(report, null, 2)}\n`;
    case 'csv':
      return reportToCsv(report);
    case 'html':
      return reportToHtml(report);
    case 'table':
      return `${formatReportTable(report)}\n`;
  }
}

/** Writes to `out` (returning its absolute path) or to stdout (returning null). */
export async function writeReport(report: CoverageReport, format: ReportFormat, out?: string): Promise<string | null> {
  const text = renderReport(report, format);
  if (!out) {
    process.stdout.write(text);
    return null;
  }
  await writeFile(out, text, 'utf8');
  return resolve(out);
}

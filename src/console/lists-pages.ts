import { formatCount, formatPercent } from '../core/format.js';
import type { BatchRow } from '../report/queries.js';
import { WARNING_TITLES, listSection } from '../report/render-html.js';
import { esc } from '../report/render-svg.js';
import type { CoverageReport, ListReport } from '../report/types.js';
import { postForm, statusBadge, when } from './layout.js';
import type { ListRunRow } from './queries.js';

/** The Lists page and a list's page: the report's figures and renderers, with what a CSM can do about them. */

const n = (v: number | null | undefined) => formatCount(v, '–');
const pct = (v: number | null | undefined) => formatPercent(v, { unknown: '–' });
const NEEDS_LOOK = new Set(['failed', 'incomplete', 'held', 'skipped']);

/** Lists with warnings first, then those whose last sync did not converge, then by id. */
function attentionOrder(a: ListReport, b: ListReport): number {
  const rank = (l: ListReport) => (l.warnings.length > 0 ? 0 : l.latest && NEEDS_LOOK.has(l.latest.status) ? 1 : 2);
  return rank(a) - rank(b) || Number(a.segmentId) - Number(b.segmentId);
}

export function listsBody(report: CoverageReport): string {
  const rows = [...report.lists].sort(attentionOrder).map((l) => {
    const f = l.latest;
    const flags = l.warnings.map((w) => `<span class="badge warn">${esc(WARNING_TITLES[w.code])}</span>`).join(' ');
    const state = !l.active ? '<span class="badge idle">no active campaign</span>' : '';
    return `<tr data-list="${esc(l.segmentId)}"><td><a href="/lists/${esc(l.segmentId)}">List ${esc(l.segmentId)}</a>
<div class="sub">${esc(l.campaigns.map((c) => c.name).join(', ') || 'no campaign')}</div></td>
<td>${f ? `${statusBadge(f.status)}<div class="sub"><a href="/runs/${f.runId}">run ${f.runId}</a> · ${when(f.finishedAt)}</div>` : '<span class="sub">never synced</span>'}</td>
<td class="num">${n(f?.funnel?.targetGroup)}</td><td class="num">${n(f?.funnel?.validEmail)}</td><td class="num">${n(f?.synced)}</td>
<td class="num">${n(f?.criteo?.identifiers)}</td><td class="num">${n(f?.criteo?.matched)}</td>
<td class="num strong" data-col="matchRate">${pct(f?.matchRate)}</td><td class="num strong">${pct(f?.coverage)}</td><td>${flags || state || '<span class="badge ok">OK</span>'}</td></tr>`;
  });
  const table = `<table class="grid-table" data-lists><thead><tr><th>List and campaigns</th><th>Last sync</th><th class="num">Target-group customers</th><th class="num">Valid emails</th><th class="num">Synced</th><th class="num">In Criteo</th><th class="num">Matched</th><th class="num">Match rate</th><th class="num">Coverage</th><th>Attention</th></tr></thead>
<tbody>${rows.join('')}</tbody></table>`;
  return `<h1>Lists</h1>${attention(report)}<section class="card"><h2>Every list</h2><p class="sub">Figures from each list's latest sync and Criteo's latest reading. Match rate = matched ÷ identifiers in Criteo; coverage = matched ÷ target-group customers.</p>
${report.lists.length === 0 ? '<p>No campaign points at a list yet.</p>' : `<div class="scroll">${table}</div>`}</section>`;
}

function attention(report: CoverageReport): string {
  if (report.warnings.length === 0) return '<section class="card all-clear" data-warnings="0"><h2>Nothing to act on</h2></section>';
  const items = report.warnings.map(
    (
      w,
    ) => `<li class="warning" data-code="${w.code}"><div class="wtitle">${esc(WARNING_TITLES[w.code])} · <a href="/lists/${esc(w.segmentId)}">list ${esc(w.segmentId)}</a></div>
<p>${esc(w.message)}</p><p class="action"><strong>What to do:</strong> ${esc(w.action)}</p></li>`,
  );
  return `<section class="card warnings" data-warnings="${report.warnings.length}"><h2>Needs attention (${report.warnings.length})</h2><ul>${items.join('')}</ul></section>`;
}

export interface ListPageData {
  list: ListReport;
  lowMatchRate: number;
  lockWaitSeconds: number;
  /** The run syncing the list right now, if any. */
  holder: number | null;
  runs: ListRunRow[];
  batches: BatchRow[];
  csrfToken: string;
}

export function listBody(d: ListPageData): string {
  const id = esc(d.list.segmentId);
  const holder =
    d.holder === null
      ? ''
      : `<p class="holder" data-holder="${d.holder}"><a href="/runs/${d.holder}">Run ${d.holder}</a> is syncing this list now. A resync started now waits up to ${d.lockWaitSeconds} seconds for it, then skips the list and says so.</p>`;
  const actions = `<div class="actions">${postForm(`/lists/${d.list.segmentId}/resync`, d.csrfToken, '', 'Resync')}
<a class="button" href="/lists/${id}/full-resync">Full resync…</a></div>
<p class="sub">Resync sends this list's changes to Criteo now, as the daily run would. A full resync is for a list that drifted in Criteo.</p>`;
  return `<h1>List ${id}</h1>${holder}${actions}
${listSection(d.list, d.lowMatchRate)}
${runsAndBatches(d.runs, d.batches)}`;
}

/** Each list sync with Criteo's exact answer to each batch: status, counts, trace id. */
function runsAndBatches(runs: readonly ListRunRow[], batches: readonly BatchRow[]): string {
  if (runs.length === 0) return '<section class="card"><h2>Runs</h2><p>This list has not been synced yet.</p></section>';
  const rows = runs.map((r) => {
    const own = batches.filter((b) => b.list_sync_id === r.listSyncId);
    const answers = own.length
      ? `<table class="grid-table batches"><thead><tr><th>Batch</th><th>Operation</th><th class="num">Identifiers</th><th>Status</th><th class="num">HTTP</th><th class="num">Valid</th><th class="num">Invalid</th><th class="num">Attempts</th><th>Error</th><th>Criteo trace id</th></tr></thead><tbody>${own
          .map(
            (b) =>
              `<tr data-batch="${b.seq}"><td>${b.seq}</td><td>${esc(b.operation)}</td><td class="num">${n(b.size)}</td><td>${statusBadge(b.status)}</td><td class="num">${b.http_status ?? '–'}</td><td class="num">${n(b.nb_valid)}</td><td class="num">${n(b.nb_invalid)}</td><td class="num">${b.attempts}</td><td>${esc(b.error_code ?? '')}</td><td class="mono">${esc(b.trace_id ?? '')}</td></tr>`,
          )
          .join('')}</tbody></table>`
      : '<p class="sub">No batch was sent.</p>';
    return `<details class="runs" data-list-sync="${r.listSyncId}"${r === runs[0] ? ' open' : ''}><summary><a href="/runs/${r.runId}">Run ${r.runId}</a> · started by <strong>${esc(r.trigger)}</strong> · ${when(r.runStartedAt)} · ${statusBadge(r.status)}
 · added ${n(r.added)} of ${n(r.toAdd)}, removed ${n(r.removed)} of ${n(r.toRemove)}</summary>
${r.reason ? `<p>${esc(r.reason)}</p>` : ''}${r.traceId ? `<p>Criteo ${esc(r.errorCode ?? 'error')}, trace id <span class="mono">${esc(r.traceId)}</span></p>` : ''}${answers}</details>`;
  });
  return `<section class="card"><h2>Runs and Criteo's answers</h2>${rows.join('')}</section>`;
}

export function fullResyncBody(segmentId: string, csrfToken: string): string {
  const id = esc(segmentId);
  return `<section class="card"><h1>Full resync of list ${id}?</h1>
<p>A full resync sends Criteo <strong>every</strong> identifier this list should hold, and removes every identifier the job once sent that should no longer be there. Use it when Criteo's count drifted from ours (someone edited the list in Criteo by hand).</p>
<p>It takes longer and uses more of Criteo's call budget than a resync. It never empties a list whose campaigns are still active, and removals beyond the mass-removal guard are still held.</p>
<div class="actions">${postForm(`/lists/${segmentId}/resync`, csrfToken, '<input type="hidden" name="full" value="1">', 'Yes, run a full resync')}
<a href="/lists/${id}">No, back to list ${id}</a></div></section>`;
}

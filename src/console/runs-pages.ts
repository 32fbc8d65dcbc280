import { formatCount } from '../core/format.js';
import type { RunDetail, RunRow } from '../report/history.js';
import { esc } from '../report/render-svg.js';
import { statusBadge, when } from './layout.js';
import type { RunFilter, RunProgressRow } from './queries.js';

/** The run history, one run's page, and the live progress its script polls. */

const n = (v: number | null | undefined) => formatCount(v, '–');
export const RUN_STATUSES = ['running', 'succeeded', 'failed', 'interrupted', 'aborted'] as const;

export function runsBody(rows: readonly RunRow[], filter: RunFilter): string {
  const options = ['', ...RUN_STATUSES]
    .map((s) => `<option value="${s}"${filter.status === s || (!filter.status && s === '') ? ' selected' : ''}>${s || 'any status'}</option>`)
    .join('');
  const form = `<form class="filters" method="get" action="/runs">
<div><label for="status">Status</label><select id="status" name="status">${options}</select></div>
<div><label for="trigger">Started by</label><input id="trigger" name="trigger" value="${esc(filter.trigger ?? '')}" placeholder="console, schedule, cli…"></div>
<div><label for="list">List</label><input id="list" name="list" inputmode="numeric" value="${esc(filter.segmentId ?? '')}" placeholder="list id"></div>
<button type="submit" class="secondary">Filter</button></form>`;
  const body = rows.map(
    (
      r,
    ) => `<tr data-run="${r.runId}"><td><a href="/runs/${r.runId}">Run ${r.runId}</a></td><td>${when(r.startedAt)}</td><td data-col="trigger">${esc(r.trigger)}</td>
<td>${statusBadge(r.status)}</td><td class="num">${r.lists}</td><td class="num">${r.listsFailed}</td><td class="num">${n(r.added)}</td><td class="num">${n(r.removed)}</td><td>${esc(r.error ?? '')}</td></tr>`,
  );
  const table = rows.length
    ? `<div class="scroll"><table class="grid-table" data-runs><thead><tr><th>Run</th><th>Started</th><th>Started by</th><th>Status</th><th class="num">Lists</th><th class="num">Not converged</th><th class="num">Added</th><th class="num">Removed</th><th>Error</th></tr></thead><tbody>${body.join('')}</tbody></table></div>`
    : '<p>No run matches.</p>';
  return `<h1>Runs</h1><section class="card">${form}${table}</section>`;
}

const OUTCOMES: Record<string, string> = {
  succeeded: 'The run succeeded: every list it worked on is in step with Criteo.',
  failed: 'The run ended without every list in step: each list below says why.',
  interrupted: 'The run was stopped before it finished; the next run resumes where it stopped.',
  aborted: 'The run stopped: Criteo refused the credentials or the API version. See the error above.',
};

export function runBody(d: RunDetail): string {
  const r = d.run;
  const running = r.status === 'running';
  const head = `<h1>Run ${r.runId} ${statusBadge(r.status)}</h1>
<p class="meta">Started by <strong data-trigger>${esc(r.trigger)}</strong> · ${when(r.startedAt)}${r.finishedAt ? ` · finished ${when(r.finishedAt)}` : ''}</p>
${r.error ? `<p class="notice error">${esc(r.error)}</p>` : ''}`;
  const live = running
    ? `<section class="card"><h2>Progress</h2><p data-progress-state>The run is starting…</p><div class="progress-list" data-progress-url="/runs/${r.runId}/progress"></div></section>`
    : `<section class="card outcome" data-outcome="${esc(r.status)}"><h2>Outcome</h2><p>${esc(OUTCOMES[r.status] ?? r.status)}</p></section>`;
  const bindings = d.bindings.map(
    (b) =>
      `<li>Campaign ${esc(b.campaignId)} names list “${esc(b.name)}”: bound to <a href="/lists/${esc(b.segmentId)}">list ${esc(b.segmentId)}</a> (${b.created ? 'created' : 'found'} by the job)</li>`,
  );
  const lists = d.lists.map((l) => listCard(l));
  return `${head}${live}${bindings.length ? `<section class="card"><h2>Lists named by campaigns</h2><ul>${bindings.join('')}</ul></section>` : ''}${lists.join('')}`;
}

function listCard(l: RunDetail['lists'][number]): string {
  const batches = l.batches.length
    ? `<table class="grid-table batches"><thead><tr><th>Batch</th><th>Operation</th><th class="num">Identifiers</th><th>Status</th><th class="num">HTTP</th><th class="num">Valid</th><th class="num">Invalid</th><th class="num">Attempts</th><th class="num">Waited ms</th><th>Error</th><th>Criteo trace id</th></tr></thead><tbody>${l.batches
        .map(
          (b) =>
            `<tr><td>${b.seq}</td><td>${esc(b.operation)}</td><td class="num">${n(b.size)}</td><td>${statusBadge(b.status)}</td><td class="num">${b.httpStatus ?? '–'}</td><td class="num">${n(b.nbValid)}</td><td class="num">${n(b.nbInvalid)}</td><td class="num">${b.attempts}</td><td class="num">${b.waitedMs}</td><td>${esc(b.errorCode ?? '')}</td><td class="mono">${esc(b.traceId ?? '')}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<p class="sub">No batch was sent.</p>';
  return `<section class="card" data-run-list="${esc(l.segmentId)}"><h2><a href="/lists/${esc(l.segmentId)}">List ${esc(l.segmentId)}</a> ${statusBadge(l.status)}</h2>
<p>${l.action === 'empty' ? 'Emptying: every campaign of the list has ended.' : `Campaigns ${esc(l.campaignIds.join(', '))}`} · target group ${n(l.targetGroupSize)} customers · ${n(l.uniqueIdentifiers)} identifiers · ledger before ${n(l.ledgerBefore)}
 · added ${n(l.added)} of ${n(l.toAdd)} · removed ${n(l.removed)} of ${n(l.toRemove)}${l.heldRemovals ? ` · <strong>${n(l.heldRemovals)} removals held</strong>` : ''}${l.newlyValidEmails ? ` · ${n(l.newlyValidEmails)} newly valid emails (email rule)` : ''}</p>
${l.reason ? `<p data-reason>${esc(l.reason)}</p>` : ''}${l.traceId ? `<p>Criteo ${esc(l.errorCode ?? 'error')}, trace id <span class="mono">${esc(l.traceId)}</span></p>` : ''}${batches}</section>`;
}

export interface ListProgressJson {
  segmentId: string;
  status: string;
  planned: number;
  done: number;
  finished: boolean;
  note: string;
}

export interface RunProgressJson {
  runId: number;
  status: string;
  finished: boolean;
  summary: string;
  lists: ListProgressJson[];
}

/** The run's progress for its page's script: counts and statuses, never an identifier. `holders`: who holds a list not started yet. */
export function progressJson(p: RunProgressRow, holders: ReadonlyMap<string, number | null>, lockWaitSeconds: number): RunProgressJson {
  const finished = p.status !== 'running';
  const started = new Set(p.lists.map((l) => l.segmentId));
  const lists: ListProgressJson[] = p.lists.map((l) => {
    const planned = (l.toAdd ?? 0) + (l.heldRemovals > 0 ? 0 : (l.toRemove ?? 0));
    const done = Math.min(l.confirmed, planned);
    const over = !['planning', 'sending'].includes(l.status);
    const note =
      l.status === 'planning'
        ? 'planning: comparing the target group with what Criteo holds'
        : l.status === 'sending'
          ? `sending: ${n(done)} of ${n(planned)} identifiers confirmed by Criteo`
          : `${l.status}${l.reason ? `: ${l.reason}` : ''}`;
    return { segmentId: l.segmentId, status: l.status, planned, done, finished: over, note };
  });
  for (const segmentId of p.segmentIds ?? []) {
    if (started.has(segmentId) || finished) continue;
    const holder = holders.get(segmentId) ?? null;
    const note =
      holder !== null && holder !== p.runId
        ? `waiting for run ${holder}, which is syncing this list (up to ${lockWaitSeconds} seconds, then this run skips it)`
        : 'waiting to start';
    lists.push({ segmentId, status: 'waiting', planned: 0, done: 0, finished: false, note });
  }
  const summary = finished ? `Run ${p.runId} ${p.status}.` : `Run ${p.runId} is running (started by ${p.trigger})…`;
  return { runId: p.runId, status: p.status, finished, summary, lists };
}

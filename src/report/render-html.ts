import { formatCount, formatPercent, formatUtc } from '../core/format.js';
import { esc, lineChart } from './render-svg.js';
import type { CoverageReport, Funnel, LatestFunnel, ListReport, ListRun, Warning, WarningCode } from './types.js';

/**
 * The report for people: one self-contained HTML file (inline CSS and SVG,
 * no script, no font, no network; a CSP forbids fetching anything). Per list:
 * what to act on, the funnel as it stands, each campaign's share of it, and
 * the trend of synced, matched and match rate over the runs in range.
 * Numbers are printed in full with the unit they count, rates with what they
 * divide, and every Criteo figure with when it was read.
 */

/** What the page prints for a figure that is not known: an en dash. */
const UNKNOWN = '–';
const n = (v: number | null | undefined) => formatCount(v, UNKNOWN);
const pct = (v: number | null | undefined) => formatPercent(v, { unknown: UNKNOWN });
const when = (iso: string | null | undefined) => formatUtc(iso, UNKNOWN);

const COLORS = { ours: '#2f6fdf', synced: '#5b3fc4', criteo: '#0b8a7a', matched: '#d9622b', rate: '#c2410c', grey: '#98a2b3' };

export function reportToHtml(report: CoverageReport): string {
  const scope = [
    report.filter.campaignId ? `campaign ${esc(report.filter.campaignId)}` : '',
    report.filter.segmentId ? `list ${esc(report.filter.segmentId)}` : '',
  ].filter(Boolean);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Match coverage · audience-sync</title>
<style>${REPORT_CSS}</style></head>
<body><main>
<header>
  <h1>Criteo match coverage</h1>
  <p class="meta">Generated <strong>${when(report.generatedAt)}</strong> · runs since <strong>${when(report.since)}</strong>${scope.length ? ` · ${scope.join(', ')}` : ' · every list'} · low match rate below <strong>${pct(report.thresholds.lowMatchRate)}</strong></p>
  <p class="note">Our counts come from each run. Criteo's counts (<span class="criteo-chip">Criteo</span>) are approximate and take up to about a day to reflect a sync: each is shown with the time it was read. All times are UTC.</p>
</header>
${overview(report)}
${warnings(report.warnings)}
${report.lists.map((l) => listSection(l, report.thresholds.lowMatchRate)).join('\n')}
<footer>audience-sync · match rate = matched ÷ identifiers in Criteo · coverage = matched ÷ target-group customers</footer>
</main></body></html>
`;
}

function overview(report: CoverageReport): string {
  if (report.lists.length === 0) return '<section class="card"><p>No list in scope.</p></section>';
  const rows = report.lists.map((l) => {
    const f = l.latest;
    const flag = l.warnings.length
      ? `<span class="badge warn">${l.warnings.length} warning${l.warnings.length > 1 ? 's' : ''}</span>`
      : !l.active
        ? '<span class="badge idle">no active campaign</span>'
        : f
          ? '<span class="badge ok">OK</span>'
          : '<span class="badge idle">no sync in range</span>';
    return `<tr data-overview="${esc(l.segmentId)}"><td><a href="#list-${esc(l.segmentId)}">List ${esc(l.segmentId)}</a><div class="sub">${esc(l.campaigns.map((c) => c.campaignId).join(', ') || 'no campaign')}</div></td>
<td class="num">${n(f?.funnel?.targetGroup)}</td><td class="num">${n(f?.synced)}</td><td class="num">${n(f?.criteo?.matched)}</td>
<td class="num strong">${pct(f?.matchRate)}</td><td class="num strong">${pct(f?.coverage)}</td><td>${f?.criteo ? when(f.criteo.readAt) : '–'}</td><td>${flag}</td></tr>`;
  });
  return `<section class="card"><h2>Lists at a glance</h2>
<table class="grid-table"><thead><tr><th>List</th><th class="num">Target-group customers</th><th class="num">Synced identifiers</th><th class="num">Matched by Criteo</th><th class="num">Match rate</th><th class="num">Coverage</th><th>Criteo read</th><th></th></tr></thead>
<tbody>${rows.join('')}</tbody></table></section>`;
}

function warnings(list: readonly Warning[]): string {
  if (list.length === 0)
    return '<section class="card all-clear" data-warnings="0"><h2>Nothing to act on</h2><p>No list is stale, drifting, under the match-rate threshold or short of valid emails.</p></section>';
  const items = list.map(
    (
      w,
    ) => `<li class="warning" data-code="${w.code}" data-segment="${esc(w.segmentId)}"><div class="wtitle">${esc(WARNING_TITLES[w.code])} · <a href="#list-${esc(w.segmentId)}">list ${esc(w.segmentId)}</a>${w.campaignId ? ` · campaign ${esc(w.campaignId)}` : ''}</div>
<p>${esc(w.message)}</p><p class="action"><strong>What to do:</strong> ${code(w.action)}</p></li>`,
  );
  return `<section class="card warnings" data-warnings="${list.length}"><h2>Needs attention (${list.length})</h2><ul>${items.join('')}</ul></section>`;
}

export const WARNING_TITLES: Record<WarningCode, string> = {
  new_list: 'New list: Criteo may not serve it yet',
  low_match_rate: 'Low match rate',
  drift: "Criteo's count drifted from the ledger",
  stale: 'No recent successful sync',
  invalid_emails: 'Many invalid emails',
  criteo_rejected_identifiers: 'Criteo rejected identifiers',
};

/** `commands` in backticks become <code>. */
function code(text: string): string {
  return esc(text).replace(/`([^`]+)`/g, '<code>$1</code>');
}

/** One list's card: its warnings, funnel, campaigns, trend and every run's figures (the console's list page shows it too). */
export function listSection(list: ListReport, lowMatchRate: number): string {
  const chips = list.campaigns
    .map(
      (c) =>
        `<span class="chip ${c.active ? 'active' : 'ended'}" title="${esc(`${c.startsAt.slice(0, 10)} → ${c.measurementEndsAt.slice(0, 10)}`)}">${esc(c.name)} <span class="id">${esc(c.campaignId)}</span> · ${c.phase}</span>`,
    )
    .join('');
  const head = `<div class="list-head"><h2>List ${esc(list.segmentId)}</h2><span class="sub">advertiser ${esc(list.advertiserIds.join(', ') || '–')}</span></div><div class="chips">${chips}</div>`;
  if (!list.latest)
    return `<section class="card list" id="list-${esc(list.segmentId)}" data-segment="${esc(list.segmentId)}">${head}${listWarnings(list)}<p class="empty">No finished sync of this list in range.</p></section>`;
  const l = list.latest;
  return `<section class="card list" id="list-${esc(list.segmentId)}" data-segment="${esc(list.segmentId)}">${head}
${listWarnings(list)}<p class="meta">Latest sync: <strong>run ${l.runId}</strong> · <span class="status ${esc(l.status)}">${esc(l.action === 'empty' ? `emptying ${l.status}` : l.status)}</span> · finished ${when(l.finishedAt)} · Criteo figures ${l.criteo ? `read <strong>${when(l.criteo.readAt)}</strong> (run ${l.criteo.runId})` : '<strong>not read yet</strong>'}</p>
<div class="two">${funnel(l)}${kpis(l)}</div>
${campaigns(l)}
${trend(list, lowMatchRate)}
${runsTable(list)}
</section>`;
}

/** The list's own warnings, short: title and what to do (the message is in "Needs attention"). */
function listWarnings(list: ListReport): string {
  if (list.warnings.length === 0) return '';
  return `<ul class="list-warnings">${list.warnings
    .map(
      (w) =>
        `<li data-code="${w.code}"><strong>${esc(WARNING_TITLES[w.code])}${w.campaignId ? ` (campaign ${esc(w.campaignId)})` : ''}:</strong> ${code(w.action)}</li>`,
    )
    .join('')}</ul>`;
}

interface Stage {
  key: string;
  label: string;
  help: string;
  value: number | null;
  unit: 'customers' | 'identifiers';
  color: string;
  criteo?: boolean;
}

function funnel(l: LatestFunnel): string {
  const f = l.funnel;
  const stages = [...(f ? ourStages(f) : []), ...criteoStages(l)];
  const base = f?.targetGroup ?? Math.max(0, ...stages.map((s) => s.value ?? 0));
  const rows = stages.map((s) => stageRow(s, base, f));
  const readNote = l.criteo
    ? `Criteo figures read ${when(l.criteo.readAt)} (run ${l.criteo.runId}): approximate, and up to a day behind a sync.`
    : 'Criteo has not been asked yet: its statistics are read after a run that changes the list.';
  return `<div class="funnel" data-funnel="${l.runId}">${funnelHeading(l)}${rows.join('')}<p class="foot">${esc(readNote)}</p></div>`;
}

/** The stages counted by the run: customers, then identifiers. */
function ourStages(f: Funnel): Stage[] {
  return [
    {
      key: 'targetGroup',
      label: 'Target-group customers',
      help: 'selected by the active campaigns',
      value: f.targetGroup,
      unit: 'customers',
      color: COLORS.ours,
    },
    {
      key: 'withEmail',
      label: 'with an email',
      help: `${n(f.missingCustomers)} not in the customer table, ${n(f.withoutEmail)} without an email`,
      value: f.withEmail,
      unit: 'customers',
      color: COLORS.ours,
    },
    {
      key: 'validEmail',
      label: 'with a valid email',
      help: `${n(f.invalidEmails)} invalid emails`,
      value: f.validEmail,
      unit: 'customers',
      color: COLORS.ours,
    },
    {
      key: 'uniqueIdentifiers',
      label: 'unique identifiers',
      help: 'one SHA-256 per distinct email',
      value: f.uniqueIdentifiers,
      unit: 'identifiers',
      color: COLORS.ours,
    },
  ];
}

/** The ledger, then Criteo's two counts (null until read). */
function criteoStages(l: LatestFunnel): Stage[] {
  return [
    { key: 'synced', label: 'synced (our ledger)', help: 'identifiers Criteo confirmed receiving', value: l.synced, unit: 'identifiers', color: COLORS.synced },
    {
      key: 'criteoIdentifiers',
      label: 'in Criteo',
      help: "Criteo's count of the list",
      value: l.criteo?.identifiers ?? null,
      unit: 'identifiers',
      color: COLORS.criteo,
      criteo: true,
    },
    {
      key: 'matched',
      label: 'matched by Criteo',
      help: 'identifiers Criteo tied to a user',
      value: l.criteo?.matched ?? null,
      unit: 'identifiers',
      color: COLORS.matched,
      criteo: true,
    },
  ];
}

/** One bar: its width against `base`, its share of the target group when there is one. */
function stageRow(s: Stage, base: number, f: Funnel | null): string {
  const width = s.value === null || base === 0 ? 0 : Math.min(100, (s.value / base) * 100);
  const share = s.value === null || !f || f.targetGroup === 0 ? '' : pct(s.value / f.targetGroup);
  return `<div class="stage${s.criteo ? ' from-criteo' : ''}" data-stage="${s.key}" data-value="${s.value ?? ''}">
<div class="label">${esc(s.label)}${s.criteo ? ' <span class="criteo-chip">Criteo</span>' : ''}<div class="help">${esc(s.help)}</div></div>
<div class="bar"><div style="width:${width.toFixed(2)}%;background:${s.color}"></div></div>
<div class="count">${s.value === null ? '<span class="unknown">not read yet</span>' : `${n(s.value)}<div class="unit">${s.unit}</div>`}</div><div class="share">${share}</div></div>`;
}

function funnelHeading(l: LatestFunnel): string {
  if (l.funnel) return '<h3>Funnel <span class="sub">(% = share of the target-group customers)</span></h3>';
  const why =
    l.action === 'empty'
      ? `At run ${l.runId} every campaign of this list had ended: it has no target group, and the list is kept empty.`
      : `Run ${l.runId} planned nothing for this list (see its status below).`;
  return `<h3>Funnel</h3><p class="empty">${why}</p>`;
}

function kpis(l: LatestFunnel): string {
  const matched = l.criteo?.matched ?? null;
  const inCriteo = l.criteo?.identifiers ?? null;
  const rateHelp =
    l.matchRate !== null
      ? `${n(matched)} matched ÷ ${n(inCriteo)} identifiers in Criteo`
      : !l.criteo
        ? 'not known: Criteo not read yet'
        : 'not known: Criteo counts no identifier in the list';
  const coverageHelp =
    l.coverage !== null
      ? `${n(matched)} matched ÷ ${n(l.funnel?.targetGroup)} target-group customers`
      : !l.funnel
        ? 'not known: no active target group'
        : 'not known: Criteo not read yet';
  return `<div class="kpis">
<div class="kpi" data-kpi="matchRate" data-value="${l.matchRate ?? ''}"><div class="kpi-label">Match rate</div><div class="kpi-value">${pct(l.matchRate)}</div><div class="kpi-help">${esc(rateHelp)}</div></div>
<div class="kpi" data-kpi="coverage" data-value="${l.coverage ?? ''}"><div class="kpi-label">Coverage</div><div class="kpi-value">${pct(l.coverage)}</div><div class="kpi-help">${esc(coverageHelp)}</div></div>
</div>`;
}

function campaigns(l: LatestFunnel): string {
  if (l.campaigns.length === 0) return '';
  const rows = l.campaigns.map(
    (c) => `<tr data-campaign="${esc(c.campaignId)}"><td>${esc(c.name ?? c.campaignId)}<div class="sub">${esc(c.campaignId)}</div></td>
<td class="num">${n(c.funnel.targetGroup)}</td><td class="num">${n(c.funnel.withEmail)}</td><td class="num">${n(c.funnel.validEmail)}</td><td class="num">${n(c.funnel.uniqueIdentifiers)}</td>
<td class="num list-fig">${n(l.synced)}</td><td class="num list-fig">${n(l.criteo?.matched)}</td><td class="num list-fig">${pct(l.matchRate)}</td></tr>`,
  );
  return `<h3>Per campaign <span class="sub">(run ${l.runId})</span></h3>
<div class="scroll"><table class="grid-table campaigns"><thead>
<tr><th></th><th colspan="4" class="group">This campaign's own customers</th><th colspan="3" class="group list-fig">Whole list ${'(shared by its campaigns)'}</th></tr>
<tr><th>Campaign</th><th class="num">Target-group customers</th><th class="num">With an email</th><th class="num">With a valid email</th><th class="num">Unique identifiers</th><th class="num list-fig">Synced identifiers</th><th class="num list-fig">Matched by Criteo</th><th class="num list-fig">Match rate</th></tr></thead>
<tbody>${rows.join('')}</tbody></table></div>`;
}

function xLabels(runs: readonly ListRun[]) {
  return runs.map((r) => ({ key: String(r.runId), first: `run ${r.runId}`, second: dayMonthUtc(r.runStartedAt, false) }));
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** "25 Nov 2026 16:37" (or without the year in charts): day and month never confused, UTC like every time in the report. */
function dayMonthUtc(iso: string, withYear = true): string {
  const d = new Date(iso);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}${withYear ? ` ${d.getUTCFullYear()}` : ''} ${iso.slice(11, 16)}`;
}

function trend(list: ListReport, lowMatchRate: number): string {
  const runs = list.runs;
  const x = xLabels(runs);
  const counts = lineChart({
    id: `counts-${list.segmentId}`,
    title: 'Identifiers per run',
    x,
    series: [
      { key: 'synced', label: 'synced (our ledger)', color: COLORS.synced, values: runs.map((r) => r.synced) },
      { key: 'criteoIdentifiers', label: 'in Criteo (as read)', color: COLORS.criteo, dashed: true, values: runs.map((r) => r.criteo?.identifiers ?? null) },
      { key: 'matched', label: 'matched by Criteo (as read)', color: COLORS.matched, values: runs.map((r) => r.criteo?.matched ?? null) },
    ],
    format: (v) => formatCount(Math.round(v)),
    integer: true,
  });
  const rates = lineChart({
    id: `rate-${list.segmentId}`,
    title: 'Match rate per run (matched ÷ identifiers in Criteo)',
    x,
    series: [{ key: 'matchRate', label: 'match rate', color: COLORS.rate, values: runs.map((r) => r.matchRate) }],
    format: (v) => formatPercent(v),
    tickFormat: (v) => formatPercent(v, { digits: 0 }),
    yMax: 1,
    threshold: { value: lowMatchRate, label: `warning below ${pct(lowMatchRate)} (LOW_MATCH_RATE)` },
  });
  return `<div class="trend" data-trend="${esc(list.segmentId)}"><h3>Trend <span class="sub">(${runs.length} run${runs.length === 1 ? '' : 's'} in range; Criteo is read only after a run that changed the list)</span></h3><div class="two">${counts}${rates}</div></div>`;
}

/** After a change of email rule, the customers it newly accepts: their emails now count, and reach Criteo. */
function newlyValid(count: number | null): string {
  return count ? `<div class="sub" data-newly-valid>${n(count)} newly valid email${count === 1 ? '' : 's'} (email rule)</div>` : '';
}

function runsTable(list: ListReport): string {
  const rows = [...list.runs].reverse().map((r) => {
    const rejected = r.batches.length ? `${n(r.criteoInvalid)} of ${n(r.criteoInvalid + r.criteoValid)}` : '–';
    const samples = [...new Set(r.batches.flatMap((b) => b.sampleInvalid))].slice(0, 5);
    return `<tr data-run="${r.runId}"><td class="nowrap">run ${r.runId}<div class="sub">${dayMonthUtc(r.runStartedAt)} · ${esc(r.trigger)}</div></td><td><span class="status ${esc(r.status)}">${esc(r.action === 'empty' ? `emptied · ${r.status}` : r.status)}</span>${r.reason ? `<div class="sub">${esc(r.reason)}</div>` : ''}${newlyValid(r.newlyValidEmails)}</td>
<td class="num">${n(r.funnel?.targetGroup)}</td><td class="num">${n(r.funnel?.uniqueIdentifiers)}</td><td class="num">+${n(r.added)} / −${n(r.removed)}</td>
<td class="num" data-col="synced">${n(r.synced)}</td><td class="num" data-col="criteoIdentifiers">${n(r.criteo?.identifiers)}</td><td class="num" data-col="matched">${n(r.criteo?.matched)}</td>
<td class="num" data-col="matchRate">${pct(r.matchRate)}</td><td class="num" data-col="coverage">${pct(r.coverage)}</td><td class="nowrap">${r.criteo ? dayMonthUtc(r.criteo.readAt) : '<span class="sub">not read</span>'}</td>
<td class="num">${rejected}</td></tr>${
      samples.length
        ? `<tr class="samples-row"><td colspan="12">Criteo's sample of what it rejected in run ${r.runId} (prefix and length only): <span class="mono">${samples.map((s) => esc(s)).join(' · ')}</span></td></tr>`
        : ''
    }`;
  });
  return `<details class="runs"><summary>Every run in range, newest first (exact figures)</summary>
<div class="scroll"><table class="grid-table compact"><thead><tr><th>Run, started (UTC)</th><th>Status</th><th class="num">Target-group customers</th><th class="num">Unique identifiers</th><th class="num">Added / removed</th><th class="num">Synced</th><th class="num">In Criteo</th><th class="num">Matched</th><th class="num">Match rate</th><th class="num">Coverage</th><th>Criteo read (UTC)</th><th class="num">Rejected by Criteo</th></tr></thead>
<tbody>${rows.join('')}</tbody></table></div></details>`;
}

/** The report's style sheet; the console serves it with its own. */
export const REPORT_CSS = `
:root{--ink:#1d2433;--muted:#5d6b82;--line:#e3e8ef;--bg:#f5f7fb;--card:#fff;--warn:#b54708;--warnbg:#fff7ed;--ok:#067647;--okbg:#ecfdf3}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0}h3{font-size:15px;margin:18px 0 8px}
.meta{color:var(--muted);margin:4px 0}.note{color:var(--muted);margin:4px 0 16px;max-width:900px}.sub{color:var(--muted);font-size:12px;font-weight:normal}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:0 0 18px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.grid-table{border-collapse:collapse;width:100%}.grid-table th,.grid-table td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
.grid-table th{font-size:12px;color:var(--muted);font-weight:600;white-space:normal!important;vertical-align:bottom}.scroll{overflow-x:auto}.samples-row td{border-top:0;padding-top:0;color:#b42318;font-size:12px}.compact td,.compact th{padding:6px 7px}.nowrap{white-space:nowrap}.grid-table th.group{text-align:center;border-bottom:2px solid var(--line)}
.num{text-align:right!important;font-variant-numeric:tabular-nums;white-space:nowrap}.strong{font-weight:700}.mono{font-family:ui-monospace,Menlo,Consolas,monospace}
.list-fig{background:#f7f5ff}.campaigns td:first-child{min-width:170px}
.badge{display:inline-block;padding:2px 8px;border-radius:999px;font-size:12px;font-weight:600;white-space:nowrap}.badge.warn{background:var(--warnbg);color:var(--warn)}.badge.ok{background:var(--okbg);color:var(--ok)}.badge.idle{background:#f2f4f7;color:var(--muted)}
.warnings{border-left:4px solid #f79009}.warnings ul{list-style:none;margin:10px 0 0;padding:0}.warning{padding:10px 0;border-top:1px solid var(--line)}.warning:first-child{border-top:0}
.wtitle{font-weight:700;color:var(--warn)}.warning p{margin:4px 0}.action code,code{background:#f2f4f7;padding:1px 5px;border-radius:4px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
.list-warnings{list-style:none;margin:10px 0;padding:10px 14px;background:var(--warnbg);border-radius:8px;border:1px solid #fedf89}.list-warnings li{margin:3px 0}.list-warnings strong{color:var(--warn)}
.all-clear{border-left:4px solid #12b76a}.all-clear p{margin:6px 0 0;color:var(--muted)}
.list-head{display:flex;align-items:baseline;gap:10px}.chips{margin:8px 0 2px}.chip{display:inline-block;margin:0 6px 4px 0;padding:2px 10px;border-radius:999px;font-size:12px;border:1px solid var(--line)}
.chip.active{background:#eff8ff;border-color:#b2ddff;color:#175cd3}.chip.ended{background:#f2f4f7;color:var(--muted)}.chip .id{font-family:ui-monospace,Menlo,Consolas,monospace;opacity:.8}
.two{display:grid;grid-template-columns:minmax(0,1.6fr) minmax(0,1fr);gap:24px;align-items:start}.trend .two{grid-template-columns:1fr 1fr}
.stage{display:grid;grid-template-columns:210px 1fr 92px 54px;gap:10px;align-items:center;padding:5px 8px;margin:0 -8px;border-radius:6px}
.stage .label{font-weight:600}.stage .help{font-weight:normal;color:var(--muted);font-size:11.5px}
.bar{background:#eef2f6;border-radius:4px;height:18px;overflow:hidden}.bar div{height:100%;border-radius:4px}
.count{text-align:right;font-variant-numeric:tabular-nums;font-weight:700}.share{text-align:right;color:var(--muted);font-variant-numeric:tabular-nums}
.from-criteo{background:#f2fbf8}.unit{font-size:10.5px;font-weight:normal;color:var(--muted)}.unknown{color:var(--muted);font-weight:normal}
.criteo-chip{display:inline-block;font-size:10.5px;font-weight:700;color:#0b8a7a;border:1px solid #99e2d5;background:#f0fdf9;padding:0 6px;border-radius:999px;vertical-align:1px}
.foot{color:var(--muted);font-size:12px;margin:6px 0 0}.empty{color:var(--muted)}
.kpis{display:grid;gap:12px;margin-top:34px}.kpi{border:1px solid var(--line);border-radius:10px;padding:12px 16px}.kpi-label{color:var(--muted);font-weight:600}
.kpi-value{font-size:32px;font-weight:800;font-variant-numeric:tabular-nums}.kpi-help{color:var(--muted);font-size:12.5px}
.chart{margin:0}.chart figcaption{font-weight:600;margin-bottom:4px}.chart svg{display:block;background:#fcfcfd;border:1px solid var(--line);border-radius:8px}
.grid{stroke:#eaecf0}.axis{stroke:#98a2b3}.tick{font-size:11px;fill:#5d6b82}.tick.sub{font-size:10px}.value{font-size:11px;font-weight:700}
.threshold{stroke:#f04438;stroke-dasharray:4 4}.threshold-label{font-size:10.5px;fill:#d92d20}
.legend{display:flex;flex-wrap:wrap;gap:12px;margin-top:6px;font-size:12px;color:var(--muted)}.legend .key{display:inline-flex;align-items:center;gap:5px}
details.runs{margin-top:14px}details.runs summary{cursor:pointer;font-weight:600;color:#344054}
.status{font-weight:600}.status.succeeded{color:var(--ok)}.status.failed,.status.incomplete,.status.held{color:#b42318}
footer{color:var(--muted);font-size:12px;text-align:center;margin:24px 0}
@media print{body{background:#fff}.card{box-shadow:none;break-inside:avoid}details.runs{display:block}}
@media (max-width:820px){.two,.trend .two{grid-template-columns:1fr}.stage{grid-template-columns:140px 1fr 70px 50px}}
`;

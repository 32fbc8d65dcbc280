import { REPORT_CSS } from '../report/render-html.js';

/**
 * The console's two static files, kept in the source so the production build
 * carries them without a copy step: the style sheet (the report's, plus the
 * console's own) and the one script, which polls a run's progress and reloads
 * the page when the run has ended. The CSP allows scripts from the console's
 * own origin only, so this file is the only script a page can run.
 */

export const CONSOLE_CSS = `${REPORT_CSS}
nav.top{display:flex;gap:18px;align-items:center;padding:10px 24px;background:#1d2433;color:#fff}nav.top a{color:#cfd8e3;text-decoration:none;font-weight:600}
nav.top a.here{color:#fff;border-bottom:2px solid #7aa7ff}nav.top .brand{font-weight:800;margin-right:12px}nav.top .who{margin-left:auto;color:#cfd8e3;font-size:13px}
h1{margin:0 0 10px}.notice{padding:10px 14px;border-radius:8px;margin:0 0 16px;font-weight:600}.notice.ok{background:var(--okbg);color:var(--ok)}.notice.error{background:#fef3f2;color:#b42318}
form{display:inline-block;margin:0 8px 0 0}form.stack{display:grid;gap:8px;max-width:420px}label{font-weight:600;font-size:13px}
input,select{font:inherit;padding:6px 8px;border:1px solid var(--line);border-radius:6px}
button{font:inherit;font-weight:700;padding:7px 16px;border-radius:8px;border:1px solid #2f6fdf;background:#2f6fdf;color:#fff;cursor:pointer}
button.secondary,form.secondary button{background:#fff;color:#2f6fdf}a.button{display:inline-block;padding:7px 16px;border-radius:8px;border:1px solid #b42318;color:#b42318;text-decoration:none;font-weight:700}
form.filters{display:flex;gap:10px;align-items:end;flex-wrap:wrap;margin-bottom:12px}form.filters div{display:grid;gap:3px}
.actions{margin:12px 0}.holder{background:var(--warnbg);color:var(--warn);padding:8px 12px;border-radius:8px}
.progress-list{display:grid;gap:10px;margin:10px 0}.progress-row{display:grid;grid-template-columns:140px 1fr 220px;gap:12px;align-items:center}
.progress-row .bar div{background:#5b3fc4;transition:width .3s}.progress-note{color:var(--muted);font-size:12.5px}
.batches td,.batches th{font-size:12px;padding:4px 6px}.mono{word-break:break-all}
`;

export const PROGRESS_JS = `'use strict';
// Polls the run's progress (counts and statuses only) and reloads the page once the run has ended,
// so the page ends on the outcome as the server renders it.
(function () {
  var root = document.querySelector('[data-progress-url]');
  if (!root) return;
  var url = root.getAttribute('data-progress-url');
  var state = document.querySelector('[data-progress-state]');
  function row(list) {
    var id = 'progress-' + list.segmentId;
    var el = document.getElementById(id);
    if (el) return el;
    el = document.createElement('div');
    el.id = id;
    el.className = 'progress-row';
    el.setAttribute('data-list-progress', list.segmentId);
    var name = document.createElement('div');
    name.textContent = 'List ' + list.segmentId;
    var bar = document.createElement('div');
    bar.className = 'bar';
    bar.appendChild(document.createElement('div'));
    var note = document.createElement('div');
    note.className = 'progress-note';
    el.appendChild(name);
    el.appendChild(bar);
    el.appendChild(note);
    root.appendChild(el);
    return el;
  }
  function render(p) {
    p.lists.forEach(function (list) {
      var el = row(list);
      var share = list.planned > 0 ? Math.min(100, (100 * list.done) / list.planned) : list.finished ? 100 : 0;
      el.querySelector('.bar div').style.width = share.toFixed(1) + '%';
      el.setAttribute('data-done', String(list.done));
      el.querySelector('.progress-note').textContent = list.note;
    });
    if (state) state.textContent = p.summary;
  }
  function tick() {
    fetch(url, { headers: { accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (p) {
        render(p);
        if (p.finished) window.location.reload();
        else setTimeout(tick, 1000);
      })
      .catch(function () {
        if (state) state.textContent = 'Lost contact with the console; trying again…';
        setTimeout(tick, 3000);
      });
  }
  tick();
})();
`;

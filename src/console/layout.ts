import { formatUtc } from '../core/format.js';
import { esc } from '../report/render-svg.js';

/**
 * The console's page shell: the navigation, who is signed in, a notice when
 * there is one, and the page. Everything printed goes through `esc`; the only
 * script is the static progress file (the CSP allows no other).
 */

export type Section = 'lists' | 'campaigns' | 'criteo-lists' | 'runs';

export interface PageContext {
  /** The authenticated user, as recorded in the runs this user starts. */
  user: string;
  /** A one-line message above the page: what just happened, or why something was refused. */
  notice?: { kind: 'ok' | 'error'; text: string } | undefined;
}

const NAV: { section: Section; href: string; label: string }[] = [
  { section: 'lists', href: '/lists', label: 'Lists' },
  { section: 'campaigns', href: '/campaigns', label: 'Campaigns' },
  { section: 'criteo-lists', href: '/criteo-lists', label: 'Criteo lists' },
  { section: 'runs', href: '/runs', label: 'Runs' },
];

export function page(title: string, section: Section | null, body: string, ctx: PageContext, opts: { script?: boolean } = {}): string {
  const nav = NAV.map((n) => `<a href="${n.href}"${n.section === section ? ' class="here" aria-current="page"' : ''}>${n.label}</a>`).join('');
  const notice = ctx.notice ? `<p class="notice ${ctx.notice.kind}" role="status" data-notice="${ctx.notice.kind}">${esc(ctx.notice.text)}</p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · audience-sync console</title>
<link rel="stylesheet" href="/static/console.css">
${opts.script ? '<script src="/static/progress.js" defer></script>' : ''}
</head>
<body><nav class="top"><span class="brand">audience-sync</span>${nav}<span class="who">Signed in as <strong data-user>${esc(ctx.user)}</strong></span></nav>
<main>${notice}${body}
<footer>All times are UTC. Criteo's counts are approximate and lag a sync by up to a day.</footer></main></body></html>
`;
}

/** A page that says one thing: a refusal, a missing page, an error. */
export function messagePage(title: string, text: string, ctx: PageContext, section: Section | null = null): string {
  return page(
    title,
    section,
    `<section class="card"><h1>${esc(title)}</h1><p data-message>${esc(text)}</p><p><a href="/lists">Back to the lists</a></p></section>`,
    ctx,
  );
}

/** A POST form with its CSRF token; `fields` are already-escaped inputs. */
export function postForm(action: string, csrfToken: string, fields: string, button: string, opts: { className?: string } = {}): string {
  return `<form method="post" action="${esc(action)}"${opts.className ? ` class="${opts.className}"` : ''}><input type="hidden" name="_csrf" value="${esc(csrfToken)}">${fields}<button type="submit">${esc(button)}</button></form>`;
}

export const when = (iso: string | null | undefined) => formatUtc(iso, '–');

export function statusBadge(status: string): string {
  return `<span class="status ${esc(status)}" data-status="${esc(status)}">${esc(status)}</span>`;
}

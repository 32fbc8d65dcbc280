import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { formatCount } from '../core/format.js';
import { oneLine } from '../core/errors.js';
import { ambiguousName, findOrCreateList } from '../criteo/find-or-create.js';
import { listCriteoLists, type CriteoListRow } from '../report/criteo-lists.js';
import { esc } from '../report/render-svg.js';
import { Refusal, csrfChecked, noticeOf, pageContext, sendHtml, type ConsoleContext } from './context.js';
import { page, postForm, when, type PageContext } from './layout.js';

/**
 * Criteo lists: the contact lists the job's credentials can see, joined with
 * what the job knows of each (`audience-sync lists`), and the form that finds
 * or creates a list by advertiser and name (`audience-sync lists create`).
 */

export function criteoListsRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  app.get('/criteo-lists', async (request, reply) => {
    const notice = noticeOf(request.query, {
      created: (id) => `Created list ${id}. Criteo serves a new list about 24 hours after it is created.`,
      found: (id) => `The advertiser already has a list of that name: list ${id}. Nothing was created.`,
    });
    return showCriteoLists(ctx, request, reply, notice);
  });

  app.post('/criteo-lists', csrfChecked(app), async (request, reply) => {
    const form = (request.body ?? {}) as Record<string, unknown>;
    const advertiserId = typeof form.advertiser === 'string' ? form.advertiser.trim() : '';
    const name = typeof form.name === 'string' ? form.name.trim() : '';
    const description = typeof form.description === 'string' ? form.description.trim() : '';
    if (!/^[1-9]\d{0,18}$/.test(advertiserId)) return showCriteoLists(ctx, request, reply, refused('The advertiser is a number, e.g. 501.'), 400);
    if (name === '' || name.length > 255) return showCriteoLists(ctx, request, reply, refused('A list needs a name of at most 255 characters.'), 400);
    const result = await findOrCreateList(ctx.deps.client, { advertiserId, name, ...(description ? { description } : {}) }).catch((error: unknown) => {
      throw new Refusal(502, 'Criteo refused', `Criteo did not create the list: ${oneLine(error)}`);
    });
    if (result.kind === 'ambiguous') return showCriteoLists(ctx, request, reply, refused(ambiguousName(advertiserId, name, result.ids)), 409);
    if (result.kind === 'absent') throw new Refusal(502, 'Criteo refused', `Criteo neither found nor created a list named ${JSON.stringify(name)}.`);
    return reply.redirect(`/criteo-lists?${result.kind}=${result.list.id}`, 303);
  });
}

const refused = (text: string): PageContext['notice'] => ({ kind: 'error', text });

async function showCriteoLists(ctx: ConsoleContext, request: FastifyRequest, reply: FastifyReply, notice: PageContext['notice'], status = 200) {
  let lists: CriteoListRow[] | string;
  try {
    lists = await listCriteoLists(ctx.deps.db, ctx.deps.client);
  } catch (error) {
    lists = `Criteo did not answer the search for lists: ${oneLine(error)}`;
  }
  const csrfToken = reply.generateCsrf({ userInfo: request.consoleUser });
  return sendHtml(reply, page('Criteo lists', 'criteo-lists', criteoListsBody(lists, csrfToken), pageContext(request, notice)), status);
}

function criteoListsBody(lists: CriteoListRow[] | string, csrfToken: string): string {
  const fields = `<label for="advertiser">Advertiser id</label><input id="advertiser" name="advertiser" inputmode="numeric" required>
<label for="name">List name</label><input id="name" name="name" maxlength="255" required>
<label for="description">Description (optional)</label><input id="description" name="description" maxlength="500">`;
  const create = `<section class="card"><h2>Create a list</h2><p class="sub">Finds the advertiser's list of this name, or creates it: pressing twice, or two people at once, still makes one list. Criteo serves a new list about 24 hours after it is created.</p>
${postForm('/criteo-lists', csrfToken, fields, 'Find or create the list', { className: 'stack' })}</section>`;
  return `<h1>Criteo lists</h1>${typeof lists === 'string' ? `<p class="notice error" data-criteo-error>${esc(lists)}</p>` : listsTable(lists)}${create}`;
}

function listsTable(rows: readonly CriteoListRow[]): string {
  if (rows.length === 0) return '<section class="card"><p>These credentials see no contact list.</p></section>';
  const body = rows.map((r) => {
    const campaigns = r.campaigns.map((c) => `${esc(c.campaignId)} (${c.phase})`).join(', ') || '–';
    return `<tr data-criteo-list="${esc(r.segmentId)}"><td><a href="/lists/${esc(r.segmentId)}">${esc(r.segmentId)}</a></td><td>${esc(r.name ?? 'not found in Criteo')}${r.notFound ? `<div class="sub">${esc(r.notFound)}</div>` : ''}</td>
<td>${esc(r.advertiserId ?? '–')}</td><td>${when(r.createdAt)}</td><td>${campaigns}</td><td class="num">${formatCount(r.ledgerSize)}</td>
<td>${r.lastSync ? `${esc(r.lastSync.status)}<div class="sub">${when(r.lastSync.finishedAt)}</div>` : '–'}</td><td class="num">${formatCount(r.statistics?.identifiers ?? null, '–')}</td><td class="num">${formatCount(r.statistics?.matches ?? null, '–')}</td></tr>`;
  });
  return `<section class="card"><h2>Lists these credentials can see</h2><div class="scroll"><table class="grid-table"><thead><tr><th>List</th><th>Name</th><th>Advertiser</th><th>Created in Criteo</th><th>Campaigns</th><th class="num">Synced</th><th>Last sync</th><th class="num">In Criteo</th><th class="num">Matched</th></tr></thead><tbody>${body.join('')}</tbody></table></div></section>`;
}

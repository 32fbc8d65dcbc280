import type { FastifyInstance } from 'fastify';
import { formatCount, formatPercent } from '../core/format.js';
import { esc } from '../report/render-svg.js';
import { campaignPhase } from '../source/campaign-activity.js';
import { readBindings, readNamedCampaigns, type BindingRow, type NamedCampaign } from '../source/list-bindings.js';
import { pageContext, sendHtml, type ConsoleContext } from './context.js';
import { page, when } from './layout.js';
import { readCampaigns, type CampaignRow } from './queries.js';

/** Campaigns: each one's dates, its list (by id, or by name and what the job bound it to), and its valid-email share. */

export function campaignsRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { db } = ctx.deps;
  app.get('/campaigns', async (request, reply) => {
    const [campaigns, named, bindings] = await Promise.all([readCampaigns(db), readNamedCampaigns(db), readBindings(db)]);
    const byName = new Map(named.map((c) => [c.campaignId, c]));
    const rows = campaigns.map((c) => campaignRow(c, byName.get(c.campaignId), bindings.get(c.campaignId), new Date()));
    const table = rows.length
      ? `<div class="scroll"><table class="grid-table" data-campaigns><thead><tr><th>Campaign</th><th>Advertiser</th><th>Starts</th><th>Measurement ends</th><th>Phase</th><th>List</th><th class="num">Valid-email share</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`
      : '<p>No campaign yet.</p>';
    const body = `<h1>Campaigns</h1><section class="card"><p class="sub">A campaign feeds its list from its start to the end of its measurement period. The valid-email share is of the campaign's own target group, as its list's latest sync counted it.</p>${table}</section>`;
    return sendHtml(reply, page('Campaigns', 'campaigns', body, pageContext(request)));
  });
}

function campaignRow(c: CampaignRow, named: NamedCampaign | undefined, binding: BindingRow | undefined, now: Date): string {
  const share = c.latest && c.latest.targetGroup > 0 ? c.latest.validEmail / c.latest.targetGroup : null;
  const valid = c.latest
    ? `${formatPercent(share, { unknown: '–' })}<div class="sub">${formatCount(c.latest.validEmail)} of ${formatCount(c.latest.targetGroup)} customers · run ${c.latest.runId}</div>`
    : '<span class="sub">not synced yet</span>';
  return `<tr data-campaign="${esc(c.campaignId)}"><td>${esc(c.name)}<div class="sub">${esc(c.campaignId)}</div></td><td>${esc(c.advertiserId)}</td>
<td>${when(c.startsAt)}</td><td>${when(c.measurementEndsAt)}</td><td>${campaignPhase(c, now)}</td><td>${listCell(c, named, binding)}</td><td class="num">${valid}</td></tr>`;
}

function listCell(c: CampaignRow, named: NamedCampaign | undefined, binding: BindingRow | undefined): string {
  const link = (id: string) => `<a href="/lists/${esc(id)}">list ${esc(id)}</a>`;
  if (!named) return c.segmentId ? `${link(c.segmentId)}<div class="sub">by id</div>` : '<span class="sub">no list</span>';
  if (!binding) return `<span class="sub">names “${esc(named.name)}”: the next run finds or creates it</span>`;
  return `${link(binding.segmentId)}<div class="sub">by name “${esc(named.name)}”, ${binding.created ? 'created' : 'found'} by the job</div>`;
}

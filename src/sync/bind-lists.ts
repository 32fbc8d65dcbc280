import { AuthenticationError, CriteoError, VersionRetiredError, oneLine } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CriteoClient } from '../criteo/client.js';
import { ambiguousName, byName, findOrCreateList, matching } from '../criteo/find-or-create.js';
import type { SegmentInfo } from '../criteo/segments.js';
import type { Db } from '../db/connection.js';
import { dropStaleBindings, readBindings, readNamedCampaigns, recordBindings, type BindingRow, type NamedCampaign } from '../source/list-bindings.js';
import type { ListBinding } from './types.js';

/**
 * At the start of a run (and of a plan, which only says what it would do),
 * each campaign that names its list has it found or created under its
 * advertiser: one search of each such advertiser's contact lists; a name
 * with no list is created (idempotent: a concurrent creator's list is taken);
 * a name with several lists fails that campaign's list in one line naming
 * them. The bindings go to the job's own table, never to the source.
 */
export async function bindNamedLists(deps: { db: Db; client?: CriteoClient; log: Logger }, { dryRun = false } = {}): Promise<ListBinding[]> {
  const named = await readNamedCampaigns(deps.db);
  if (!dryRun) await dropStaleBindings(deps.db, named);
  if (named.length === 0) return [];
  const previous = await readBindings(deps.db);
  if (!deps.client) return named.map((c) => recordedBinding(c, previous.get(c.campaignId)));
  const searched = await searchAdvertisers(deps.client, [...new Set(named.map((c) => c.advertiserId))]);
  const bindings: ListBinding[] = [];
  // Campaigns naming the same list of the same advertiser share one find-or-create.
  for (const group of groupByList(named)) {
    const first = group[0]!;
    const outcome = await resolveList(deps.client, first, searched.get(first.advertiserId)!, dryRun);
    for (const campaign of group) bindings.push(bindingOf(campaign, outcome, previous.get(campaign.campaignId)));
  }
  if (!dryRun) await recordBindings(deps.db, bindings.filter(isBound).map(toRow));
  for (const b of bindings) {
    const fields = { campaign: b.campaignId, advertiser: b.advertiserId, list: b.segmentId, state: b.state };
    if (b.state === 'failed') deps.log.warn({ ...fields, reason: b.reason }, 'list not bound');
    else deps.log.info(fields, 'list bound by name');
  }
  return bindings;
}

/** Each advertiser's contact lists, or why they could not be read (the error, for Criteo's own refusals and failures). */
async function searchAdvertisers(client: CriteoClient, advertiserIds: readonly string[]): Promise<Map<string, SegmentInfo[] | CriteoError>> {
  const out = new Map<string, SegmentInfo[] | CriteoError>();
  for (const advertiserId of advertiserIds) {
    try {
      out.set(advertiserId, await client.searchSegments({ advertiserIds: [advertiserId], types: ['ContactList'] }));
    } catch (error) {
      // Refused credentials and a retired version stop the run; a refusal or failure for one advertiser fails its campaigns.
      if (!(error instanceof CriteoError) || isRunStopping(error)) throw error;
      out.set(advertiserId, error);
    }
  }
  return out;
}

function isRunStopping(error: CriteoError): boolean {
  return error instanceof AuthenticationError || error instanceof VersionRetiredError;
}

type Resolution = { state: 'found' | 'created'; list: SegmentInfo } | { state: 'to create' } | { state: 'failed'; reason: string };

async function resolveList(client: CriteoClient, campaign: NamedCampaign, lists: SegmentInfo[] | CriteoError, dryRun: boolean): Promise<Resolution> {
  const { advertiserId, name } = campaign;
  if (!Array.isArray(lists)) return { state: 'failed', reason: `could not read advertiser ${advertiserId}'s lists: ${oneLine(lists)}` };
  const known = byName(matching(lists, advertiserId, name));
  if (known.kind === 'ambiguous') return { state: 'failed', reason: ambiguousName(advertiserId, name, known.ids) };
  if (known.kind === 'found') return { state: 'found', list: known.list };
  if (dryRun) return { state: 'to create' };
  try {
    const made = await findOrCreateList(client, { advertiserId, name }, lists);
    if (made.kind === 'ambiguous') return { state: 'failed', reason: ambiguousName(advertiserId, name, made.ids) };
    if (made.kind === 'absent') return { state: 'failed', reason: `list ${JSON.stringify(name)} of advertiser ${advertiserId} could not be created` };
    return { state: made.kind, list: made.list };
  } catch (error) {
    if (error instanceof CriteoError && isRunStopping(error)) throw error;
    return { state: 'failed', reason: `could not create list ${JSON.stringify(name)} for advertiser ${advertiserId}: ${oneLine(error)}` };
  }
}

function groupByList(named: readonly NamedCampaign[]): NamedCampaign[][] {
  const groups = new Map<string, NamedCampaign[]>();
  for (const c of named) {
    const key = JSON.stringify([c.advertiserId, c.name]);
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  return [...groups.values()];
}

function bindingOf(campaign: NamedCampaign, resolution: Resolution, previous: BindingRow | undefined): ListBinding {
  const base = { campaignId: campaign.campaignId, advertiserId: campaign.advertiserId, name: campaign.name };
  if (resolution.state === 'failed') return { ...base, segmentId: null, state: 'failed', created: false, listCreatedAt: null, reason: resolution.reason };
  if (resolution.state === 'to create') return { ...base, segmentId: null, state: 'to create', created: false, listCreatedAt: null, reason: null };
  const { list } = resolution;
  // A list this job created stays "created" on later runs, which find it.
  const created = resolution.state === 'created' || (previous?.segmentId === list.id && previous.created);
  return { ...base, segmentId: list.id, state: resolution.state, created, listCreatedAt: list.createdAt ?? previous?.listCreatedAt ?? null, reason: null };
}

/** Without Criteo (a plan given no client): the recorded binding when it still matches, else a list to create. */
function recordedBinding(campaign: NamedCampaign, previous: BindingRow | undefined): ListBinding {
  const base = { campaignId: campaign.campaignId, advertiserId: campaign.advertiserId, name: campaign.name, reason: null };
  const current = previous && previous.advertiserId === campaign.advertiserId && previous.name === campaign.name;
  if (!current) return { ...base, segmentId: null, state: 'to create', created: false, listCreatedAt: null };
  return { ...base, segmentId: previous.segmentId, state: 'found', created: previous.created, listCreatedAt: previous.listCreatedAt };
}

function isBound(b: ListBinding): b is ListBinding & { segmentId: string } {
  return b.segmentId !== null;
}

function toRow(b: ListBinding & { segmentId: string }): Omit<BindingRow, 'boundAt'> {
  return { campaignId: b.campaignId, advertiserId: b.advertiserId, name: b.name, segmentId: b.segmentId, created: b.created, listCreatedAt: b.listCreatedAt };
}

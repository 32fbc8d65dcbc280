import type { FastifyInstance } from 'fastify';
import { ConfigError } from '../core/errors.js';
import { buildCoverageReport } from '../report/build.js';
import { readBatches } from '../report/queries.js';
import { findListTargets } from '../source/target-groups.js';
import { listSyncHolder } from '../sync/records.js';
import { Refusal, csrfChecked, pageContext, segmentIdOf, sendHtml, type ConsoleContext } from './context.js';
import { page } from './layout.js';
import { fullResyncBody, listBody, listsBody } from './lists-pages.js';
import { readListRuns } from './queries.js';

/** Lists, a list, and its Resync and Full resync (POST, CSRF-checked, through the CLI's code path). */

const REPORT_DAYS = 30;
const LIST_RUNS_SHOWN = 15;

export function listsRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { db, config } = ctx.deps;
  const since = () => new Date(Date.now() - REPORT_DAYS * 86_400_000);

  app.get('/', (_request, reply) => reply.redirect('/lists'));

  app.get('/lists', async (request, reply) => {
    const report = await buildCoverageReport(db, { lowMatchRate: config.lowMatchRate, since: since() });
    return sendHtml(reply, page('Lists', 'lists', listsBody(report), pageContext(request)));
  });

  app.get('/lists/:id', async (request, reply) => {
    const segmentId = segmentIdOf(request);
    const report = await buildCoverageReport(db, { segmentId, lowMatchRate: config.lowMatchRate, since: since() }).catch((error: unknown) => {
      if (error instanceof ConfigError) throw new Refusal(404, 'No such list', `No campaign or run knows list ${segmentId}.`);
      throw error;
    });
    const [list] = report.lists;
    if (!list) throw new Refusal(404, 'No such list', `No campaign or run knows list ${segmentId}.`);
    const runs = await readListRuns(db, segmentId, LIST_RUNS_SHOWN);
    const [batches, holder] = await Promise.all([
      readBatches(
        db,
        runs.map((r) => r.listSyncId),
      ),
      listSyncHolder(db, segmentId),
    ]);
    const body = listBody({
      list,
      lowMatchRate: config.lowMatchRate,
      lockWaitSeconds: config.lockWaitSeconds,
      holder,
      runs,
      batches,
      csrfToken: reply.generateCsrf({ userInfo: request.consoleUser }),
    });
    return sendHtml(reply, page(`List ${segmentId}`, 'lists', body, pageContext(request)));
  });

  app.get('/lists/:id/full-resync', async (request, reply) => {
    const segmentId = await resyncableList(ctx, segmentIdOf(request));
    const body = fullResyncBody(segmentId, reply.generateCsrf({ userInfo: request.consoleUser }));
    return sendHtml(reply, page(`Full resync of list ${segmentId}`, 'lists', body, pageContext(request)));
  });

  app.post('/lists/:id/resync', csrfChecked(app), async (request, reply) => {
    const segmentId = await resyncableList(ctx, segmentIdOf(request));
    const full = (request.body as Record<string, unknown> | undefined)?.full === '1';
    const started = await ctx.runner.start({ segmentId, full, user: request.consoleUser });
    return reply.redirect(`/runs/${started.runId}?${started.already ? 'already' : 'started'}=${segmentId}`, 303);
  });
}

/** A list a resync can work on: one a campaign feeds (by id, or by a name the job has bound). */
async function resyncableList(ctx: ConsoleContext, segmentId: string): Promise<string> {
  const targets = await findListTargets(ctx.deps.db, new Date(), [segmentId]);
  if (targets.length === 0) throw new Refusal(404, 'Nothing to resync', `List ${segmentId} is not fed by any campaign, so there is nothing to resync.`);
  return segmentId;
}

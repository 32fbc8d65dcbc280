import type { FastifyInstance, FastifyRequest } from 'fastify';
import { runDetail } from '../report/history.js';
import { listSyncHolder } from '../sync/records.js';
import { Refusal, noticeOf, pageContext, sendHtml, type ConsoleContext } from './context.js';
import { page } from './layout.js';
import { findRuns, readRunProgress, type RunFilter } from './queries.js';
import { RUN_STATUSES, progressJson, runBody, runsBody } from './runs-pages.js';

/** The run history (filterable), a run's page, and its progress as JSON for the page's script. */

const RUNS_SHOWN = 50;

export function runsRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { db, config } = ctx.deps;

  app.get('/runs', async (request, reply) => {
    const filter = runFilterOf(request);
    const rows = await findRuns(db, filter);
    return sendHtml(reply, page('Runs', 'runs', runsBody(rows, filter), pageContext(request)));
  });

  app.get('/runs/:runId', async (request, reply) => {
    const runId = runIdOf(request);
    const detail = await runDetail(db, runId);
    if (!detail) throw new Refusal(404, 'No such run', `There is no run ${runId}.`);
    const notice = noticeOf(request.query, {
      started: (list) => `Resync of list ${list} started as run ${runId}.`,
      already: (list) => `A resync of list ${list} was already running from this console: this is its run.`,
    });
    const running = detail.run.status === 'running';
    return sendHtml(reply, page(`Run ${runId}`, 'runs', runBody(detail), pageContext(request, notice), { script: running }));
  });

  app.get('/runs/:runId/progress', async (request, reply) => {
    const runId = runIdOf(request);
    const progress = await readRunProgress(db, runId);
    if (!progress) throw new Refusal(404, 'No such run', `There is no run ${runId}.`);
    const waiting = (progress.segmentIds ?? []).filter((id) => !progress.lists.some((l) => l.segmentId === id));
    const holders = new Map(await Promise.all(waiting.map(async (id) => [id, await listSyncHolder(db, id)] as const)));
    return reply.header('cache-control', 'no-store').send(progressJson(progress, holders, config.lockWaitSeconds));
  });
}

function runIdOf(request: FastifyRequest): number {
  const { runId } = request.params as { runId?: string };
  if (!runId || !/^[1-9]\d{0,9}$/.test(runId)) throw new Refusal(404, 'No such run', 'Run ids are numbers.');
  return Number(runId);
}

function runFilterOf(request: FastifyRequest): RunFilter {
  const q = request.query as Record<string, unknown>;
  const text = (key: string) => (typeof q[key] === 'string' && q[key] !== '' ? q[key] : undefined);
  const status = text('status');
  const trigger = text('trigger');
  const segmentId = text('list');
  if (status !== undefined && !(RUN_STATUSES as readonly string[]).includes(status))
    throw new Refusal(400, 'Unknown status', `A run's status is one of ${RUN_STATUSES.join(', ')}.`);
  if (trigger !== undefined && !/^[A-Za-z0-9._:@-]{1,80}$/.test(trigger))
    throw new Refusal(400, 'Unknown starter', 'Who started a run reads like console:alice, schedule or cli.');
  if (segmentId !== undefined && !/^[1-9]\d{0,18}$/.test(segmentId)) throw new Refusal(400, 'Not a list id', 'List ids are numbers.');
  return { status, trigger, segmentId, limit: RUNS_SHOWN };
}

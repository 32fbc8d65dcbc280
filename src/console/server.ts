import { randomBytes } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import fastifyHelmet from '@fastify/helmet';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { oneLine } from '../core/errors.js';
import type { SyncDeps } from '../sync/run.js';
import { CONSOLE_CSS, PROGRESS_JS } from './assets.js';
import { authenticator, challengeOf } from './auth.js';
import { campaignsRoutes } from './campaigns.js';
import { Refusal, pageContext, sendHtml, type ConsoleContext } from './context.js';
import { criteoListsRoutes } from './criteo-lists.js';
import { messagePage } from './layout.js';
import { listsRoutes } from './lists-routes.js';
import { ResyncRunner } from './resync.js';
import { runsRoutes } from './runs-routes.js';

/**
 * `audience-sync console`: a small web application for CSMs over the job's
 * database and code paths. Server-rendered HTML (Fastify), every request
 * authenticated (auth.ts), every write a POST with a CSRF token bound to the
 * user, strict security headers (helmet: a CSP that runs only the console's
 * own script file, no framing), and no email, identifier or secret on a page.
 */

export interface Console {
  app: FastifyInstance;
  /** Where it listens, once `listen` has answered. */
  url: string;
  close(): Promise<void>;
}

export async function startConsole(deps: SyncDeps): Promise<Console> {
  const app = await buildConsole(deps);
  const { host, port } = deps.config.console;
  await app.listen({ host, port });
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  return { app, url, close: () => app.close() };
}

export async function buildConsole(deps: SyncDeps): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: 16 * 1024, return503OnClosing: true });
  const runner = new ResyncRunner(deps);
  const ctx: ConsoleContext = { deps, runner };
  await registerSafety(app, deps);
  app.get('/static/console.css', (_request, reply) => reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache').send(CONSOLE_CSS));
  // Browsers ask for it on every page: an empty answer keeps their consoles free of 404s.
  app.get('/favicon.ico', (_request, reply) => reply.code(204).send());
  app.get('/static/progress.js', (_request, reply) => reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(PROGRESS_JS));
  listsRoutes(app, ctx);
  runsRoutes(app, ctx);
  campaignsRoutes(app, ctx);
  criteoListsRoutes(app, ctx);
  app.setNotFoundHandler((request, reply) => sendHtml(reply, messagePage('Not found', 'There is no such page in the console.', pageContext(request)), 404));
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof Refusal) return sendHtml(reply, messagePage(error.title, error.message, pageContext(request)), error.status);
    if (error.code === 'FST_CSRF_INVALID_TOKEN' || error.code === 'FST_CSRF_MISSING_SECRET') {
      const text = 'This form was not sent from a console page you opened (or it is too old). Reload the page and try again.';
      return sendHtml(reply, messagePage('Refused', text, pageContext(request)), 403);
    }
    if (error.statusCode && error.statusCode < 500) return sendHtml(reply, messagePage('Refused', oneLine(error), pageContext(request)), error.statusCode);
    deps.log.error({ url: request.routeOptions.url, error: oneLine(error) }, 'console request failed');
    return sendHtml(reply, messagePage('Something went wrong', oneLine(error), pageContext(request)), 500);
  });
  // Runs this console started finish (interrupted, as the CLI's on SIGTERM) before the process ends.
  app.addHook('onClose', () => runner.close());
  return app;
}

/** Authentication on every request, then helmet's headers, form bodies, and CSRF tokens bound to the user. */
async function registerSafety(app: FastifyInstance, deps: SyncDeps): Promise<void> {
  const settings = deps.config.console;
  const authenticate = authenticator(settings);
  app.decorateRequest('consoleUser', '');
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrcElem: ["'self'"],
        // The report's funnel bars size themselves with style attributes; style elements still come only from the console.
        styleSrcAttr: ["'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    // The console may be served over plain HTTP on loopback: HSTS belongs to the TLS proxy in front of it.
    strictTransportSecurity: false,
  });
  app.addHook('onRequest', async (request, reply) => {
    const verdict = authenticate({ headers: request.headers, remoteAddress: request.raw.socket.remoteAddress });
    if ('user' in verdict) {
      request.consoleUser = verdict.user;
      return;
    }
    reply.header('www-authenticate', challengeOf(settings));
    return sendHtml(reply, messagePage('Sign in', `Refused: ${verdict.refused}.`, { user: 'nobody' }), 401);
  });
  await app.register(fastifyFormbody);
  await app.register(fastifyCookie);
  await app.register(fastifyCsrf, {
    sessionPlugin: '@fastify/cookie',
    cookieOpts: { path: '/', httpOnly: true, sameSite: 'strict' },
    csrfOpts: { userInfo: true, hmacKey: randomBytes(32).toString('hex') },
    getUserInfo: (request) => request.consoleUser,
  });
}

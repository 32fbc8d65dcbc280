/**
 * Admin routes under /_sandbox/, so tests running in another process can inspect and
 * steer the sandbox. They are not Criteo's: not recorded as calls, not faulted.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { parseFaultPlan } from '../faults.js';
import { readBody, safeDecode, sendJson, streamJsonArray } from '../http.js';
import { adminSegmentSchema, formatZodError } from '../options.js';
import { installFaults, type SandboxState } from '../state.js';
import { parseSunset, VERSION_PHASES } from '../version.js';

/** PUT /_sandbox/lifecycle: where the served version stands from now on. */
const lifecycleSchema = z.strictObject({
  versionPhase: z.enum(VERSION_PHASES),
  sunset: z.string().nullable().optional(),
});

/** The served version and its lifecycle, as the admin routes show them. */
function lifecycleBody(state: SandboxState) {
  return { apiVersion: state.apiVersion, versionPhase: state.lifecycle.phase, sunset: state.lifecycle.sunset?.toISOString() ?? null };
}

export const ADMIN_PREFIX = '/_sandbox/';

export async function handleAdmin(state: SandboxState, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const body = await readBody(req, state.maxBodyBytes);
  const route = url.pathname.slice(ADMIN_PREFIX.length).replace(/\/$/, '');
  const method = req.method ?? 'GET';
  const adminError = (status: number, error: string) => sendJson(res, { status, body: { error } });
  try {
    const membersMatch = /^segments\/([^/]+)\/members$/.exec(route);
    if (method === 'GET' && membersMatch?.[1]) {
      const id = safeDecode(membersMatch[1]);
      const segment = state.segments.get(id);
      if (!segment) return adminError(404, `unknown segment ${id}`);
      return await streamJsonArray(res, [...segment.members].sort());
    }
    if (route === 'segments' && method === 'GET') {
      const list = [...state.segments.values()].map((s) => ({
        id: s.id,
        advertiserId: s.advertiserId,
        name: s.name,
        size: s.members.size,
        matched: s.matched,
      }));
      return sendJson(res, { status: 200, body: list });
    }
    if (route === 'segments' && method === 'POST') {
      const segment = adminSegmentSchema.parse(JSON.parse(body?.toString('utf8') || 'null'));
      const added = state.segments.add(segment);
      return sendJson(res, { status: 201, body: { id: segment.id, advertiserId: segment.advertiserId, name: added.name } });
    }
    if (route === 'calls' && method === 'GET') return sendJson(res, { status: 200, body: state.calls.all() });
    if (route === 'identifier-audit' && method === 'GET') return sendJson(res, { status: 200, body: state.identifiers.snapshot() });
    if (route === 'faults' && method === 'PUT') {
      const parsed = JSON.parse(body?.toString('utf8') || 'null') as unknown;
      installFaults(state, parsed === null ? undefined : parseFaultPlan(parsed));
      return sendJson(res, { status: 200, body: { faults: state.injector?.plan ?? null } });
    }
    if (route === 'lifecycle' && method === 'GET') return sendJson(res, { status: 200, body: lifecycleBody(state) });
    if (route === 'lifecycle' && method === 'PUT') {
      const wanted = lifecycleSchema.parse(JSON.parse(body?.toString('utf8') || 'null'));
      state.lifecycle = { phase: wanted.versionPhase, sunset: parseSunset(wanted.sunset) };
      return sendJson(res, { status: 200, body: lifecycleBody(state) });
    }
    return adminError(404, `no admin route ${method} ${url.pathname}`);
  } catch (error) {
    const message = error instanceof z.ZodError ? formatZodError(error) : error instanceof Error ? error.message : String(error);
    return adminError(400, message);
  }
}

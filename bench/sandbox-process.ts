import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';

/**
 * The Criteo sandbox in a process of its own (`audience-sync sandbox`), so
 * that neither its memory (a ten-million-member list is about 1.2 GB of heap)
 * nor its CPU is counted as the job's. Read through its admin routes.
 */

export const BENCH_CLIENT = { clientId: 'bench-client', clientSecret: 'bench-secret' };
const API_VERSION = '2026-07';

export interface SandboxCallRecord {
  at: number;
  operation: string;
  segmentId?: string;
  status: number;
  identifiers?: number;
  op?: 'add' | 'remove';
  durationMs?: number;
}

export interface SandboxProcess {
  url: string;
  pid: number;
  calls(): Promise<SandboxCallRecord[]>;
  segmentSizes(): Promise<Record<string, number>>;
  /** Peak resident memory of the sandbox process (VmHWM), MB. */
  peakRssMb(): number;
  stop(): Promise<void>;
}

export async function startSandboxProcess(opts: {
  /** The repository root (src/cli/main.ts is run from there). */
  root: string;
  dir: string;
  segments: string[];
  advertiserId: string;
  rateLimitPerMinute: number;
  heapMb: number;
}): Promise<SandboxProcess> {
  const config = join(opts.dir, 'sandbox.json');
  writeFileSync(
    config,
    JSON.stringify({
      clients: [{ ...BENCH_CLIENT, advertiserIds: '*' }],
      segments: opts.segments.map((id) => ({ id, advertiserId: opts.advertiserId, name: `Bench list ${id}` })),
      rateLimitPerMinute: opts.rateLimitPerMinute,
    }),
  );
  const child: ChildProcess = spawn(
    process.execPath,
    [`--max-old-space-size=${opts.heapMb}`, '--import', 'tsx', 'src/cli/main.ts', 'sandbox', '--port', '0', '--config', config],
    { cwd: opts.root, stdio: ['ignore', 'pipe', 'inherit'], env: { PATH: process.env.PATH ?? '' } },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`sandbox exited (${code}) before listening: ${out}`)));
  });
  const admin = async <T>(path: string): Promise<T> => {
    const res = await request(`${url}/_sandbox/${path}`);
    return (await res.body.json()) as T;
  };
  return {
    url,
    pid: child.pid!,
    calls: () => admin<SandboxCallRecord[]>('calls'),
    segmentSizes: async () => {
      const list = await admin<{ id: string; size: number }[]>('segments');
      return Object.fromEntries(list.map((s) => [s.id, s.size]));
    },
    peakRssMb: () => {
      try {
        const kb = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
        return kb ? Math.round(Number(kb) / 102.4) / 10 : NaN;
      } catch {
        return NaN;
      }
    },
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function token(url: string, agent: Agent): Promise<string> {
  const res = await request(`${url}/oauth2/token`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: BENCH_CLIENT.clientId, client_secret: BENCH_CLIENT.clientSecret }).toString(),
  });
  const body = (await res.body.json()) as { access_token: string };
  return body.access_token;
}

/**
 * The sandbox's own speed: one PATCH add per entry of `sizes`, of that many
 * fresh identifiers, bodies built beforehand, `concurrency` at a time, to a
 * scratch list (emptied after). What the job could at best reach against
 * this sandbox with the same requests.
 */
export async function measureSandboxCeiling(url: string, segmentId: string, sizes: readonly number[], concurrency: number) {
  const calls = sizes.length;
  const size = Math.max(...sizes);
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 30_000 });
  const bearer = await token(url, agent);
  const bodies = sizes.map((n) => {
    const identifiers = Array.from({ length: n }, () => randomBytes(32).toString('hex'));
    return JSON.stringify({ data: { type: 'ContactlistAmendment', attributes: { operation: 'add', identifierType: 'email', identifiers } } });
  });
  const path = `${url}/${API_VERSION}/marketing-solutions/audience-segments/${segmentId}/contact-list`;
  const headers = { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', accept: 'application/json' };
  const durations: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        const t = performance.now();
        const res = await request(path, { method: 'PATCH', dispatcher: agent, headers, body });
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`sandbox ceiling: PATCH answered ${res.statusCode}`);
        durations.push(performance.now() - t);
      }
    }),
  );
  const wallMs = performance.now() - started;
  const res = await request(path, { method: 'DELETE', dispatcher: agent, headers: { authorization: `Bearer ${bearer}` } });
  await res.body.text();
  await agent.close();
  return {
    calls,
    size,
    concurrency,
    wallMs,
    callsPerSecond: (calls / wallMs) * 1000,
    identifiersPerSecond: (sizes.reduce((x, y) => x + y, 0) / wallMs) * 1000,
    meanCallMs: durations.reduce((a, b) => a + b, 0) / durations.length,
  };
}

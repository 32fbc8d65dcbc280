/**
 * The call log: every Criteo call is recorded on arrival and completed when it is
 * answered, at once, after a delay, or never (a hang, freed on close).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson, type Reply } from './http.js';
import type { SandboxCall, SandboxOperation, WindowCountOptions } from './types.js';

export class CallLog {
  private readonly pending = new Set<ServerResponse>();
  private readonly timers = new Set<NodeJS.Timeout>();

  /** `calls` is the array the Sandbox handle exposes; the log appends to it. */
  constructor(private readonly calls: SandboxCall[]) {}

  all(): readonly SandboxCall[] {
    return this.calls;
  }

  record(req: IncomingMessage, path: string, operation: SandboxOperation, clientId: string | null, at: number): SandboxCall {
    const call: SandboxCall = { at, clientId, operation, status: 0, method: req.method ?? 'GET', path };
    this.calls.push(call);
    return call;
  }

  /** Writes a reply (after an optional delay) and completes the call record. */
  respond(res: ServerResponse, call: SandboxCall, reply: Reply, delayMs = 0): void {
    const write = () => {
      call.status = reply.status;
      call.durationMs = Date.now() - call.at;
      sendJson(res, reply);
    };
    if (delayMs <= 0) return write();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      write();
    }, delayMs);
    this.timers.add(timer);
  }

  /** Never answers: the client is left to time out. The socket is freed on close(). */
  hang(res: ServerResponse): void {
    this.pending.add(res);
    res.once('close', () => this.pending.delete(res));
  }

  /** Drops delayed answers and frees the sockets of hung calls. */
  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const res of this.pending) res.socket?.destroy();
    this.pending.clear();
  }
}

/** The most calls any `windowMs` window held, for checking the job kept under the rate limit. */
export function maxCallsInAnyWindow(calls: readonly SandboxCall[], clientId: string | undefined, windowMs: number, opts: WindowCountOptions): number {
  const times = calls
    .filter(
      (c) =>
        (clientId === undefined || c.clientId === clientId) &&
        (opts.includeTokenCalls === true || c.operation !== 'token') &&
        (opts.includeRejected !== false || c.status !== 429),
    )
    .map((c) => c.at)
    .sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < times.length; hi++) {
    while ((times[hi] as number) - (times[lo] as number) >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createConnection, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import type { Logger } from '../src/core/logger.js';

/** Test instruments for the Criteo client: captured logs, the tokens it sent, a TCP proxy. */

/** A pino logger writing JSON lines into memory, with no redaction: what the client passes is what we see. */
export function captureLog(): { log: Logger; lines: Record<string, unknown>[]; raw: string[] } {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write(chunk: string) {
        for (const line of chunk.split('\n')) {
          if (!line) continue;
          raw.push(line);
          lines.push(JSON.parse(line) as Record<string, unknown>);
        }
      },
    },
  );
  return { log, lines, raw };
}

/** Every bearer token the client sent, read from undici's own diagnostics channel. */
export function watchTokens(): { tokens: Set<string>; stop: () => void } {
  const tokens = new Set<string>();
  const onHeaders = (message: unknown) => {
    // undici's sendHeaders message carries the raw request head as one string.
    const headers = (message as { headers?: string }).headers ?? '';
    const match = /authorization: Bearer (\S+)\r\n/i.exec(headers);
    if (match?.[1]) tokens.add(match[1]);
  };
  subscribe('undici:client:sendHeaders', onHeaders);
  return { tokens, stop: () => unsubscribe('undici:client:sendHeaders', onHeaders) };
}

/**
 * A TCP proxy in front of the sandbox, for what an HTTP server cannot fake:
 * it counts the client's TCP connections (keep-alive reuse) and can break a
 * connection with a TCP reset, either before a request reaches Criteo or
 * after Criteo applied it and before its answer gets back.
 */
export interface TcpProxy {
  url: string;
  /** TCP connections the client opened so far. */
  connections: number;
  /** Requests seen (request lines), by method. */
  requests: Record<string, number>;
  /**
   * The next `times` requests whose request line starts with `method` are cut
   * with a TCP reset: 'before' the sandbox sees them, or 'after' it answered
   * (the change is applied, the answer lost).
   */
  resetNext(method: string, times: number, when: 'before' | 'after'): void;
  /** Resets done so far. */
  resets: number;
  close(): Promise<void>;
}

const REQUEST_LINE = /^(GET|POST|PATCH|DELETE|PUT) \/\S* HTTP\/1\.[01]\r\n/;

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const plan: { method: string; times: number; when: 'before' | 'after' }[] = [];
  const proxy: TcpProxy = {
    url: '',
    connections: 0,
    requests: {},
    resets: 0,
    resetNext(method, times, when) {
      plan.push({ method, times, when });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };

  /** Whether this request line is to be cut, and how; consumes one from the plan. */
  const take = (method: string): 'before' | 'after' | undefined => {
    const step = plan.find((p) => p.method === method && p.times > 0);
    if (!step) return undefined;
    step.times--;
    return step.when;
  };

  const server = createServer((client) => {
    proxy.connections++;
    sockets.add(client);
    const upstream = createConnection({ port: targetPort, host: targetHost });
    sockets.add(upstream);
    let resetOnAnswer = false;
    const cut = () => {
      proxy.resets++;
      client.resetAndDestroy();
      upstream.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      const line = REQUEST_LINE.exec(chunk.toString('latin1', 0, Math.min(chunk.length, 512)));
      if (line) {
        const method = line[1]!;
        proxy.requests[method] = (proxy.requests[method] ?? 0) + 1;
        const when = take(method);
        if (when === 'before') return cut();
        if (when === 'after') resetOnAnswer = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (resetOnAnswer) return cut();
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}

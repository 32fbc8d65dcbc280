import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay in front of a server (Postgres here) that can go down and come
 * back on the same port: `down()` resets every open connection and refuses
 * new ones (the port is closed), `up()` listens again. The job sees exactly
 * what it sees when its database host disappears and returns.
 */
export interface OutageProxy {
  port: number;
  /** Connections relayed so far. */
  connections: number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startOutageProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<OutageProxy> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const proxy: OutageProxy = {
    port: 0,
    connections: 0,
    async down() {
      const s = server;
      server = undefined;
      for (const socket of sockets) socket.resetAndDestroy();
      sockets.clear();
      if (s) await new Promise<void>((done) => s.close(() => done()));
    },
    async up() {
      if (server) return;
      server = createServer(relay);
      await new Promise<void>((done, fail) => {
        server!.once('error', fail);
        server!.listen(port, '127.0.0.1', () => done());
      });
      port = (server.address() as { port: number }).port;
      proxy.port = port;
    },
    async close() {
      await proxy.down();
    },
  };
  function relay(client: Socket): void {
    proxy.connections++;
    const upstream = createConnection({ port: targetPort, host: targetHost });
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', () => {});
    upstream.on('close', end).on('error', () => {});
  }
  await proxy.up();
  return proxy;
}

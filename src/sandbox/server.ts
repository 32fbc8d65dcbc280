/**
 * A loopback fake of Criteo's Marketing Solutions API (contact lists only), for the
 * job's tests, demo and benchmarks. It follows /work/shared/criteo/README.md and
 * validates every request and response body of the contract paths against the
 * vendored OpenAPI excerpt, so the job is tested against Criteo's contract rather
 * than against our own reading of it.
 *
 * Besides the Criteo routes it serves admin routes under /_sandbox/ so tests
 * running in another process can inspect and steer it.
 *
 * This file holds the server (the `Sandbox` handle, routing to the handlers) and
 * `startSandbox`; it is also the import point for the code outside src/sandbox/.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OpenAPIBackend } from 'openapi-backend';
import { maxCallsInAnyWindow } from './calls.js';
import { defaultContractPath, loadContract } from './contract.js';
import type { FaultPlan } from './faults.js';
import { ADMIN_PREFIX, handleAdmin } from './handlers/admin.js';
import { handleApi } from './handlers/api.js';
import { handleToken, TOKEN_PATH } from './handlers/token.js';
import { readBody, sendJson } from './http.js';
import { checkOptions } from './options.js';
import { ApiProblem, envelope } from './problems.js';
import { createState, installFaults, type SandboxState } from './state.js';
import type {
  ContractViolation,
  IdentifierAudit,
  Sandbox,
  SandboxCall,
  SandboxLogger,
  SandboxOptions,
  SandboxSegment,
  VersionPhase,
  WindowCountOptions,
} from './types.js';
import { parseSunset } from './version.js';

export type { FaultPlan } from './faults.js';
export type { Sandbox, SandboxCall, SandboxOptions, VersionPhase } from './types.js';
export { defaultContractPath } from './contract.js';
export { matchScore } from './identifiers.js';
export { loadSandboxOptionsFromFile } from './options.js';

class SandboxServer implements Sandbox {
  url = '';
  port = 0;
  readonly calls: SandboxCall[] = [];
  readonly contractViolations: ContractViolation[] = [];

  private readonly server: Server;
  private readonly state: SandboxState;
  /** Sandbox bugs must not go unnoticed: the logger if there is one, else stderr. */
  private readonly loud: SandboxLogger;
  private closed = false;

  constructor(contract: OpenAPIBackend, opts: SandboxOptions) {
    this.loud =
      opts.log ??
      ((message) => {
        process.stderr.write(`${message}\n`);
      });
    this.state = createState(contract, opts, { calls: this.calls, contractViolations: this.contractViolations, loud: this.loud });
    for (const s of opts.segments ?? []) this.addSegment(s);
    this.setFaults(opts.faults);
    this.server = createServer((req, res) => {
      this.dispatch(req, res).catch((error: unknown) => this.crash(req, res, error));
    });
    // Node's default (5 s) would cut pooled connections between a job's batches; Node
    // announces this value in the Keep-Alive header, so clients retire sockets before we do.
    this.server.keepAliveTimeout = 30_000;
  }

  async listen(port: number, host: string): Promise<void> {
    await new Promise<void>((done, fail) => {
      this.server.once('error', fail);
      this.server.listen(port, host, () => {
        this.server.off('error', fail);
        done();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.port = address.port;
    const shownHost = host.includes(':') ? `[${host}]` : host;
    this.url = `http://${shownHost}:${this.port}`;
  }

  members(segmentId: string): ReadonlySet<string> {
    const segment = this.state.segments.get(segmentId);
    if (!segment) throw new Error(`sandbox: unknown segment ${segmentId}`);
    return new Set(segment.members);
  }

  addSegment(s: SandboxSegment): void {
    this.state.segments.add(s);
  }

  receivedIdentifiers(): Iterable<string> {
    return this.state.identifiers.all();
  }

  identifierAudit(): IdentifierAudit {
    return this.state.identifiers.snapshot();
  }

  maxCallsInAnyWindow(clientId?: string, windowMs = 60_000, opts: WindowCountOptions = {}): number {
    return maxCallsInAnyWindow(this.calls, clientId, windowMs, opts);
  }

  setFaults(plan: FaultPlan | undefined): void {
    installFaults(this.state, plan);
  }

  get apiVersion(): string {
    return this.state.apiVersion;
  }

  setVersionLifecycle(phase: VersionPhase, sunset: string | Date | null = null): void {
    this.state.lifecycle = { phase, sunset: parseSunset(sunset) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.state.calls.close();
    await new Promise<void>((done) => {
      this.server.close(() => done());
      this.server.closeAllConnections();
    });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sandbox.invalid');
    if (url.pathname.startsWith(ADMIN_PREFIX)) return handleAdmin(this.state, req, res, url);
    // Calls are timed from their arrival, not from the end of a 3 MB upload.
    const arrivedAt = Date.now();
    const body = await readBody(req, this.state.maxBodyBytes);
    if (url.pathname === TOKEN_PATH) return handleToken(this.state, req, res, body, arrivedAt);
    return handleApi(this.state, req, res, url, body, arrivedAt);
  }

  /** An exception escaped a handler: a sandbox bug, unless the client simply went away. */
  private crash(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    if (req.destroyed || res.destroyed) return; // aborted upload or closed socket: nobody to answer
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.loud(`SANDBOX INTERNAL ERROR: ${message}`, { error: message });
    const { reply } = envelope(new ApiProblem(500, 'availability', 'internal-error', 'Sandbox internal error', message.slice(0, 500)), '/');
    if (!res.headersSent) sendJson(res, reply);
    else res.destroy();
  }
}

/** Starts a sandbox listening on `host:port` (default 127.0.0.1, ephemeral port). */
export async function startSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  checkOptions(opts);
  const contract = await loadContract(opts.contractPath ?? defaultContractPath());
  const sandbox = new SandboxServer(contract, opts);
  await sandbox.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
  return sandbox;
}

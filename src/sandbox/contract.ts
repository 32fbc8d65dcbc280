/**
 * The vendored OpenAPI excerpt of Criteo's contact-list API: finding and compiling it,
 * checking requests against it, and checking the sandbox's own answers against it so
 * the job is tested against Criteo's contract rather than our reading of it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OpenAPIBackend, ValidationContext, type AjvCustomizer, type Document } from 'openapi-backend';
import type { Reply } from './http.js';
import { ApiProblem, envelope } from './problems.js';
import type { ContractViolation, SandboxCall, SandboxLogger, SandboxOperation } from './types.js';

const DEFAULT_CONTRACT_FILE = 'contract/criteo-marketing-solutions-2026-07.contact-list.openapi.json';

/** Synthetic operation, added in memory, validating error envelopes with the contract's AudienceError. */
const ENVELOPE_OPERATION = 'SandboxErrorEnvelope';

/** The contract's operation ids, by the name the call log gives them. */
export const OPERATION_IDS: Record<string, SandboxOperation> = {
  UpdateContactListByAudienceSegment: 'patch',
  DeleteContactListByAudienceSegment: 'delete',
  GetAudienceSegmentContactListStatistics: 'statistics',
  SearchAudienceSegments: 'search',
  CreateAudienceSegments: 'create',
};

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function isIsoDateTime(s: string): boolean {
  return ISO_DATE_TIME.test(s) && !Number.isNaN(Date.parse(s));
}

/** The contract's `format: int32` for strings (segment ids travel as such). */
export function isInt32String(s: string): boolean {
  if (!/^-?\d{1,10}$/.test(s)) return false;
  const n = Number(s);
  return n >= -(2 ** 31) && n < 2 ** 31;
}

/**
 * openapi-backend only knows OAS numeric formats; the contract also uses `date-time`
 * and puts `format: int32` on a *string* path parameter (segment ids), which ajv would
 * silently skip because openapi-backend's int32 applies to numbers only. For params we
 * re-declare int32 for strings (the only numeric int32 params, limit/offset, keep their
 * min/max and are range-checked by the handler).
 */
const customizeAjv: AjvCustomizer = (ajv, _opts, context) => {
  ajv.addFormat('date-time', { type: 'string', validate: isIsoDateTime });
  if (context === ValidationContext.Params) ajv.addFormat('int32', { type: 'string', validate: isInt32String });
  return ajv;
};

const contractCache = new Map<string, Promise<OpenAPIBackend>>();

/** Finds the contract next to the package root, from src/ (tsx) as well as dist/ (built). */
export function defaultContractPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, DEFAULT_CONTRACT_FILE);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`sandbox: cannot find ${DEFAULT_CONTRACT_FILE} above ${fileURLToPath(import.meta.url)}`);
}

function withEnvelopeOperation(definition: Record<string, unknown>): Record<string, unknown> {
  const paths = (definition['paths'] ?? {}) as Record<string, unknown>;
  const envelopeSchema = {
    type: 'object',
    required: ['errors', 'warnings'],
    properties: {
      errors: { type: 'array', minItems: 1, items: { $ref: '#/components/schemas/AudienceError' } },
      warnings: { type: 'array', items: { $ref: '#/components/schemas/AudienceWarning' } },
    },
  };
  return {
    ...definition,
    paths: {
      ...paths,
      '/__sandbox__/error-envelope': {
        get: {
          operationId: ENVELOPE_OPERATION,
          responses: { '200': { description: 'error envelope', content: { 'application/json': { schema: envelopeSchema } } } },
        },
      },
    },
  };
}

async function buildContract(path: string): Promise<OpenAPIBackend> {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const api = new OpenAPIBackend({
    definition: withEnvelopeOperation(raw) as unknown as Document,
    strict: true,
    validate: true,
    ajvOpts: { strict: false, logger: false },
    customizeAjv,
  });
  await api.init();
  return api;
}

/** Parsing and compiling the contract takes ~0.7 s: do it once per process and path. */
export function loadContract(path: string): Promise<OpenAPIBackend> {
  let pending = contractCache.get(path);
  if (!pending) {
    pending = buildContract(path);
    contractCache.set(path, pending);
    pending.catch(() => contractCache.delete(path));
  }
  return pending;
}

interface AjvErrorLike {
  instancePath?: string;
  message?: string;
  params?: unknown;
}

function describeAjvErrors(errors: readonly AjvErrorLike[] | null | undefined): string[] {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'} ${JSON.stringify(e.params ?? {})}`);
}

/** A request as the contract check sees it: the JSON body already parsed. */
interface ContractRequest {
  method: string;
  path: string;
  query: string;
  body: unknown;
}

/** Throws the 400 Criteo answers when a request breaks the contract, naming the first bad parameter or field. */
export function checkRequest(contract: OpenAPIBackend, request: ContractRequest, operationId: string | undefined): void {
  const result = contract.validateRequest({ ...request, headers: { 'content-type': 'application/json' } }, operationId);
  if (result.valid) return;
  const first = result.errors?.[0];
  const pointer = (first?.instancePath ?? '').replace(/^\/requestBody/, '') || '/';
  const detail = `${pointer} ${first?.message ?? 'is invalid'}`;
  const source: Record<string, string> =
    pointer.startsWith('/path/') || pointer.startsWith('/query/') ? { parameter: pointer.split('/')[2] ?? '' } : { pointer };
  throw new ApiProblem(400, 'validation', 'invalid-request', 'The request does not match the API contract', detail, source);
}

/** Checks every answer against the contract before it goes out; `enabled` false lets them all through. */
export class ReplyChecker {
  constructor(
    private readonly contract: OpenAPIBackend,
    private readonly enabled: boolean,
    private readonly violations: ContractViolation[],
    private readonly loud: SandboxLogger,
  ) {}

  /** Builds the envelope for a problem and checks it (and the call record) before it goes out. */
  checkedEnvelope(problem: ApiProblem, instance: string, operation: SandboxOperation, call?: SandboxCall): Reply {
    const { reply, traceId } = envelope(problem, instance);
    if (call) call.traceId = traceId;
    return this.check(reply, operation, undefined);
  }

  /**
   * A response the contract rejects is a sandbox bug: answer 500 so the test that
   * triggered it fails, and keep the violation for inspection.
   */
  check(reply: Reply, operation: SandboxOperation, operationId: string | undefined): Reply {
    if (!this.enabled) return reply;
    const isEnvelope = reply.status >= 400;
    const target = isEnvelope ? ENVELOPE_OPERATION : operationId;
    if (!target) return reply;
    const result = this.contract.validateResponse(reply.body, target, isEnvelope ? 200 : reply.status);
    if (result.valid) return reply;
    const errors = describeAjvErrors(result.errors);
    this.violations.push({ at: Date.now(), operation, status: reply.status, errors });
    const message = `SANDBOX CONTRACT VIOLATION: ${operation} ${reply.status} response does not match the OpenAPI contract: ${errors.join('; ')}`;
    this.loud(message, { operation, status: reply.status, errors });
    return envelope(
      new ApiProblem(500, 'availability', 'sandbox-contract-violation', 'Sandbox answered outside the contract', errors.join('; ').slice(0, 1000)),
      '/',
    ).reply;
  }
}

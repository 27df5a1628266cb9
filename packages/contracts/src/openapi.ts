import { z } from 'zod';
import { FailureCode, JobListBody, JobResultBody, JobStatus, JobStatusBody } from './jobs.ts';
import { EditOperation, PIPELINE_NAMES, PIPELINE_SPECS, type PipelineSpec } from './pipelines.ts';
import { Priority } from './priority.ts';
import { FieldError, PROBLEM_TITLES, Problem, type ProblemCode, ProblemCode as ProblemCodeSchema, problemType } from './problem.ts';
import { PipelineQueueInfo, QueueBody, WorkerInfo } from './queue.ts';

/*
 * The OpenAPI 3.1 description of the HTTP API (docs/contract.md), served at `GET /openapi.json`.
 * Every schema in it is generated from the zod schemas the API and workers validate with, through
 * zod's own JSON Schema generator (draft 2020-12, the dialect of OpenAPI 3.1): nothing here is a
 * hand-written copy of a body. Bodies the contracts had no schema for are defined below, in zod.
 */

// ---------------------------------------------------------------------------------------------
// Bodies the rest of the contracts do not define
// ---------------------------------------------------------------------------------------------

const SUBMIT_IMAGE_TYPES = 'image/jpeg, image/png, image/webp, image/avif, image/gif, image/tiff';

/** Params of any pipeline; the server validates them against the schema of the pipeline named in `pipeline`. */
function paramsUnion(): z.ZodType {
  const schemas = [...new Set(Object.values(PIPELINE_SPECS).map((s: PipelineSpec) => s.params))];
  return schemas.length === 1 ? schemas[0]! : z.union(schemas as unknown as [z.ZodType, z.ZodType, ...z.ZodType[]]);
}
const SubmitParams = paramsUnion();

const PipelineField = z
  .string()
  .min(1)
  .meta({
    description: 'A pipeline name listed by `GET /v1/pipelines`. An unknown one answers `404`.',
    examples: [...PIPELINE_NAMES],
  });
const PriorityField = Priority.meta({
  description: "Queue priority. Default: the station's default priority (else `normal`). Above the station's highest allowed: `403`.",
});
const WebhookUrlField = z
  .url({ protocol: /^https?$/ })
  .max(2048)
  .meta({
    description:
      'Absolute http(s) URL without credentials, called once with the status body when the job is final (signed with `Darkroom-Signature`). Loopback, link-local and private addresses are refused unless the operator allows them.',
  });

/** `POST /v1/jobs` as `multipart/form-data` (the primary encoding). */
export const SubmitMultipartBody = z.object({
  image: z
    .string()
    .meta({
      format: 'binary',
      contentMediaType: 'application/octet-stream',
      description: `The input image as a file part named \`image\` (required by pipelines that take one). Judged by its bytes, not its name or declared type: ${SUBMIT_IMAGE_TYPES}.`,
    })
    .optional(),
  pipeline: PipelineField,
  params: SubmitParams.optional(), // a JSON text part: see the request body's `encoding`
  priority: PriorityField.optional(),
  webhookUrl: WebhookUrlField.optional(),
});

/** `POST /v1/jobs` as `application/json`. */
export const SubmitJsonBody = z.object({
  pipeline: PipelineField,
  params: SubmitParams.optional(),
  priority: PriorityField.optional(),
  webhookUrl: WebhookUrlField.optional(),
  imageBase64: z
    .string()
    .meta({
      contentEncoding: 'base64',
      description:
        'The input image, base64 (standard or base64url; a `data:<type>;base64,` prefix is accepted). The size limit applies to the decoded bytes.',
    })
    .optional(),
});

/** One entry of `GET /v1/pipelines`. */
export const PipelineInfoBody = z.object({
  name: z.string(),
  description: z.string(),
  acceptsImage: z.boolean(),
  params: z
    .record(z.string(), z.unknown())
    .meta({ description: "JSON Schema (draft 2020-12) of the pipeline's params as stations write them." }),
});
export const PipelineListBody = z.object({ pipelines: z.array(PipelineInfoBody) });

export const HealthBody = z.object({ status: z.literal('ok') });
export const ReadyBody = z.object({ status: z.literal('ready') });

const SubmitWaitQuery = z
  .number()
  .min(0)
  .max(60)
  .meta({ description: 'Seconds (decimals allowed) to hold the answer until the job is final. Outside 0–60: `400`.' });
const IdempotencyKeyHeader = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/)
  .meta({
    description:
      'Within 24 h, the same station sending the same key with the same request (pipeline, canonical params, priority, webhook URL, image sha256) gets the original job back (`200`, `"deduplicated": true`); with a different request, `409`. 1–255 visible ASCII characters, else `400`.',
  });
const JobIdsQuery = z
  .string()
  .min(1)
  .meta({
    description: 'Comma-separated job ids, at most 100 (more is `400`). Unknown ids, and other stations’ ids, are left out of the answer.',
    examples: ['edit_8ntv3369rr6e6hh0y4efv87d,synthetic_0k3vq7m2a9xw5t1c8e4r6y2u'],
  });
const JobIdPath = z.string().meta({
  description: 'A job id as returned by `POST /v1/jobs`; opaque to stations.',
  examples: ['edit_8ntv3369rr6e6hh0y4efv87d'],
});
const PipelineNamePath = z.string().meta({ description: 'A pipeline name.', examples: [...PIPELINE_NAMES] });
const IfNoneMatchHeader = z
  .string()
  .meta({ description: 'An ETag from an earlier answer (`"<sha256>"`, weak or strong, or `*`): `304` when it matches.' });

// ---------------------------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
type Meta = { id: string; description?: string };

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const title = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
/** Component name of a pipeline's params schema: `edit` → `EditParams`. */
export const paramsComponentName = (pipeline: string) =>
  `${pipeline
    .split(/[^a-zA-Z0-9]+/)
    .filter(Boolean)
    .map(title)
    .join('')}Params`;

/** Response bodies: what the server sends (`io: 'output'`, so defaults are always present). */
function outputComponents(): [z.ZodType, Meta][] {
  return [
    [
      Problem,
      {
        id: 'Problem',
        description: 'RFC 9457 problem details: every 4xx/5xx body, as `application/problem+json`. `code` is stable and machine-readable.',
      },
    ],
    [
      FieldError,
      {
        id: 'FieldError',
        description: 'One thing wrong with a request; `path` is a dotted path into it, e.g. `params.operations.0.width`.',
      },
    ],
    [ProblemCodeSchema, { id: 'ProblemCode', description: 'Stable machine-readable problem codes.' }],
    [
      JobStatusBody,
      {
        id: 'JobStatus',
        description:
          'A job as a station sees it. `position` and `estimatedWaitSeconds` only while queued (`position` counts from 1 = next to start, among every station’s jobs of the pipeline, priority order first, then age), `progress` while active, `result` when completed, `error` when failed. `deduplicated` on an answer to a repeated `Idempotency-Key`; `cancelRequested` while an active job is being aborted.',
      },
    ],
    [JobStatus, { id: 'JobStatusValue', description: 'Where a job is in its life.' }],
    [Priority, { id: 'Priority', description: 'Priority classes, most urgent first.' }],
    [
      FailureCode,
      {
        id: 'FailureCode',
        description:
          'Why a job failed: `timeout` ran past its execution limit, `expired` waited past its queue time-to-live, `worker_lost` workers died on it more times than allowed.',
      },
    ],
    [JobResultBody, { id: 'JobResult', description: 'The output image of a completed job.' }],
    [JobListBody, { id: 'JobList', description: 'The status bodies of the known ids asked for.' }],
    [
      QueueBody,
      {
        id: 'Queue',
        description:
          "Counts cover every station; `limits.station` is the caller's own (absent for the admin credential). A limit that is off is `null`.",
      },
    ],
    [
      PipelineQueueInfo,
      {
        id: 'PipelineQueue',
        description: 'One pipeline’s queue. `avgProcessingMs` and `throughputPerMinute` are `null` before there is history.',
      },
    ],
    [WorkerInfo, { id: 'WorkerInfo', description: 'A live worker (heartbeat younger than 20 s).' }],
    [PipelineListBody, { id: 'PipelineList', description: 'Every pipeline this server knows.' }],
    [PipelineInfoBody, { id: 'PipelineInfo', description: 'A pipeline and the JSON Schema of its params.' }],
    [HealthBody, { id: 'Health' }],
    [ReadyBody, { id: 'Ready' }],
  ];
}

/** Request bodies: what stations write (`io: 'input'`, so fields with defaults are optional). */
function inputComponents(): [z.ZodType, Meta][] {
  const specs = Object.values(PIPELINE_SPECS) as PipelineSpec[];
  const out: [z.ZodType, Meta][] = [
    [
      SubmitMultipartBody,
      {
        id: 'SubmitMultipart',
        description: '`POST /v1/jobs` as `multipart/form-data`: the image as a file part, the other fields as text parts.',
      },
    ],
    [
      SubmitJsonBody,
      { id: 'SubmitJson', description: '`POST /v1/jobs` as `application/json`: the image base64-encoded in `imageBase64`.' },
    ],
    [
      SubmitParams,
      {
        id: 'PipelineParams',
        description: `Params of the pipeline named in \`pipeline\`: ${specs.map((s) => `\`${s.name}\` → ${paramsComponentName(s.name)}`).join(', ')}. Params schemas are strict: unknown keys are \`400\`.`,
      },
    ],
  ];
  for (const spec of specs) {
    if (!out.some(([schema]) => schema === spec.params)) {
      out.push([
        spec.params,
        { id: paramsComponentName(spec.name), description: `Params of pipeline \`${spec.name}\`: ${spec.description}` },
      ]);
    }
  }
  out.push([EditOperation, { id: 'EditOperation', description: 'One edit, applied in order; `op` names it.' }]);
  return out;
}

/** `$schema`/`$id` belong to standalone documents, not to components. */
function clean(schema: Json): Json {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

/**
 * Response objects are open: zod strips unknown keys on output, which its JSON Schema says as
 * `additionalProperties: false`, but stations must accept fields that later versions add.
 */
function openObjects(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(openObjects);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node as Json)
      .filter(([k, v]) => !(k === 'additionalProperties' && v === false))
      .map(([k, v]) => [k, openObjects(v)]),
  );
}

function componentSchemas(components: [z.ZodType, Meta][], io: 'input' | 'output'): Record<string, Json> {
  const registry = z.registry<Meta>();
  for (const [schema, meta] of components) registry.add(schema, { id: meta.id });
  const { schemas } = z.toJSONSchema(registry, { io, uri: (id) => `#/components/schemas/${id}`, unrepresentable: 'any' }) as {
    schemas: Record<string, Json>;
  };
  // Shared definitions would land under `__shared`, outside `components`: every reused schema must be registered.
  if ('__shared' in schemas) throw new Error(`unregistered shared schemas: ${Object.keys(schemas.__shared ?? {}).join(', ')}`);
  return Object.fromEntries(
    components.map(([, { id, description }]) => {
      const schema = clean(schemas[id] ?? {});
      return [id, { ...(io === 'output' ? (openObjects(schema) as Json) : schema), ...(description ? { description } : {}) }];
    }),
  );
}

/** A schema used once, inline (query, path and header parameters). */
function inline(schema: z.ZodType): Json {
  return clean(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json);
}

/**
 * `params` is validated against the schema of the pipeline named in `pipeline`: said precisely
 * with `if`/`then` (JSON Schema 2020-12), beside the `anyOf` that documentation tools show.
 */
function paramsByPipeline(): Json[] {
  return (Object.values(PIPELINE_SPECS) as PipelineSpec[]).map((s) => ({
    if: { properties: { pipeline: { const: s.name } }, required: ['pipeline'] },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's `if`/`then` keywords, not a thenable
    then: { properties: { params: ref(paramsComponentName(s.name)) } },
  }));
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/** An example problem body, shaped as the server writes them. */
function problemExample(status: number, code: ProblemCode, detail: string, errors?: FieldError[]): Json {
  return {
    type: problemType(code),
    title: PROBLEM_TITLES[code],
    status,
    detail,
    code,
    ...(errors ? { errors } : {}),
  };
}

type Example = { code: ProblemCode; detail: string; errors?: FieldError[] };

/** A 4xx/5xx answer: always the Problem schema as `application/problem+json`. */
function problem(status: number, description: string, examples: Example[], headers: Record<string, Json> = {}): Json {
  const media: Json = { schema: ref('Problem') };
  if (examples.length === 1) media.example = problemExample(status, examples[0]!.code, examples[0]!.detail, examples[0]!.errors);
  else {
    media.examples = Object.fromEntries(
      examples.map((e) => [e.code, { summary: e.code, value: problemExample(status, e.code, e.detail, e.errors) }]),
    );
  }
  return {
    description,
    ...(Object.keys(headers).length ? { headers } : {}),
    content: { 'application/problem+json': media },
  };
}

const header = (name: string) => ({ $ref: `#/components/headers/${name}` });
const json = (schema: Json, extra: Json = {}) => ({ 'application/json': { schema, ...extra } });

const unauthorizedStation = problem(
  401,
  'No key, or a wrong one (`Authorization: Bearer <key>` or `X-API-Key`).',
  [{ code: 'unauthorized', detail: 'a valid station key is required (Authorization: Bearer <key> or X-API-Key)' }],
  { 'WWW-Authenticate': header('WWW-Authenticate') },
);
const unauthorizedAdmin = problem(
  401,
  'No admin credential, or a wrong one.',
  [{ code: 'unauthorized', detail: 'the admin credential is required' }],
  {
    'WWW-Authenticate': header('WWW-Authenticate'),
  },
);
const forbiddenAdmin = problem(403, 'A station key where the admin credential is needed.', [
  { code: 'forbidden', detail: 'this route needs the admin credential, not a station key' },
]);
const unavailable = problem(
  503,
  'The queue store (Redis) is unreachable; nothing was done. Retry after `Retry-After` seconds.',
  [{ code: 'unavailable', detail: 'the queue store is unreachable; try again shortly' }],
  { 'Retry-After': header('Retry-After') },
);
const internal = problem(500, 'An unexpected error; it has been logged under the `X-Request-Id`.', [
  { code: 'internal', detail: 'an internal error occurred; it has been logged' },
]);
const rateLimited = problem(
  429,
  'The station is over its own requests-per-minute limit. Retry after `Retry-After` seconds.',
  [{ code: 'rate_limited', detail: 'station alpha is over its limit of 60 requests per minute' }],
  { 'Retry-After': header('Retry-After') },
);
const noSuchJob = problem(404, 'No such job: an id that never existed, or another station’s (they answer alike).', [
  { code: 'not_found', detail: 'no such job' },
]);
const expiredJob = problem(410, 'The job existed but has been cleaned up after its retention time.', [
  { code: 'expired', detail: 'the job has been removed after its retention time' },
]);
const unknownPipeline = problem(404, 'Unknown pipeline.', [
  { code: 'not_found', detail: 'unknown pipeline "nope"; GET /v1/pipelines lists them' },
]);

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

export interface OpenApiDocument {
  openapi: string;
  info: Json & { title: string; version: string };
  servers?: { url: string; description?: string }[];
  paths: Record<string, Record<string, Json>>;
  components: Json & { schemas: Record<string, Json> };
  [key: string]: unknown;
}

const STATION = [{ stationBearer: [] }, { stationApiKey: [] }];
const STATION_OR_ADMIN = [...STATION, { adminBearer: [] }, { adminBasic: [] }];
const ADMIN = [{ adminBearer: [] }, { adminBasic: [] }];
const NONE: Json[] = [];

/**
 * Builds the OpenAPI 3.1 document of the HTTP API. `serverUrl`, when given, is the one server
 * listed; without it the document names the server it is served from (`/`).
 */
export function buildOpenApiDocument(opts: { serverUrl?: string } = {}): OpenApiDocument {
  const inputs = componentSchemas(inputComponents(), 'input');
  const outputs = componentSchemas(outputComponents(), 'output');
  for (const id of Object.keys(inputs)) if (id in outputs) throw new Error(`component ${id} is both a request and a response schema`);
  for (const id of ['SubmitJson', 'SubmitMultipart'] as const) inputs[id] = { ...inputs[id], allOf: paramsByPipeline() };

  const jobIdParam = { name: 'id', in: 'path', required: true, schema: inline(JobIdPath) };
  const jobExample = (status: string, extra: Json = {}) => ({
    id: 'edit_8ntv3369rr6e6hh0y4efv87d',
    status,
    pipeline: 'edit',
    priority: 'normal',
    attempts: 0,
    createdAt: '2026-11-22T10:00:00.000Z',
    links: {
      self: '/v1/jobs/edit_8ntv3369rr6e6hh0y4efv87d',
      result: '/v1/jobs/edit_8ntv3369rr6e6hh0y4efv87d/result',
      events: '/v1/jobs/edit_8ntv3369rr6e6hh0y4efv87d/events',
    },
    ...extra,
  });
  const completedExample = jobExample('completed', {
    attempts: 1,
    startedAt: '2026-11-22T10:00:01.000Z',
    finishedAt: '2026-11-22T10:00:01.812Z',
    durationMs: 812,
    result: {
      url: '/v1/jobs/edit_8ntv3369rr6e6hh0y4efv87d/result',
      contentType: 'image/webp',
      width: 512,
      height: 384,
      bytes: 20411,
      sha256: 'a3f1c9e0b7d24e6f8a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778',
    },
  });
  const editExample = {
    operations: [
      { op: 'resize', width: 512, fit: 'inside' },
      { op: 'format', type: 'webp', quality: 80 },
    ],
  };
  const syntheticExample = { steps: 10, stepMs: 100, width: 256, height: 256, seed: 42 };

  const paths: OpenApiDocument['paths'] = {
    '/v1/jobs': {
      post: {
        operationId: 'submitJob',
        tags: ['jobs'],
        summary: 'Submit a job',
        description:
          'Queues a job for a pipeline. Checks run in a fixed order and the first failing one answers (see the API reference): 401, 400 (`wait`), 413, 415 (body type), 400 (malformed body, missing `pipeline`), 404 (unknown pipeline), 400 (every field error at once), 403, 415 (image format), 422, 429, 503. An answered error means nothing was queued and nothing was stored. Unknown top-level fields are ignored.',
        security: STATION,
        parameters: [
          { name: 'wait', in: 'query', required: false, schema: inline(SubmitWaitQuery) },
          { name: 'Idempotency-Key', in: 'header', required: false, schema: inline(IdempotencyKeyHeader) },
        ],
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': {
              schema: ref('SubmitMultipart'),
              encoding: {
                image: { contentType: SUBMIT_IMAGE_TYPES },
                params: { contentType: 'application/json' },
              },
            },
            'application/json': {
              schema: ref('SubmitJson'),
              examples: {
                edit: {
                  summary: 'Resize and convert to WebP',
                  value: { pipeline: 'edit', params: editExample, imageBase64: '<base64 of the image>' },
                },
                synthetic: {
                  summary: 'A synthetic job (no image)',
                  value: { pipeline: 'synthetic', params: syntheticExample, priority: 'high' },
                },
              },
            },
          },
        },
        responses: {
          '200': {
            description:
              'With `wait`: the job became final in time, full status body. With a repeated `Idempotency-Key`: the original job’s current status body with `"deduplicated": true`.',
            headers: { Location: header('Location') },
            content: json(ref('JobStatus'), {
              examples: {
                final: { summary: 'With `wait`: finished in time', value: completedExample },
                deduplicated: {
                  summary: 'A repeated Idempotency-Key',
                  value: jobExample('queued', { position: 3, estimatedWaitSeconds: 12, deduplicated: true }),
                },
              },
            }),
          },
          '202': {
            description: 'Queued. `position` counts from 1; `estimatedWaitSeconds` is `null` until the pipeline has run-time history.',
            headers: { Location: header('Location') },
            content: json(ref('JobStatus'), { example: jobExample('queued', { position: 3, estimatedWaitSeconds: 12 }) }),
          },
          '400': problem(
            400,
            'Malformed body or params, a missing or empty image where the pipeline needs one, a bad `priority`, `webhookUrl` or `Idempotency-Key`, or `wait` out of range; every field error is listed in `errors`.',
            [
              {
                code: 'invalid_request',
                detail: 'the request is invalid',
                errors: [{ path: 'params.operations.0.width', message: 'Too big: expected number to be <=16384' }],
              },
            ],
          ),
          '401': unauthorizedStation,
          '403': problem(403, 'A priority above what the station may use (never silently lowered).', [
            { code: 'forbidden', detail: "priority critical is above this station's highest allowed priority (high)" },
          ]),
          '404': unknownPipeline,
          '409': problem(
            409,
            'The `Idempotency-Key` was used by this station within 24 h for a different request, or the request that took it is still being processed (then with `Retry-After`).',
            [{ code: 'conflict', detail: 'this Idempotency-Key was used for a different request' }],
            { 'Retry-After': header('Retry-After') },
          ),
          '413': problem(413, 'The image is over the size limit (on the decoded bytes).', [
            { code: 'payload_too_large', detail: 'the image is larger than the limit of 20971520 bytes' },
          ]),
          '415': problem(
            415,
            'The body is neither multipart/form-data nor JSON, or the image bytes are not an accepted format (JPEG, PNG, WebP, AVIF, GIF, TIFF; judged by content).',
            [{ code: 'unsupported_media_type', detail: 'the image is not in an accepted format' }],
          ),
          '422': problem(
            422,
            'The image header cannot be read, its dimensions are over the edge or pixel limits, or it is visibly incomplete.',
            [{ code: 'invalid_image', detail: 'the image is incomplete' }],
          ),
          '429': problem(
            429,
            '`queue_full`: the pipeline’s queue is at its depth limit; `rate_limited`: the station is over its own limits (waiting + active jobs, or requests per minute). Retry after `Retry-After` seconds.',
            [
              { code: 'queue_full', detail: 'the edit queue is full' },
              { code: 'rate_limited', detail: 'this station is over its limits' },
            ],
            { 'Retry-After': header('Retry-After') },
          ),
          '500': internal,
          '503': unavailable,
        },
      },
      get: {
        operationId: 'getJobs',
        tags: ['jobs'],
        summary: 'Several jobs at once',
        security: STATION_OR_ADMIN,
        parameters: [{ name: 'ids', in: 'query', required: true, schema: inline(JobIdsQuery) }],
        responses: {
          '200': { description: 'The status bodies of the known ids.', content: json(ref('JobList')) },
          '400': problem(400, '`ids` missing, or more than 100 ids.', [
            { code: 'invalid_request', detail: 'at most 100 ids at once', errors: [{ path: 'ids', message: 'more than 100 ids' }] },
          ]),
          '401': unauthorizedStation,
          '429': rateLimited,
          '500': internal,
          '503': unavailable,
        },
      },
    },
    '/v1/jobs/{id}': {
      get: {
        operationId: 'getJob',
        parameters: [jobIdParam],
        tags: ['jobs'],
        summary: 'A job’s status',
        security: STATION_OR_ADMIN,
        responses: {
          '200': {
            description: 'The status body.',
            content: json(ref('JobStatus'), {
              examples: {
                active: {
                  value: jobExample('active', {
                    attempts: 1,
                    startedAt: '2026-11-22T10:00:01.000Z',
                    progress: { percent: 40, message: 'step 4/10' },
                  }),
                },
                completed: { value: completedExample },
              },
            }),
          },
          '401': unauthorizedStation,
          '404': noSuchJob,
          '410': expiredJob,
          '429': rateLimited,
          '500': internal,
          '503': unavailable,
        },
      },
      delete: {
        operationId: 'cancelJob',
        parameters: [jobIdParam],
        tags: ['jobs'],
        summary: 'Cancel a job',
        description:
          'A queued job is removed at once (`200`, `status: cancelled`). An active one is aborted on the worker holding it (`202`, `status: active`, `cancelRequested: true`) and normally ends `cancelled` within a second; one that finishes before the abort lands stays `completed`.',
        security: STATION_OR_ADMIN,
        responses: {
          '200': {
            description: 'The job was queued and is now cancelled.',
            content: json(ref('JobStatus'), { example: jobExample('cancelled') }),
          },
          '202': {
            description: 'The job is active; its abort was requested.',
            content: json(ref('JobStatus'), { example: jobExample('active', { attempts: 1, cancelRequested: true }) }),
          },
          '401': unauthorizedStation,
          '404': noSuchJob,
          '409': problem(409, 'The job is already final (completed, failed or cancelled).', [
            { code: 'conflict', detail: 'the job is already completed' },
          ]),
          '410': expiredJob,
          '429': rateLimited,
          '500': internal,
          '503': unavailable,
        },
      },
    },
    '/v1/jobs/{id}/result': {
      get: {
        operationId: 'getJobResult',
        tags: ['jobs'],
        summary: 'The output image',
        security: STATION_OR_ADMIN,
        parameters: [jobIdParam, { name: 'If-None-Match', in: 'header', required: false, schema: inline(IfNoneMatchHeader) }],
        responses: {
          '200': {
            description: 'The image bytes, with the type of the result (`result.contentType`).',
            headers: { ETag: header('ETag'), 'Cache-Control': header('Cache-Control'), 'Content-Length': header('Content-Length') },
            content: { 'image/*': { schema: { type: 'string', format: 'binary', contentMediaType: 'image/*' } } },
          },
          '304': {
            description: '`If-None-Match` matched: the client’s copy is current.',
            headers: { ETag: header('ETag'), 'Cache-Control': header('Cache-Control') },
          },
          '401': unauthorizedStation,
          '404': noSuchJob,
          '409': problem(
            409,
            '`not_ready` while the job is queued or active (with `Retry-After: 1`); `no_result` once it failed or was cancelled.',
            [
              { code: 'not_ready', detail: 'the job is active; the result is not ready yet' },
              { code: 'no_result', detail: 'the job is failed; it has no result' },
            ],
            { 'Retry-After': header('Retry-After') },
          ),
          '410': problem(410, 'The job existed but it and its image have been cleaned up after their retention time.', [
            { code: 'expired', detail: 'the result has been removed after its retention time' },
          ]),
          '429': rateLimited,
          '500': internal,
          '503': unavailable,
        },
      },
    },
    '/v1/jobs/{id}/events': {
      get: {
        operationId: 'streamJobEvents',
        parameters: [jobIdParam],
        tags: ['jobs'],
        summary: 'Live progress (Server-Sent Events)',
        description:
          'A `text/event-stream` of events `status` and `progress`, each with the status body (JobStatus) as JSON `data`. The current state comes first (also on reconnect); the stream ends after the final state.',
        security: STATION_OR_ADMIN,
        responses: {
          '200': {
            description: 'The event stream.',
            content: {
              'text/event-stream': {
                schema: { type: 'string', description: 'Server-Sent Events: `event: status|progress`, `data: <JobStatus as JSON>`.' },
                example: 'event: status\ndata: {"id":"edit_8ntv3369rr6e6hh0y4efv87d","status":"active",…}\n\n',
              },
            },
          },
          '401': unauthorizedStation,
          '404': noSuchJob,
          '410': expiredJob,
          '429': rateLimited,
          '500': internal,
          '503': unavailable,
        },
      },
    },
    '/v1/pipelines': {
      get: {
        operationId: 'listPipelines',
        tags: ['pipelines'],
        summary: 'The pipelines and their params schemas',
        security: STATION_OR_ADMIN,
        responses: {
          '200': { description: 'Every pipeline, with the JSON Schema of its params.', content: json(ref('PipelineList')) },
          '401': unauthorizedStation,
          '500': internal,
        },
      },
    },
    '/v1/queue': {
      get: {
        operationId: 'getQueue',
        tags: ['queue'],
        summary: 'Queue depths, workers and limits',
        security: STATION_OR_ADMIN,
        responses: {
          '200': { description: 'Every pipeline, also one no worker serves (`workers: []`).', content: json(ref('Queue')) },
          '401': unauthorizedStation,
          '500': internal,
          '503': unavailable,
        },
      },
    },
    ...Object.fromEntries(
      (['pause', 'resume'] as const).map((action) => [
        `/v1/admin/pipelines/{name}/${action}`,
        {
          post: {
            operationId: `${action}Pipeline`,
            parameters: [{ name: 'name', in: 'path', required: true, schema: inline(PipelineNamePath) }],
            tags: ['operators'],
            summary: action === 'pause' ? 'Pause a pipeline (workers take no new jobs)' : 'Resume a paused pipeline',
            description: 'Idempotent.',
            security: ADMIN,
            responses: {
              '200': { description: 'That pipeline’s entry of `GET /v1/queue`.', content: json(ref('PipelineQueue')) },
              '401': unauthorizedAdmin,
              '403': forbiddenAdmin,
              '404': unknownPipeline,
              '500': internal,
              '503': unavailable,
            },
          },
        },
      ]),
    ),
    '/admin/queues': {
      get: {
        operationId: 'dashboard',
        tags: ['operators'],
        summary: 'Bull Board, the queue dashboard (HTML)',
        description:
          'Without the admin credential it answers `401` with `WWW-Authenticate: Basic realm="darkroom-admin"`, so a browser prompts.',
        security: ADMIN,
        responses: {
          '200': { description: 'The dashboard page.', content: { 'text/html': { schema: { type: 'string' } } } },
          '401': problem(
            401,
            'No admin credential, or a wrong one.',
            [{ code: 'unauthorized', detail: 'the admin credential is required' }],
            {
              'WWW-Authenticate': header('WWW-Authenticate'),
            },
          ),
          '403': forbiddenAdmin,
        },
      },
    },
    '/healthz': {
      get: {
        operationId: 'healthz',
        tags: ['operators'],
        summary: 'Liveness: the process is alive',
        security: NONE,
        responses: { '200': { description: 'Alive.', content: json(ref('Health')) } },
      },
    },
    '/readyz': {
      get: {
        operationId: 'readyz',
        tags: ['operators'],
        summary: 'Readiness: the queue store is reachable',
        security: NONE,
        responses: {
          '200': { description: 'Ready.', content: json(ref('Ready')) },
          '503': problem(503, 'The queue store is unreachable.', [{ code: 'unavailable', detail: 'the queue store is unreachable' }], {
            'Retry-After': header('Retry-After'),
          }),
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        tags: ['operators'],
        summary: 'Prometheus metrics',
        description: 'Needs no credential unless the operator sets `DARKROOM_METRICS_TOKEN`; then `Authorization: Bearer <token>`.',
        security: [{}, { metricsBearer: [] }],
        responses: {
          '200': {
            description: 'Prometheus text exposition format.',
            content: { 'text/plain; version=0.0.4': { schema: { type: 'string' } } },
          },
          '401': problem(
            401,
            '`DARKROOM_METRICS_TOKEN` is set and the request does not carry it.',
            [{ code: 'unauthorized', detail: 'the metrics token is required' }],
            { 'WWW-Authenticate': header('WWW-Authenticate') },
          ),
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        tags: ['operators'],
        summary: 'This OpenAPI 3.1 document',
        security: NONE,
        responses: {
          '200': { description: 'The OpenAPI document.', content: { 'application/json': { schema: { type: 'object' } } } },
        },
      },
    },
    '/docs': {
      get: {
        operationId: 'docs',
        tags: ['operators'],
        summary: 'Human API docs (HTML), every asset served by this server',
        security: NONE,
        responses: { '200': { description: 'The docs page.', content: { 'text/html': { schema: { type: 'string' } } } } },
      },
    },
  };

  return {
    openapi: '3.1.1',
    info: {
      title: 'Darkroom API',
      version: '1.0.0',
      summary: 'Image jobs (edits, generation, upscaling) queued for GPU/CPU workers.',
      description:
        'Stations submit image jobs, follow them and download results. JSON everywhere, `camelCase` fields, ISO-8601 UTC timestamps, durations in milliseconds unless the name says `Seconds`. Every 4xx/5xx body is `application/problem+json` (RFC 9457) with a stable `code`. Every response carries `X-Request-Id` (taken from the request when it is a safe token). A station sees only its own jobs: another station’s job id answers `404`, exactly as an unknown id does.',
    },
    servers: [{ url: opts.serverUrl ?? '/', ...(opts.serverUrl ? {} : { description: 'This server' }) }],
    tags: [
      { name: 'jobs', description: 'Submit, follow, download and cancel jobs.' },
      { name: 'pipelines', description: 'What can be run.' },
      { name: 'queue', description: 'What is waiting and running.' },
      { name: 'operators', description: 'Admin actions, health, metrics and these docs.' },
    ],
    security: STATION,
    paths,
    components: {
      schemas: { ...outputs, ...inputs },
      headers: {
        Location: { description: 'The job’s URL, `/v1/jobs/{id}`.', schema: { type: 'string' } },
        'Retry-After': { description: 'Seconds to wait before trying again.', schema: { type: 'integer', minimum: 0 } },
        'WWW-Authenticate': {
          description: 'The expected scheme: `Bearer` (or `Basic realm="darkroom-admin"` for the dashboard).',
          schema: { type: 'string' },
        },
        ETag: { description: 'The sha256 of the image, in quotes: `"<hex>"`.', schema: { type: 'string' } },
        'Cache-Control': { description: '`private, immutable`.', schema: { type: 'string' } },
        'Content-Length': { description: 'The image size in bytes.', schema: { type: 'integer', minimum: 0 } },
      },
      securitySchemes: {
        stationBearer: { type: 'http', scheme: 'bearer', description: 'A station key: `Authorization: Bearer <key>`.' },
        stationApiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'A station key in `X-API-Key`.' },
        adminBearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'The operator’s admin token (`DARKROOM_ADMIN_TOKEN`): `Authorization: Bearer <token>`.',
        },
        adminBasic: { type: 'http', scheme: 'basic', description: 'HTTP Basic with any user name and the admin token as password.' },
        metricsBearer: { type: 'http', scheme: 'bearer', description: '`DARKROOM_METRICS_TOKEN`, when the operator set one.' },
      },
    },
  };
}

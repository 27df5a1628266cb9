import { z } from 'zod';
import { FailureCode, JOB_LIST_DEFAULT_LIMIT, JOB_LIST_MAX_LIMIT, JobListBody, JobResultBody, JobStatus, JobStatusBody } from './jobs.ts';
import { EditOperation, PIPELINE_NAMES, PIPELINE_SPECS, type PipelineSpec } from './pipelines.ts';
import { Priority } from './priority.ts';
import { FieldError, PROBLEM_TITLES, Problem, type ProblemCode, ProblemCode as ProblemCodeSchema, problemType } from './problem.ts';
import { BackendStatus, GpuReport, PipelineQueueInfo, PurgeBody, QueueBody, WorkerInfo } from './queue.ts';
import { UsageBody, UsageFigures, UsageRow } from './usage.ts';
import { WebhookEventName } from './webhook-events.ts';

/*
 * The OpenAPI 3.1 description of the HTTP API (docs/contract.md), served at `GET /openapi.json`.
 * Its `paths` are generated from the api's route table (`buildOpenApiDocument({ routes })`); this
 * module holds the components, the shared problem responses and the generator.
 * Every schema in it is generated from the zod schemas the API and workers validate with, through
 * zod's own JSON Schema generator (draft 2020-12, the dialect of OpenAPI 3.1): nothing here is a
 * hand-written copy of a body. Bodies the contracts had no schema for are defined below, in zod.
 */

// ---------------------------------------------------------------------------------------------
// Bodies the rest of the contracts do not define
// ---------------------------------------------------------------------------------------------

export const SUBMIT_IMAGE_TYPES = 'image/jpeg, image/png, image/webp, image/avif, image/gif, image/tiff';

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

const ImageUrlField = z
  .url({ protocol: /^https?$/ })
  .max(2048)
  .meta({
    description:
      'Instead of an uploaded image: an absolute http(s) URL without credentials that the api fetches (GET) before queueing the job, judged by content like an upload, with the same size limit (`DARKROOM_MAX_UPLOAD_BYTES`) and a time limit (`DARKROOM_INPUT_URL_TIMEOUT_MS`). Only public addresses, checked after name resolution and on each of at most 3 redirects. Sent with an image: `400`. A fetch that fails: `422` with `errors[0].code` `too_big`, `not_an_image`, `unreachable` or `refused`.',
  });

const TimeoutSecondsField = z.int().positive().meta({
  description:
    "The job's execution limit in seconds, instead of the operator's (`DARKROOM_JOB_TIMEOUT_SECONDS`, 300 by default), which is also its maximum: above it, `400`. A job past it fails `timeout`.",
});
const TtlSecondsField = z.int().positive().meta({
  description:
    "How long the job may wait in the queue before it starts, in seconds, instead of the operator's time-to-live (`DARKROOM_JOB_TTL_SECONDS`, 3600 by default), which is also its maximum: above it, `400`. A job not started in time fails `expired`.",
});
const WebhookEventsField = z.array(WebhookEventName).min(1).meta({
  description:
    "The events `webhookUrl` is told of (needs `webhookUrl`): any of `completed`, `failed`, `cancelled` (the default: the three final states) and `started` (a worker began the job's first attempt). A final state not listed is not delivered. In multipart, a comma-separated list or a JSON array.",
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
  imageUrl: ImageUrlField.optional(), // a text part
  params: SubmitParams.optional(), // a JSON text part: see the request body's `encoding`
  priority: PriorityField.optional(),
  webhookUrl: WebhookUrlField.optional(),
  // Text parts, as every multipart field: decimal digits.
  timeoutSeconds: TimeoutSecondsField.optional(),
  ttlSeconds: TtlSecondsField.optional(),
  webhookEvents: WebhookEventsField.optional(),
});

/** `POST /v1/jobs` as `application/json`. */
export const SubmitJsonBody = z.object({
  pipeline: PipelineField,
  params: SubmitParams.optional(),
  priority: PriorityField.optional(),
  webhookUrl: WebhookUrlField.optional(),
  timeoutSeconds: TimeoutSecondsField.optional(),
  ttlSeconds: TtlSecondsField.optional(),
  webhookEvents: WebhookEventsField.optional(),
  imageBase64: z
    .string()
    .meta({
      contentEncoding: 'base64',
      description:
        'The input image, base64 (standard or base64url; a `data:<type>;base64,` prefix is accepted). The size limit applies to the decoded bytes.',
    })
    .optional(),
  imageUrl: ImageUrlField.optional(),
});

/** The error body of the OpenAI-compatible routes (`/v1/images/*`), in OpenAI's own shape. */
export const OpenAIErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.string().meta({ examples: ['invalid_request_error', 'authentication_error', 'rate_limit_error', 'server_error'] }),
    param: z.string().nullable(),
    code: z.string().nullable().meta({ description: 'The Darkroom problem code (see `ProblemCode`), or `invalid_api_key`.' }),
  }),
});

/** What `POST /v1/images/generations` and `/v1/images/edits` answer: one entry per image. */
export const OpenAIImagesBody = z.object({
  created: z.int().meta({ description: 'Unix seconds.' }),
  data: z.array(
    z.object({
      b64_json: z.string().optional().meta({ description: 'The image, base64 (with `response_format: "b64_json"`, the default).' }),
      url: z.string().optional().meta({ description: 'The job’s result route (with `response_format: "url"`); it takes the station key.' }),
    }),
  ),
});

const OpenAIModelField = z
  .string()
  .min(1)
  .meta({
    description:
      'A Darkroom pipeline name (or a model name the operator mapped to one). Generations take a pipeline without an image, edits one with.',
    examples: ['synthetic', 'upscale'],
  });
const OpenAICommon = {
  model: OpenAIModelField,
  prompt: z.string().max(32000).optional().meta({ description: 'Passed to the pipeline as `prompt` where its params have one.' }),
  n: z.int().min(1).max(10).optional().meta({ description: 'How many images: one job each. Default 1.' }),
  size: z
    .string()
    .optional()
    .meta({ description: '`WxH`, mapped onto the pipeline’s `width`/`height` where it has them; `auto` leaves them.' }),
  response_format: z.enum(['b64_json', 'url']).optional(),
  output_format: z.enum(['png', 'jpeg', 'webp']).optional().meta({ description: 'Mapped onto the pipeline’s `format` where it has one.' }),
  user: z.string().optional(),
};

/** `POST /v1/images/generations`. */
export const OpenAIImageGenerationBody = z.object(OpenAICommon);

/** `POST /v1/images/edits` as `multipart/form-data`. */
export const OpenAIImageEditBody = z.object({
  ...OpenAICommon,
  image: z.string().meta({ format: 'binary', description: 'The input image, as a file part `image` (or `image[]`, one file).' }),
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

export const SubmitWaitQuery = z
  .number()
  .min(0)
  .max(60)
  .meta({ description: 'Seconds (decimals allowed) to hold the answer until the job is final. Outside 0–60: `400`.' });
export const IdempotencyKeyHeader = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/)
  .meta({
    description:
      'Within 24 h, the same station sending the same key with the same request (pipeline, canonical params, priority, webhook URL and events, the image’s sha256 or the `imageUrl` as sent, `timeoutSeconds`, `ttlSeconds`) gets the original job back (`200`, `"deduplicated": true`); with a different request, `409`. 1–255 visible ASCII characters, else `400`.',
  });
export const JobIdsQuery = z
  .string()
  .min(1)
  .meta({
    description:
      'Comma-separated job ids, at most 100 (more is `400`). Unknown ids, and other stations’ ids, are left out of the answer. With `ids`, the listing parameters are ignored.',
    examples: ['edit_8ntv3369rr6e6hh0y4efv87d,synthetic_0k3vq7m2a9xw5t1c8e4r6y2u'],
  });
export const JobListStatusQuery = z.string().meta({
  description: 'Listing: only jobs in these states, comma-separated (`queued`, `active`, `completed`, `failed`, `cancelled`).',
  examples: ['queued,active'],
});
export const JobListPipelineQuery = z.string().meta({ description: 'Listing: only jobs of this pipeline.', examples: [...PIPELINE_NAMES] });
export const JobListSinceQuery = z.string().meta({
  description: 'Listing: only jobs submitted at or after this ISO 8601 time (with a date, a time and a zone).',
  examples: ['2026-12-01T00:00:00Z'],
});
export const JobListLimitQuery = z
  .int()
  .min(1)
  .max(JOB_LIST_MAX_LIMIT)
  .meta({ description: `Listing: most jobs in the page (1–${JOB_LIST_MAX_LIMIT}, default ${JOB_LIST_DEFAULT_LIMIT}).` });
export const JobListCursorQuery = z.string().meta({
  description: 'Listing: the `nextCursor` of the previous page, as it was given (opaque). A cursor not given by this API is `400`.',
});
export const JobListStationQuery = z.string().meta({
  description: 'Listing with the admin credential: whose jobs (required there). A station may only name itself.',
  examples: ['alpha'],
});
export const JobIdPath = z.string().meta({
  description: 'A job id as returned by `POST /v1/jobs`; opaque to stations.',
  examples: ['edit_8ntv3369rr6e6hh0y4efv87d'],
});
export const PipelineNamePath = z.string().meta({ description: 'A pipeline name.', examples: [...PIPELINE_NAMES] });
export const IfNoneMatchHeader = z
  .string()
  .meta({ description: 'An ETag from an earlier answer (`"<sha256>"`, weak or strong, or `*`): `304` when it matches.' });

// ---------------------------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------------------------

export type Json = Record<string, unknown>;
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
    [OpenAIErrorBody, { id: 'OpenAIError', description: 'The error body of the OpenAI-compatible routes (`/v1/images/*`).' }],
    [OpenAIImagesBody, { id: 'OpenAIImages', description: 'The images of an OpenAI-compatible request, one per job.' }],
    [
      JobStatusBody,
      {
        id: 'JobStatus',
        description:
          'A job as a station sees it. `position` and `estimatedWaitSeconds` only while queued (`position` counts from 1 = next to start, among every station’s jobs of the pipeline, priority order first, then age), `progress` while active, `result` when completed, `error` when failed. `deduplicated` on an answer to a repeated `Idempotency-Key`; `cancelRequested` while an active job is being aborted. `retryOf` on a job queued by `POST /v1/jobs/{id}/retry` (the job it retried); `retriedBy` on the job that was retried (its retry).',
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
    [
      JobListBody,
      {
        id: 'JobList',
        description:
          'With `ids`: the status bodies of the known ids asked for. Listing: a page of the station’s jobs, newest first, and `nextCursor` (`null` after the last page).',
      },
    ],
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
    [PurgeBody, { id: 'Purge', description: 'A purge: the pipeline, and how many of its jobs that had not started are now cancelled.' }],
    [WorkerInfo, { id: 'WorkerInfo', description: 'A live worker (heartbeat younger than 20 s).' }],
    [GpuReport, { id: 'GpuReport', description: "One of a worker's GPUs, as its `nvidia-smi` last reported it." }],
    [BackendStatus, { id: 'BackendStatus', description: 'The backend a pipeline runs on, as the pipeline last found it (no addresses).' }],
    [PipelineListBody, { id: 'PipelineList', description: 'Every pipeline this server knows.' }],
    [PipelineInfoBody, { id: 'PipelineInfo', description: 'A pipeline and the JSON Schema of its params.' }],
    [
      UsageBody,
      {
        id: 'Usage',
        description:
          'GPU time from `from` to `to` (UTC days, both included): one row per day, station, pipeline and model that ran jobs, and their sum. A station sees only its own rows; the admin credential sees every station’s. Seconds to the millisecond.',
      },
    ],
    [
      UsageRow,
      {
        id: 'UsageRow',
        description:
          '`deviceSeconds`: time jobs held a device slot (their compute, every attempt, model loads included); `queuedSeconds`: time from submit to the first start; `modelLoadSeconds`: the part of device time pipelines reported loading models; `jobs`: jobs that ended after running.',
      },
    ],
    [UsageFigures, { id: 'UsageTotals', description: 'The sum of the rows.' }],
    [HealthBody, { id: 'Health' }],
    [ReadyBody, { id: 'Ready' }],
  ];
}

/** Request bodies: what stations write (`io: 'input'`, so fields with defaults are optional). */
function inputComponents(): [z.ZodType, Meta][] {
  const specs = Object.values(PIPELINE_SPECS) as PipelineSpec[];
  const out: [z.ZodType, Meta][] = [
    [OpenAIImageGenerationBody, { id: 'OpenAIImageGeneration', description: '`POST /v1/images/generations`, as the OpenAI SDK sends it.' }],
    [OpenAIImageEditBody, { id: 'OpenAIImageEdit', description: '`POST /v1/images/edits`, as the OpenAI SDK sends it.' }],
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
export function inline(schema: z.ZodType): Json {
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

export type ProblemExample = { code: ProblemCode; detail: string; errors?: FieldError[] };

/** A 4xx/5xx answer: always the Problem schema as `application/problem+json`. */
export function problem(status: number, description: string, examples: ProblemExample[], headers: Record<string, Json> = {}): Json {
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

export const header = (name: string) => ({ $ref: `#/components/headers/${name}` });

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
const metricsUnauthorized = problem(
  401,
  '`DARKROOM_METRICS_TOKEN` is set and the request does not carry it.',
  [{ code: 'unauthorized', detail: 'the metrics token is required' }],
  { 'WWW-Authenticate': header('WWW-Authenticate') },
);

/** Problem responses several operations share. Those that follow from a route's credential, rate limit or Redis check are added by the generator. */
export const PROBLEM_RESPONSES = { internal, noSuchJob, expiredJob, unknownPipeline, unavailable } as const;

// ---------------------------------------------------------------------------------------------
// Schemas by reference, examples
// ---------------------------------------------------------------------------------------------

let componentIds: Map<z.ZodType, string> | undefined;

/** `$ref` to the component generated from `schema`; throws for a schema that is not a component. */
export function schemaRef(schema: z.ZodType): Json {
  componentIds ??= new Map([...outputComponents(), ...inputComponents()].map(([s, meta]) => [s, meta.id]));
  const id = componentIds.get(schema);
  if (!id) throw new Error('this zod schema is not a component of the OpenAPI document; register it in openapi.ts');
  return ref(id);
}

/** An `application/json` content map whose schema is the component of a zod schema. */
export const jsonContent = (schema: z.ZodType, extra: Json = {}) => ({ 'application/json': { schema: schemaRef(schema), ...extra } });

/** A query, header or path parameter with its zod schema inline. */
export const parameter = (where: 'query' | 'header' | 'path', name: string, schema: z.ZodType, required = where === 'path'): Json => ({
  name,
  in: where,
  required,
  schema: inline(schema),
});

/** A job status body as the examples show it. */
export const jobExample = (status: string, extra: Json = {}): Json => ({
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

export const EXAMPLES = {
  completedJob: jobExample('completed', {
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
  }),
  editParams: {
    operations: [
      { op: 'resize', width: 512, fit: 'inside' },
      { op: 'format', type: 'webp', quality: 80 },
    ],
  },
  syntheticParams: { steps: 10, stepMs: 100, width: 256, height: 256, seed: 42 },
} as const;

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

/** Who may call a route. `metrics-token`: anyone, unless the operator set a metrics token. */
export type RouteAuth = 'none' | 'station' | 'station-or-admin' | 'admin' | 'metrics-token';

/** What a route says about itself in the document, apart from what its credential and checks imply. */
export interface OperationDoc {
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  parameters?: Json[];
  requestBody?: Json;
  /** By status. 401/403 (credential), 429 (rate limit) and 503 (Redis check) are added from the route; one given here wins. */
  responses: Record<string, Json>;
}

/** A route as the document needs it: the route table's entries are these. */
export interface DocumentedRoute {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** OpenAPI path template: `/v1/jobs/{id}`. */
  path: string;
  auth: RouteAuth;
  /** Answers 503 before anything else while Redis is away. */
  redis: boolean;
  /** Counts against the station's requests per minute. */
  rateLimited?: boolean;
  /** `openai`: errors are answered in OpenAI's shape (`{error: {message, type, param, code}}`), not as problems. */
  errorShape?: 'problem' | 'openai';
  doc: OperationDoc;
}

const STATION = [{ stationBearer: [] }, { stationApiKey: [] }];
const SECURITY: Record<RouteAuth, Json[]> = {
  none: [],
  station: STATION,
  'station-or-admin': [...STATION, { adminBearer: [] }, { adminBasic: [] }],
  admin: [{ adminBearer: [] }, { adminBasic: [] }],
  'metrics-token': [{}, { metricsBearer: [] }],
};

/** The problems a route can answer because of its credential, rate limit and Redis check. */
function impliedResponses(route: DocumentedRoute): Record<string, Json> {
  const out: Record<string, Json> = {};
  if (route.auth === 'station' || route.auth === 'station-or-admin') out['401'] = unauthorizedStation;
  if (route.auth === 'admin') Object.assign(out, { '401': unauthorizedAdmin, '403': forbiddenAdmin });
  if (route.auth === 'metrics-token') out['401'] = metricsUnauthorized;
  if (route.rateLimited) out['429'] = rateLimited;
  if (route.redis) out['503'] = unavailable;
  if (route.errorShape === 'openai') {
    for (const [status, response] of Object.entries(out))
      out[status] = openAiError(String(response.description), response.headers as Record<string, Json> | undefined);
  }
  return out;
}

/** An error response of the OpenAI-compatible routes: `application/json` with the OpenAI error body. */
export function openAiError(description: string, headers?: Record<string, Json>): Json {
  return {
    description,
    ...(headers ? { headers } : {}),
    content: { 'application/json': { schema: ref('OpenAIError') } },
  };
}

function operation(route: DocumentedRoute): Json {
  const { doc } = route;
  const declared = new Set((doc.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name));
  for (const [, name] of route.path.matchAll(/\{([^}]+)\}/g)) {
    if (!declared.delete(name!)) throw new Error(`${route.method} ${route.path}: path parameter {${name}} is not described`);
  }
  if (declared.size)
    throw new Error(`${route.method} ${route.path}: described path parameters not in the path: ${[...declared].join(', ')}`);
  const responses = withCommonHeaders(route, { ...impliedResponses(route), ...doc.responses });
  return {
    operationId: doc.operationId,
    tags: doc.tags,
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    security: SECURITY[route.auth],
    ...(doc.parameters?.length ? { parameters: doc.parameters } : {}),
    ...(doc.requestBody ? { requestBody: doc.requestBody } : {}),
    responses: Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b))),
  };
}

/**
 * Headers the api sets on answers whatever the route: `X-Request-Id` on every one, and the
 * RateLimit pair on the successes of a rate-limited route (they are set once the request is
 * counted). Copies: response objects are shared between routes.
 */
function withCommonHeaders(route: DocumentedRoute, responses: Record<string, Json>): Record<string, Json> {
  const ref = (name: string) => ({ $ref: `#/components/headers/${name}` });
  return Object.fromEntries(
    Object.entries(responses).map(([status, response]) => {
      const headers: Record<string, Json> = { ...((response.headers as Record<string, Json> | undefined) ?? {}) };
      if (route.rateLimited && status.startsWith('2'))
        Object.assign(headers, { RateLimit: ref('RateLimit'), 'RateLimit-Policy': ref('RateLimit-Policy') });
      headers['X-Request-Id'] = ref('X-Request-Id');
      return [status, { ...response, headers }];
    }),
  );
}

/** The `paths` of the document: one operation per route, in the routes' order. */
export function buildPaths(routes: readonly DocumentedRoute[]): OpenApiDocument['paths'] {
  const paths: OpenApiDocument['paths'] = {};
  for (const route of routes) {
    paths[route.path] ??= {};
    const item = paths[route.path]!;
    const method = route.method.toLowerCase();
    if (item[method]) throw new Error(`${route.method} ${route.path} is listed twice`);
    item[method] = operation(route);
  }
  return paths;
}

/**
 * Builds the OpenAPI 3.1 document of the HTTP API from its routes (the api's route table).
 * `serverUrl`, when given, is the one server listed; without it the document names the server it
 * is served from (`/`).
 */
export function buildOpenApiDocument(opts: { routes: readonly DocumentedRoute[]; serverUrl?: string }): OpenApiDocument {
  const inputs = componentSchemas(inputComponents(), 'input');
  const outputs = componentSchemas(outputComponents(), 'output');
  for (const id of Object.keys(inputs)) if (id in outputs) throw new Error(`component ${id} is both a request and a response schema`);
  for (const id of ['SubmitJson', 'SubmitMultipart'] as const) inputs[id] = { ...inputs[id], allOf: paramsByPipeline() };

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
      { name: 'openai', description: 'The OpenAI Images API, served by the queue (errors in OpenAI’s shape).' },
    ],
    security: STATION,
    paths: buildPaths(opts.routes),
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
        'X-Request-Id': {
          description:
            'The request’s id, in the logs under the same name: the caller’s own `X-Request-Id` when it is 1–64 letters, digits, `.`, `_` or `-`, else a fresh UUID. Quote it when reporting a problem.',
          schema: { type: 'string' },
        },
        RateLimit: {
          description:
            'Sent when the station has a requests-per-minute limit: `limit=<per minute>, remaining=<left in this window>, reset=<seconds until it refills>`.',
          schema: { type: 'string' },
        },
        'RateLimit-Policy': {
          description: 'Sent with `RateLimit`: the station’s policy, `<requests>;w=60`.',
          schema: { type: 'string' },
        },
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

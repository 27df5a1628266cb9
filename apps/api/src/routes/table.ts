import {
  EXAMPLES,
  HealthBody,
  header,
  IdempotencyKeyHeader,
  IfNoneMatchHeader,
  JOB_LIST_DEFAULT_LIMIT,
  JOB_LIST_MAX_LIMIT,
  JobIdPath,
  JobIdsQuery,
  JobListBody,
  JobListCursorQuery,
  JobListLimitQuery,
  JobListPipelineQuery,
  JobListSinceQuery,
  JobListStationQuery,
  JobListStatusQuery,
  JobStatusBody,
  jobExample,
  jsonContent,
  OpenAIImageEditBody,
  OpenAIImageGenerationBody,
  OpenAIImagesBody,
  openAiError,
  PipelineListBody,
  PipelineNamePath,
  PipelineQueueInfo,
  PROBLEM_RESPONSES,
  PurgeBody,
  parameter,
  problem,
  QueueBody,
  ReadyBody,
  SUBMIT_IMAGE_TYPES,
  SubmitJsonBody,
  SubmitMultipartBody,
  SubmitWaitQuery,
  schemaRef,
  USAGE_MAX_DAYS,
  UsageBody,
  UsageDate,
} from '@darkroom/contracts';
import { pipelineAction, purgePipeline } from './admin.ts';
import { DASHBOARD_PATH, dashboardRouter } from './dashboard.ts';
import { DOCS_PATH, docsRouter, OPENAPI_PATH, serveOpenApi } from './docs.ts';
import { cancelJob, getJob, getJobs, jobEvents, jobResult, retryJob, submitJob } from './jobs.ts';
import { getQueue, healthz, listPipelines, readyz, scrapeMetrics } from './meta.ts';
import { imageEdits, imageGenerations } from './openai.ts';
import type { Route, Scope } from './route.ts';
import { getUsage } from './usage.ts';

/*
 * Every route of the API, as data: how it is called (method, path, credential, Redis check, rate
 * limit), what answers it, and what the OpenAPI document says of it. The Express router, the
 * dispatcher of the plain spellings and the document's `paths` are all generated from this list,
 * so a route cannot be served without being documented, nor documented without being served.
 * 401/403 (credential), 429 (rate limit) and 503 (Redis check) are documented from the entry's
 * own fields; the rest of what a route can answer is in its `doc.responses`.
 */

const { internal, noSuchJob, expiredJob, unknownPipeline, unavailable } = PROBLEM_RESPONSES;
const jobId = parameter('path', 'id', JobIdPath);

export const ROUTES: readonly Route[] = [
  {
    method: 'POST',
    path: '/v1/jobs',
    auth: 'station',
    redis: true,
    rateLimited: true,
    kind: 'json',
    handler: submitJob,
    doc: {
      operationId: 'submitJob',
      tags: ['jobs'],
      summary: 'Submit a job',
      description:
        'Queues a job for a pipeline. Checks run in a fixed order and the first failing one answers (see the API reference): 401, 400 (`wait`), 413, 415 (body type), 400 (malformed body, missing `pipeline`), 404 (unknown pipeline), 400 (every field error at once), 403, 415 (image format), 422, 429, 503. An answered error means nothing was queued and nothing was stored. Unknown top-level fields are ignored.',
      parameters: [parameter('query', 'wait', SubmitWaitQuery), parameter('header', 'Idempotency-Key', IdempotencyKeyHeader)],
      requestBody: {
        required: true,
        content: {
          'multipart/form-data': {
            schema: schemaRef(SubmitMultipartBody),
            encoding: {
              image: { contentType: SUBMIT_IMAGE_TYPES },
              params: { contentType: 'application/json' },
            },
          },
          'application/json': {
            schema: schemaRef(SubmitJsonBody),
            examples: {
              edit: {
                summary: 'Resize and convert to WebP',
                value: { pipeline: 'edit', params: EXAMPLES.editParams, imageBase64: '<base64 of the image>' },
              },
              synthetic: {
                summary: 'A synthetic job (no image)',
                value: { pipeline: 'synthetic', params: EXAMPLES.syntheticParams, priority: 'high' },
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
          content: jsonContent(JobStatusBody, {
            examples: {
              final: { summary: 'With `wait`: finished in time', value: EXAMPLES.completedJob },
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
          content: jsonContent(JobStatusBody, { example: jobExample('queued', { position: 3, estimatedWaitSeconds: 12 }) }),
        },
        '400': problem(
          400,
          'Malformed body or params, a missing or empty image where the pipeline needs one, both an image and `imageUrl` or an `imageUrl` that is not an absolute http(s) URL, a bad `priority`, `webhookUrl` or `Idempotency-Key`, `timeoutSeconds` or `ttlSeconds` not a whole number of seconds within the operator’s limit, or `wait` out of range; every field error is listed in `errors`.',
          [
            {
              code: 'invalid_request',
              detail: 'the request is invalid',
              errors: [{ path: 'params.operations.0.width', message: 'Too big: expected number to be <=16384' }],
            },
          ],
        ),
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
          'The image header cannot be read, its dimensions are over the edge or pixel limits, or it is visibly incomplete. For an `imageUrl`, also the fetch failing: `errors[0]` is at path `imageUrl` with `code` `too_big` (over `DARKROOM_MAX_UPLOAD_BYTES`), `not_an_image` (the content is not an accepted, readable image), `unreachable` (name not resolved, connection refused or reset, no complete answer in time, a non-2xx status, too many redirects) or `refused` (an address or redirect the SSRF guard does not allow).',
          [
            { code: 'invalid_image', detail: 'the image is incomplete' },
            {
              code: 'invalid_image',
              detail: 'the image at imageUrl could not be used: the server answered 404',
              errors: [{ path: 'imageUrl', code: 'unreachable', message: 'the server answered 404' }],
            },
          ],
        ),
        // The queue's depth limit answers 429 too, beside the station's own limits.
        '429': problem(
          429,
          '`queue_full`: the pipeline’s queue is at its depth limit; `rate_limited`: the station is over its own limits (waiting + active jobs, or requests per minute); `budget_exceeded`: the station used its GPU seconds for the day (UTC), and `Retry-After` is the time to the next UTC midnight. Retry after `Retry-After` seconds.',
          [
            { code: 'queue_full', detail: 'the edit queue is full' },
            { code: 'rate_limited', detail: 'this station is over its limits' },
            {
              code: 'budget_exceeded',
              detail: 'station alpha used 3601 of its 3600 GPU seconds for today (UTC); submit again after midnight UTC',
            },
          ],
          { 'Retry-After': header('Retry-After') },
        ),
        '500': internal,
      },
    },
  },
  {
    method: 'GET',
    path: '/v1/jobs',
    auth: 'station-or-admin',
    redis: true,
    rateLimited: true,
    kind: 'json',
    handler: getJobs,
    doc: {
      operationId: 'getJobs',
      tags: ['jobs'],
      summary: 'Several jobs at once, or a page of the caller’s jobs',
      description: `With \`ids\`: those jobs (the caller’s own, known ones). Without: the caller’s jobs, newest first (the order they were queued in), \`limit\` at a time (default ${JOB_LIST_DEFAULT_LIMIT}, at most ${JOB_LIST_MAX_LIMIT}); pass \`nextCursor\` as \`cursor\` for the next page, until it is \`null\`. A page looks at a bounded number of jobs, so with a filter it can hold fewer than \`limit\` (even none) and still have a \`nextCursor\`. The admin credential lists one station’s jobs at a time (\`station\`, required there). Jobs removed after their retention time are not listed.`,
      parameters: [
        parameter('query', 'ids', JobIdsQuery),
        parameter('query', 'status', JobListStatusQuery),
        parameter('query', 'pipeline', JobListPipelineQuery),
        parameter('query', 'since', JobListSinceQuery),
        parameter('query', 'limit', JobListLimitQuery),
        parameter('query', 'cursor', JobListCursorQuery),
        parameter('query', 'station', JobListStationQuery),
      ],
      responses: {
        '200': {
          description: 'With `ids`: the status bodies of the known ids. Listing: a page of jobs, newest first, and `nextCursor`.',
          content: jsonContent(JobListBody, {
            examples: {
              ids: { summary: 'With `ids`', value: { jobs: [EXAMPLES.completedJob] } },
              page: {
                summary: 'A page of a listing',
                value: {
                  jobs: [jobExample('queued', { position: 3, estimatedWaitSeconds: 12 })],
                  nextCursor: 'MTc2NDU5MDQwMDAwMC0w',
                },
              },
            },
          }),
        },
        '400': problem(
          400,
          '`ids` empty or more than 100 ids; listing: a `status`, `pipeline`, `since`, `limit` or `cursor` that is not valid, or (admin credential) `station` missing or unknown. Every bad parameter is listed in `errors`, at its name.',
          [
            { code: 'invalid_request', detail: 'at most 100 ids at once', errors: [{ path: 'ids', message: 'more than 100 ids' }] },
            {
              code: 'invalid_request',
              detail: 'the listing query is invalid',
              errors: [{ path: 'status', message: 'must be one or more of queued, active, completed, failed, cancelled, comma-separated' }],
            },
          ],
        ),
        '403': problem(403, 'A station named another station in `station`.', [
          { code: 'forbidden', detail: 'a station lists only its own jobs; leave out station' },
        ]),
        '500': internal,
      },
    },
  },
  {
    method: 'GET',
    path: '/v1/jobs/{id}',
    auth: 'station-or-admin',
    redis: true,
    rateLimited: true,
    kind: 'json',
    handler: getJob,
    doc: {
      operationId: 'getJob',
      tags: ['jobs'],
      summary: 'A job’s status',
      parameters: [jobId],
      responses: {
        '200': {
          description: 'The status body.',
          content: jsonContent(JobStatusBody, {
            examples: {
              active: {
                value: jobExample('active', {
                  attempts: 1,
                  startedAt: '2026-11-22T10:00:01.000Z',
                  progress: { percent: 40, message: 'step 4/10' },
                }),
              },
              completed: { value: EXAMPLES.completedJob },
            },
          }),
        },
        '404': noSuchJob,
        '410': expiredJob,
        '500': internal,
      },
    },
  },
  {
    method: 'DELETE',
    path: '/v1/jobs/{id}',
    auth: 'station-or-admin',
    redis: true,
    rateLimited: true,
    kind: 'json',
    handler: cancelJob,
    doc: {
      operationId: 'cancelJob',
      tags: ['jobs'],
      summary: 'Cancel a job',
      description:
        'A queued job is removed at once (`200`, `status: cancelled`). An active one is aborted on the worker holding it (`202`, `status: active`, `cancelRequested: true`) and normally ends `cancelled` within a second; one that finishes before the abort lands stays `completed`.',
      parameters: [jobId],
      responses: {
        '200': {
          description: 'The job was queued and is now cancelled.',
          content: jsonContent(JobStatusBody, { example: jobExample('cancelled') }),
        },
        '202': {
          description: 'The job is active; its abort was requested.',
          content: jsonContent(JobStatusBody, { example: jobExample('active', { attempts: 1, cancelRequested: true }) }),
        },
        '404': noSuchJob,
        '409': problem(409, 'The job is already final (completed, failed or cancelled).', [
          { code: 'conflict', detail: 'the job is already completed' },
        ]),
        '410': expiredJob,
        '500': internal,
      },
    },
  },
  {
    method: 'POST',
    path: '/v1/jobs/{id}/retry',
    auth: 'station',
    redis: true,
    rateLimited: true,
    kind: 'json',
    handler: retryJob,
    doc: {
      operationId: 'retryJob',
      tags: ['jobs'],
      summary: 'Queue a failed or cancelled job again',
      description:
        'Queues the same request again under a new id: the same pipeline, params, priority, webhook, `timeoutSeconds`/`ttlSeconds` and input image. It goes through every check a submit goes through (pending limit, queue size, GPU budget, rate limit) and answers as a submit does (`202`, `Location`). The new job’s status body has `retryOf` (the old id); the old job’s then has `retriedBy` (the new id). A job is retried at most once: retry the retry to go on. A refused retry leaves nothing behind. No request body.',
      parameters: [jobId],
      responses: {
        '202': {
          description: 'Queued, as a submit: the new job’s status body.',
          headers: { Location: header('Location') },
          content: jsonContent(JobStatusBody, {
            example: jobExample('queued', { position: 1, estimatedWaitSeconds: 2, retryOf: 'edit_0k3vq7m2a9xw5t1c8e4r6y2u' }),
          }),
        },
        '403': problem(403, 'The job’s priority is now above what the station may use.', [
          { code: 'forbidden', detail: "priority critical is above this station's highest allowed priority (high)" },
        ]),
        '404': noSuchJob,
        '409': problem(
          409,
          'The job is queued, active or completed (only a failed or cancelled job can be retried), or it was retried already (the detail names that retry).',
          [
            { code: 'conflict', detail: 'the job is completed; only a failed or cancelled job can be retried' },
            { code: 'conflict', detail: 'the job was already retried as edit_8ntv3369rr6e6hh0y4efv87d' },
          ],
        ),
        '410': expiredJob,
        '429': problem(
          429,
          'As a submit: `queue_full`, `rate_limited` (the station’s waiting + active jobs, or requests per minute) or `budget_exceeded`, with `Retry-After`.',
          [{ code: 'rate_limited', detail: 'this station is over its limits' }],
          { 'Retry-After': header('Retry-After') },
        ),
        '500': internal,
      },
    },
  },
  {
    method: 'GET',
    path: '/v1/jobs/{id}/result',
    auth: 'station-or-admin',
    redis: true,
    rateLimited: true,
    kind: 'raw',
    handler: jobResult,
    doc: {
      operationId: 'getJobResult',
      tags: ['jobs'],
      summary: 'The output image',
      parameters: [jobId, parameter('header', 'If-None-Match', IfNoneMatchHeader)],
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
        '500': internal,
      },
    },
  },
  {
    method: 'GET',
    path: '/v1/jobs/{id}/events',
    auth: 'station-or-admin',
    redis: true,
    rateLimited: true,
    kind: 'raw',
    handler: jobEvents,
    doc: {
      operationId: 'streamJobEvents',
      tags: ['jobs'],
      summary: 'Live progress (Server-Sent Events)',
      description:
        'A `text/event-stream` of events `status` and `progress`, each with the status body (JobStatus) as JSON `data`. The current state comes first (also on reconnect); the stream ends after the final state.',
      parameters: [jobId],
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
        '404': noSuchJob,
        '410': expiredJob,
        '500': internal,
      },
    },
  },
  {
    method: 'GET',
    path: '/v1/pipelines',
    auth: 'station-or-admin',
    redis: false,
    kind: 'json',
    handler: listPipelines,
    doc: {
      operationId: 'listPipelines',
      tags: ['pipelines'],
      summary: 'The pipelines and their params schemas',
      responses: {
        '200': { description: 'Every pipeline, with the JSON Schema of its params.', content: jsonContent(PipelineListBody) },
        '500': internal,
      },
    },
  },
  {
    method: 'GET',
    path: '/v1/queue',
    auth: 'station-or-admin',
    // Not checked first: the credential is. Reading the queue without Redis answers the same 503.
    redis: false,
    kind: 'json',
    handler: getQueue,
    doc: {
      operationId: 'getQueue',
      tags: ['queue'],
      summary: 'Queue depths, workers and limits',
      responses: {
        '200': { description: 'Every pipeline, also one no worker serves (`workers: []`).', content: jsonContent(QueueBody) },
        '500': internal,
        '503': unavailable,
      },
    },
  },
  {
    method: 'GET',
    path: '/v1/usage',
    auth: 'station-or-admin',
    redis: true,
    rateLimited: true,
    kind: 'json',
    handler: getUsage,
    doc: {
      operationId: 'getUsage',
      tags: ['queue'],
      summary: 'GPU time per day, station, pipeline and model',
      description: `Device time (the compute phase of every attempt), time queued before the first start, and model-load time, of jobs' attempts that ended from \`from\` to \`to\` (UTC days, both included; each defaults to today). A station sees only its own rows; the admin credential sees every station's. At most ${USAGE_MAX_DAYS} days at once.`,
      parameters: [parameter('query', 'from', UsageDate), parameter('query', 'to', UsageDate)],
      responses: {
        '200': {
          description: 'The rows, oldest day first, and their sum.',
          content: jsonContent(UsageBody, {
            example: {
              from: '2026-12-01',
              to: '2026-12-01',
              days: [
                {
                  date: '2026-12-01',
                  station: 'alpha',
                  pipeline: 'comfyui',
                  model: 'sdxl-base',
                  jobs: 42,
                  deviceSeconds: 512.384,
                  queuedSeconds: 96.2,
                  modelLoadSeconds: 11.5,
                },
              ],
              totals: { jobs: 42, deviceSeconds: 512.384, queuedSeconds: 96.2, modelLoadSeconds: 11.5 },
            },
          }),
        },
        '400': problem(
          400,
          `\`from\` or \`to\` not a \`YYYY-MM-DD\` calendar day, \`from\` after \`to\`, or more than ${USAGE_MAX_DAYS} days.`,
          [
            {
              code: 'invalid_request',
              detail: 'the usage query is invalid',
              errors: [{ path: 'from', message: 'must be a date as YYYY-MM-DD' }],
            },
          ],
        ),
        '500': internal,
      },
    },
  },
  ...(
    [
      ['generations', imageGenerations, OpenAIImageGenerationBody, 'application/json', 'a pipeline that takes no image (`synthetic`)'],
      ['edits', imageEdits, OpenAIImageEditBody, 'multipart/form-data', 'a pipeline that takes an image (`upscale`)'],
      ['variations', imageEdits, OpenAIImageEditBody, 'multipart/form-data', 'a pipeline that takes an image (`upscale`); as an edit'],
    ] as const
  ).map(
    ([name, handler, body, media, which]): Route => ({
      method: 'POST',
      path: `/v1/images/${name}`,
      auth: 'station',
      redis: true,
      rateLimited: true,
      errorShape: 'openai',
      kind: 'json',
      handler,
      doc: {
        operationId: `openaiImage${name[0]!.toUpperCase()}${name.slice(1)}`,
        tags: ['openai'],
        summary: `OpenAI Images API: ${name}`,
        description: `For the OpenAI SDKs (\`baseURL: <api>/v1\`, the station key as API key). \`model\` names ${which}; each of the \`n\` images is one job, submitted as \`POST /v1/jobs\` would be (the station's limits and default priority, \`Idempotency-Key\`), held until final and listed by \`GET /v1/jobs/{id}\`. Errors are OpenAI's \`{error: {message, type, param, code}}\` with \`x-should-retry: false\` where a retry cannot help.`,
        parameters: [parameter('header', 'Idempotency-Key', IdempotencyKeyHeader)],
        requestBody: { required: true, content: { [media]: { schema: schemaRef(body) } } },
        responses: {
          '200': {
            description: 'The images, one per job: `b64_json`, or `url` (the job’s result route).',
            content: jsonContent(OpenAIImagesBody),
          },
          '400': openAiError('A bad field (`model` of the wrong kind, `size`, `n`, `response_format`), or the pipeline’s params refused.'),
          '404': openAiError('The model names no pipeline.'),
          '409': openAiError(
            'A job failed or was cancelled, or is not final within the hold; or the `Idempotency-Key` was used for another request.',
          ),
          '413': openAiError('The body or image is over the size limit.'),
          '415': openAiError('The wrong body type, or an image format not accepted.'),
          '422': openAiError('The image cannot be read.'),
          '429': openAiError('The pipeline’s queue is full, or the station is over its limits; `Retry-After` says when to try again.', {
            'Retry-After': header('Retry-After'),
          }),
          '500': openAiError('An internal error.'),
        },
      },
    }),
  ),
  {
    method: 'POST',
    path: '/v1/admin/pipelines/{name}/purge',
    auth: 'admin',
    redis: true,
    kind: 'json',
    handler: purgePipeline,
    doc: {
      operationId: 'purgePipeline',
      tags: ['operators'],
      summary: 'Cancel every job of a pipeline that has not started',
      description:
        'Each job waiting (or paused, or waiting to retry) ends `cancelled` as a station’s cancel would end it: its station sees it cancelled, its webhook is delivered. Jobs already running go on. Answers how many were cancelled; a second purge answers 0.',
      parameters: [parameter('path', 'name', PipelineNamePath)],
      responses: {
        '200': { description: 'The pipeline and how many jobs were cancelled.', content: jsonContent(PurgeBody) },
        '404': unknownPipeline,
        '500': internal,
      },
    },
  },
  ...(['pause', 'resume'] as const).map(
    (action): Route => ({
      method: 'POST',
      path: `/v1/admin/pipelines/{name}/${action}`,
      auth: 'admin',
      redis: true,
      kind: 'json',
      handler: pipelineAction(action),
      doc: {
        operationId: `${action}Pipeline`,
        tags: ['operators'],
        summary: action === 'pause' ? 'Pause a pipeline (workers take no new jobs)' : 'Resume a paused pipeline',
        description: 'Idempotent.',
        parameters: [parameter('path', 'name', PipelineNamePath)],
        responses: {
          '200': { description: 'That pipeline’s entry of `GET /v1/queue`.', content: jsonContent(PipelineQueueInfo) },
          '404': unknownPipeline,
          '500': internal,
        },
      },
    }),
  ),
  {
    method: 'GET',
    path: DASHBOARD_PATH,
    auth: 'admin',
    realm: 'darkroom-admin',
    redis: false,
    kind: 'express',
    mount: DASHBOARD_PATH,
    router: (ctx) => dashboardRouter(ctx),
    doc: {
      operationId: 'dashboard',
      tags: ['operators'],
      summary: 'Bull Board, the queue dashboard (HTML)',
      description:
        'Without the admin credential it answers `401` with `WWW-Authenticate: Basic realm="darkroom-admin"`, so a browser prompts. ' +
        'Read-only: its API answers `403` to Bull Board’s actions that change jobs (retry, clean, promote, add, edit, empty, obliterate), ' +
        'naming the Darkroom route that does it; pause and resume there run the admin routes’ code.',
      responses: { '200': { description: 'The dashboard page.', content: { 'text/html': { schema: { type: 'string' } } } } },
    },
  },
  {
    method: 'GET',
    path: '/healthz',
    auth: 'none',
    redis: false,
    kind: 'json',
    handler: healthz,
    doc: {
      operationId: 'healthz',
      tags: ['operators'],
      summary: 'Liveness: the process is alive',
      responses: { '200': { description: 'Alive.', content: jsonContent(HealthBody) } },
    },
  },
  {
    method: 'GET',
    path: '/readyz',
    auth: 'none',
    redis: false,
    kind: 'json',
    handler: readyz,
    doc: {
      operationId: 'readyz',
      tags: ['operators'],
      summary: 'Readiness: the queue store is reachable',
      responses: {
        '200': { description: 'Ready.', content: jsonContent(ReadyBody) },
        '503': problem(503, 'The queue store is unreachable.', [{ code: 'unavailable', detail: 'the queue store is unreachable' }], {
          'Retry-After': header('Retry-After'),
        }),
      },
    },
  },
  {
    method: 'GET',
    path: '/metrics',
    auth: 'metrics-token',
    redis: false,
    kind: 'json',
    handler: scrapeMetrics,
    doc: {
      operationId: 'metrics',
      tags: ['operators'],
      summary: 'Prometheus metrics',
      description: 'Needs no credential unless the operator sets `DARKROOM_METRICS_TOKEN`; then `Authorization: Bearer <token>`.',
      responses: {
        '200': {
          description: 'Prometheus text exposition format.',
          content: { 'text/plain; version=0.0.4': { schema: { type: 'string' } } },
        },
      },
    },
  },
  {
    method: 'GET',
    path: OPENAPI_PATH,
    auth: 'none',
    redis: false,
    kind: 'json',
    handler: serveOpenApi,
    doc: {
      operationId: 'openapi',
      tags: ['operators'],
      summary: 'This OpenAPI 3.1 document',
      responses: {
        '200': { description: 'The OpenAPI document.', content: { 'application/json': { schema: { type: 'object' } } } },
      },
    },
  },
  {
    method: 'GET',
    path: DOCS_PATH,
    auth: 'none',
    redis: false,
    // The page and the static files it loads from /docs/assets/.
    kind: 'express',
    router: () => docsRouter(),
    doc: {
      operationId: 'docs',
      tags: ['operators'],
      summary: 'Human API docs (HTML), every asset served by this server',
      responses: { '200': { description: 'The docs page.', content: { 'text/html': { schema: { type: 'string' } } } } },
    },
  },
];

export const SCOPES: readonly Scope[] = [
  { prefix: '/v1/jobs', redis: true, auth: 'none' },
  { prefix: '/v1/queue', redis: true, auth: 'none' },
  { prefix: '/v1/usage', redis: true, auth: 'none' },
  { prefix: '/v1/admin', redis: true, auth: 'admin' },
];

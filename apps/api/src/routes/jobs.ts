import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type FieldError,
  JOB_LIST_DEFAULT_LIMIT,
  JOB_LIST_MAX_LIMIT,
  JOB_STATUSES,
  type JobStatus,
  PIPELINE_NAMES,
  pipelineSpec,
} from '@darkroom/contracts';
import {
  BlobNotFound,
  BlobStoreUnavailable,
  decodeJobCursor,
  FINAL_STATUSES,
  idempotencyKeyOf,
  JobExpired,
  type JobListQuery,
  type JobService,
  type LoadedJob,
  StoreUnavailable,
  type ValidSubmit,
  type Viewer,
  validateSubmit,
} from '@darkroom/jobs';
import { createSession } from 'better-sse';
import express from 'express';
import type { StationRegistry } from '../auth/stations.ts';
import { badRequest, HttpError, notFound } from '../http/problem.ts';
import { asImageUrlFailure, fetchImageUrl } from '../submit/image-url.ts';
import { fromJson, parseMultipart, type RawSubmit, type Spool, tooLarge } from '../submit/parse.ts';
import type { Call, Handler, RawHandler, RouteContext } from './route.ts';

const MAX_IDS = 100;
const SSE_KEEPALIVE_MS = 15_000;
const SSE_SAFETY_POLL_MS = 10_000;

/** POST /v1/jobs. */
export function submitJob({ deps, jobs, metrics }: RouteContext): Handler {
  const { config } = deps;
  const maxUpload = config.limits.maxUploadBytes;
  // base64 is 4/3 of the bytes; the rest is room for the other fields.
  const jsonLimit = Math.ceil((maxUpload * 4) / 3) + 256 * 1024;
  // For bodies the plain reader leaves to it (compressed, another charset): the route has matched
  // the JSON media types already, so the parser need not look again.
  const json = express.json({ limit: jsonLimit, type: () => true });
  // A large upload goes to the blob store's staged write as it arrives (to the object store too, where that is the store).
  const spool: Spool = {
    memoryBytes: config.limits.uploadMemoryBytes,
    open: () => deps.blobs.stage('upload'),
    discard: (p) => deps.blobs.discard(p),
  };
  const readJson = (req: IncomingMessage): Promise<unknown> =>
    plainJsonBody(req, jsonLimit) ??
    new Promise((resolve, reject) =>
      // body-parser hands the response only to a `verify` option, which this parser has none of.
      json(req as express.Request, undefined as unknown as express.Response, (err?: unknown) =>
        err ? reject(err) : resolve((req as express.Request).body),
      ),
    );

  return async (call) => {
    const { req, query } = call;
    const station = call.station!;
    const wait = parseWait(query.wait);
    const idempotencyKey = idempotencyKeyOf(req.headers['idempotency-key']);
    const type = req.headers['content-type'] ?? '';
    const declared = Number(req.headers['content-length'] ?? 0);
    let raw: RawSubmit;
    if (/^multipart\/form-data/i.test(type)) {
      // Refuse before reading when the declared size cannot fit the limit (the fields need little room).
      if (declared > maxUpload + 512 * 1024) throw tooLarge(maxUpload);
      raw = await parseMultipart(req, maxUpload, spool);
    } else if (/^application\/([a-z.+-]+\+)?json/i.test(type)) {
      raw = fromJson(await readJson(req), maxUpload);
    } else {
      throw new HttpError('unsupported_media_type', 'send multipart/form-data (an "image" file part) or application/json');
    }
    let valid: ValidSubmit;
    let submitted: Awaited<ReturnType<JobService['submit']>>;
    try {
      valid = validateSubmit(raw, station, {
        webhookSecretAvailable: Boolean(config.webhooks.secret),
        maxTimeoutSeconds: config.limits.jobTimeoutMs / 1000,
        maxTtlSeconds: config.limits.jobTtlMs / 1000,
      });
      if (valid.webhookUrl) await deps.checkWebhookTarget?.(valid.webhookUrl);
      const url = valid.imageUrl;
      // A repeat of a submit by URL answers its job without fetching the image again.
      const original = url && idempotencyKey ? await jobs.findIdempotent(valid, station, idempotencyKey) : undefined;
      if (original) submitted = { body: original, deduplicated: true };
      else {
        if (url) {
          const fetched = await fetchImageUrl(url, {
            maxBytes: maxUpload,
            spool,
            allowPrivate: config.inputUrl.allowPrivate,
            timeoutMs: config.inputUrl.timeoutMs,
          });
          raw.image = fetched.image; // removed below unless the job adopted it
          valid.image = fetched.image;
          valid.imageSha256 = fetched.sha256;
        }
        submitted = await jobs
          .submit(valid, station, {
            ...(req.id ? { requestId: String(req.id) } : {}),
            ...(idempotencyKey ? { idempotencyKey } : {}),
          })
          .catch((err: unknown) => {
            throw url ? asImageUrlFailure(err) : err;
          });
      }
    } finally {
      // A queued job's spooled image was moved into place; any other answer leaves no file or object behind.
      if (raw.image && !Buffer.isBuffer(raw.image)) await deps.blobs.discard(raw.image.path).catch(() => {});
    }
    if (!submitted.deduplicated) metrics.submitted.inc({ pipeline: valid.spec.name, priority: valid.priority });
    let body = submitted.body;
    const headers = { Location: body.links.self };
    if (wait > 0 && !FINAL_STATUSES.has(body.status)) {
      body = (await jobs.waitForFinal(body.id, { station }, wait * 1000, call.closed())) ?? body;
      if (submitted.deduplicated) body.deduplicated = true;
    }
    return { status: submitted.deduplicated || FINAL_STATUSES.has(body.status) ? 200 : 202, headers, json: body };
  };
}

/** GET /v1/jobs?ids=… (those jobs), or without `ids` a page of the caller's jobs. */
export function getJobs({ jobs, stations }: RouteContext): Handler {
  return async ({ query, viewer }) => {
    if (query.ids === undefined) {
      const { station, list } = parseListQuery(query, viewer, stations);
      return { status: 200, json: await jobs.list(station, list, viewer) };
    }
    const raw = query.ids;
    if (typeof raw !== 'string' || raw.trim() === '') {
      throw badRequest('ids is required: GET /v1/jobs?ids=a,b,c', [{ path: 'ids', message: 'required' }]);
    }
    const ids = [
      ...new Set(
        raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      ),
    ];
    if (ids.length > MAX_IDS) {
      throw badRequest(`at most ${MAX_IDS} ids at once`, [{ path: 'ids', message: `more than ${MAX_IDS} ids` }]);
    }
    return { status: 200, json: { jobs: await jobs.getMany(ids, viewer) } };
  };
}

/**
 * The listing's query: every bad parameter at once, each at its name. A station lists its own
 * jobs; the admin credential names the station (`station`, required there).
 */
function parseListQuery(
  query: Record<string, unknown>,
  viewer: Viewer,
  stations: StationRegistry,
): { station: string; list: JobListQuery } {
  const errors: FieldError[] = [];
  const one = (name: string): string | undefined => {
    const v = query[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      errors.push({ path: name, message: 'must be given once' });
      return undefined;
    }
    return v;
  };
  const list: JobListQuery = { limit: JOB_LIST_DEFAULT_LIMIT };
  const limit = one('limit');
  if (limit !== undefined) {
    const n = /^\d{1,4}$/.test(limit) ? Number(limit) : Number.NaN;
    if (n >= 1 && n <= JOB_LIST_MAX_LIMIT) list.limit = n;
    else errors.push({ path: 'limit', message: `must be a whole number from 1 to ${JOB_LIST_MAX_LIMIT}` });
  }
  const status = one('status');
  if (status !== undefined) {
    const names = status.split(',').map((x) => x.trim());
    const bad = names.filter((n) => !(JOB_STATUSES as readonly string[]).includes(n));
    if (bad.length > 0 || names.length === 0)
      errors.push({ path: 'status', message: `must be one or more of ${JOB_STATUSES.join(', ')}, comma-separated` });
    else list.statuses = new Set(names as JobStatus[]);
  }
  const pipeline = one('pipeline');
  if (pipeline !== undefined) {
    if (pipelineSpec(pipeline)) list.pipeline = pipeline;
    else errors.push({ path: 'pipeline', message: `must be one of ${PIPELINE_NAMES.join(', ')}` });
  }
  const since = one('since');
  if (since !== undefined) {
    const ms = ISO_TIMESTAMP.test(since) ? Date.parse(since) : Number.NaN;
    if (Number.isFinite(ms)) list.sinceMs = ms;
    else errors.push({ path: 'since', message: 'must be an ISO 8601 time with a date, a time and a zone, e.g. 2026-12-01T00:00:00Z' });
  }
  const cursor = one('cursor');
  if (cursor !== undefined) {
    const c = decodeJobCursor(cursor);
    if (c) list.cursor = c;
    else errors.push({ path: 'cursor', message: 'not a cursor this API gave out: pass nextCursor as it was given' });
  }
  const named = one('station');
  let station: string | undefined;
  if ('station' in viewer) {
    if (named !== undefined && named !== viewer.station.name) {
      throw new HttpError('forbidden', 'a station lists only its own jobs; leave out station');
    }
    station = viewer.station.name;
  } else if (named === undefined || named === '') {
    if (!errors.some((e) => e.path === 'station'))
      errors.push({ path: 'station', message: 'required with the admin credential: whose jobs to list' });
  } else if (stations.open ? named === 'default' : stations.stations.some((st) => st.name === named)) {
    station = named;
  } else errors.push({ path: 'station', message: 'no such station' });
  if (errors.length > 0 || station === undefined) throw badRequest('the listing query is invalid', errors);
  return { station, list };
}

/** A date, a time and a zone (`Z` or an offset): what `since` takes. */
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i;

/** POST /v1/jobs/{id}/retry: the failed or cancelled job queued again, under a new id. */
export function retryJob({ deps, jobs, metrics }: RouteContext): Handler {
  return async (call) => {
    const loaded = await loadOr404(jobs, call);
    const webhookUrl = loaded.job.data.webhookUrl;
    // The address is judged again: where its host points may have changed since the first submit.
    if (webhookUrl) await deps.checkWebhookTarget?.(webhookUrl);
    const body = await jobs.retry(loaded, call.station!, call.req.id ? { requestId: String(call.req.id) } : {});
    metrics.submitted.inc({ pipeline: body.pipeline, priority: body.priority });
    return { status: 202, headers: { Location: body.links.self }, json: body };
  };
}

const loadOr404 = async (jobs: JobService, { params, viewer }: Call): Promise<LoadedJob> => {
  const loaded = await jobs.load(String(params.id), viewer);
  if (!loaded) throw notFound('no such job');
  return loaded;
};

/** GET /v1/jobs/{id}. */
export function getJob({ jobs }: RouteContext): Handler {
  return async (call) => ({ status: 200, json: await jobs.view(await loadOr404(jobs, call)) });
}

/** DELETE /v1/jobs/{id}. */
export function cancelJob({ jobs }: RouteContext): Handler {
  return async (call) => {
    const { outcome, body } = await jobs.cancel(await loadOr404(jobs, call), call.viewer);
    return { status: outcome === 'ended' ? 200 : 202, json: body };
  };
}

/** GET /v1/jobs/{id}/result: the image, streamed from the blob store. */
export function jobResult({ deps, jobs }: RouteContext): RawHandler {
  const { config } = deps;
  return async (call, res) => {
    const result = await jobs.result(await loadOr404(jobs, call));
    const etag = `"${result.sha256}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'private, immutable');
    if (etagMatches(call.req.headers['if-none-match'], result.sha256)) {
      res.statusCode = 304;
      res.end();
      return;
    }
    const redirect = config.blobStore.resultRedirect === 'presigned' ? deps.blobs.presignGet : undefined;
    if (redirect) {
      // The URL outlives no more than its signature: the redirect itself is never cached.
      const url = await redirect
        .call(deps.blobs, result.key, { expiresInSeconds: config.blobStore.resultUrlSeconds, contentType: result.contentType })
        .catch(() => {
          throw new StoreUnavailable('the result cannot be read right now; try again later');
        });
      res.setHeader('Cache-Control', 'private, no-store');
      res.statusCode = 302;
      res.setHeader('Location', url);
      res.end();
      return;
    }
    let read: { body: Readable; bytes: number };
    try {
      read = await deps.blobs.openRead(result.key);
    } catch (err) {
      if (err instanceof BlobNotFound) throw new JobExpired('the result has been removed after its retention time');
      if (err instanceof BlobStoreUnavailable) throw new StoreUnavailable('the result cannot be read right now; try again later');
      throw err;
    }
    res.statusCode = 200;
    res.setHeader('Content-Type', result.contentType);
    res.setHeader('Content-Length', String(result.bytes));
    // Cut short (the client gone, the store failing midway), the body ends short of its Content-Length.
    await pipeline(read.body, res).catch(() => {});
  };
}

/** GET /v1/jobs/{id}/events: Server-Sent Events until the job is final. */
export function jobEvents({ deps, jobs }: RouteContext): RawHandler {
  return async (call, res) => {
    const loaded = await loadOr404(jobs, call);
    const { viewer } = call;
    const id = loaded.job.id!;
    const session = await createSession(call.req, res, { keepAlive: SSE_KEEPALIVE_MS, retry: 2000 });
    let last = await jobs.view(loaded);
    let closed = false;
    let busy = false;
    let pending: 'progress' | 'status' | undefined;
    let unwatch = () => {};
    let poll: NodeJS.Timeout | undefined;
    const end = () => {
      if (closed) return;
      closed = true;
      unwatch();
      clearInterval(poll);
      res.end();
    };
    // The current state first, so a reconnecting client is up to date at once.
    session.push(last, 'status');
    if (FINAL_STATUSES.has(last.status)) return end();

    const send = async (kind: 'progress' | 'status') => {
      if (busy) {
        pending = pending === 'status' ? 'status' : kind;
        return;
      }
      busy = true;
      try {
        let next: 'progress' | 'status' | undefined = kind;
        while (next && !closed) {
          pending = undefined;
          const body = await jobs.reload(id, viewer).catch(() => undefined);
          if (!body) return end();
          const changed = body.status !== last.status;
          if (changed || next === 'status') {
            if (changed || JSON.stringify(body) !== JSON.stringify(last)) session.push(body, 'status');
          } else if (JSON.stringify(body.progress) !== JSON.stringify(last.progress)) {
            session.push(body, 'progress');
          }
          last = body;
          if (FINAL_STATUSES.has(body.status)) return end();
          next = pending;
        }
      } finally {
        busy = false;
      }
    };
    unwatch = deps.events.watch(id, (change) => void send(change === 'progress' ? 'progress' : 'status'));
    poll = setInterval(() => void send('status'), SSE_SAFETY_POLL_MS);
    res.once('close', end);
    void send('status'); // anything that happened between the first read and the watch
  };
}

const JSON_CHARSET = /;\s*charset\s*=\s*"?utf-?8"?\s*(;|$)/i;

/**
 * The body of a plain JSON request (no Content-Encoding, UTF-8), read with the size limit; or
 * undefined for anything else, which body-parser reads with the same limit and answers.
 */
export function plainJsonBody(req: IncomingMessage, limit: number): Promise<unknown> | undefined {
  if (req.headers['content-encoding'] !== undefined) return undefined;
  const type = req.headers['content-type'] ?? '';
  const params = type.indexOf(';');
  if (params >= 0 && !JSON_CHARSET.test(type.slice(params))) return undefined;
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    req.resume();
    return Promise.reject(new HttpError('payload_too_large', 'the request body is larger than the limit'));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (err: HttpError) => {
      if (failed) return;
      failed = true;
      chunks.length = 0;
      reject(err);
    };
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) fail(new HttpError('payload_too_large', 'the request body is larger than the limit'));
      else chunks.push(c);
    });
    req.on('error', () => fail(new HttpError('invalid_request', 'the request was aborted')));
    req.on('aborted', () => fail(new HttpError('invalid_request', 'the request was aborted')));
    req.on('end', () => {
      if (failed) return;
      const text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch {
        fail(new HttpError('invalid_request', 'the body is not valid JSON'));
      }
    });
  });
}

function parseWait(value: unknown): number {
  if (value === undefined || value === '') return 0;
  const n = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isFinite(n) || n < 0 || n > 60) {
    throw badRequest('wait must be a number of seconds from 0 to 60', [{ path: 'wait', message: 'must be 0–60 seconds' }]);
  }
  return n;
}

function etagMatches(header: string | undefined, sha256: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === `"${sha256}"`);
}

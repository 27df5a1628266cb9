import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  blobKeys,
  type Deps,
  FINAL_STATUSES,
  idempotencyKeyOf,
  type JobService,
  type LoadedJob,
  type ValidSubmit,
  type Viewer,
  validateSubmit,
} from '@darkroom/jobs';
import { createSession } from 'better-sse';
import type { RequestHandler } from 'express';
import express, { Router } from 'express';
import { requireStation } from '../auth/middleware.ts';
import type { Station, StationRegistry } from '../auth/stations.ts';
import { handler } from '../http/async.ts';
import { sendJson } from '../http/error-handler.ts';
import { badRequest, HttpError, notFound } from '../http/problem.ts';
import type { ApiMetrics } from '../metrics.ts';
import { discardImage, fromJson, parseMultipart, type RawSubmit, type Spool, tooLarge } from '../submit/parse.ts';

const MAX_IDS = 100;
const SSE_KEEPALIVE_MS = 15_000;
const SSE_SAFETY_POLL_MS = 10_000;

/** The two hot routes, written against node's own request and response so the fast lane can answer them too. */
export interface HotJobRoutes {
  /** POST /v1/jobs for an authenticated station. */
  submit(req: IncomingMessage, res: ServerResponse, station: Station, query: Record<string, unknown>): Promise<void>;
  /** GET /v1/jobs/{id}. */
  status(res: ServerResponse, viewer: Viewer, id: string): Promise<void>;
}

export function hotJobRoutes(deps: Deps, jobs: JobService, metrics: ApiMetrics): HotJobRoutes {
  const { config } = deps;
  const maxUpload = config.limits.maxUploadBytes;
  // base64 is 4/3 of the bytes; the rest is room for the other fields.
  const jsonLimit = Math.ceil((maxUpload * 4) / 3) + 256 * 1024;
  // For bodies the plain reader leaves to it (compressed, another charset): the route has matched
  // the JSON media types already, so the parser need not look again.
  const json = express.json({ limit: jsonLimit, type: () => true });
  const spool: Spool = { memoryBytes: config.limits.uploadMemoryBytes, tempPath: () => deps.blobs.tempPath('upload') };
  const readJson = (req: IncomingMessage, res: ServerResponse): Promise<unknown> =>
    plainJsonBody(req, jsonLimit) ??
    new Promise((resolve, reject) =>
      json(req as express.Request, res as express.Response, (err?: unknown) =>
        err ? reject(err) : resolve((req as express.Request).body),
      ),
    );

  return {
    async submit(req, res, station, query) {
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
        raw = fromJson(await readJson(req, res), maxUpload);
      } else {
        throw new HttpError(415, 'unsupported_media_type', 'send multipart/form-data (an "image" file part) or application/json');
      }
      let valid: ValidSubmit;
      let submitted: Awaited<ReturnType<JobService['submit']>>;
      try {
        valid = validateSubmit(raw, station, { webhookSecretAvailable: Boolean(config.webhooks.secret) });
        if (valid.webhookUrl) await deps.checkWebhookTarget?.(valid.webhookUrl);
        submitted = await jobs.submit(valid, station, {
          ...(req.id ? { requestId: String(req.id) } : {}),
          ...(idempotencyKey ? { idempotencyKey } : {}),
        });
      } finally {
        // A queued job's spooled image was moved into place; any other answer leaves no file behind.
        if (raw.image && !Buffer.isBuffer(raw.image)) await discardImage(raw.image).catch(() => {});
      }
      if (!submitted.deduplicated) metrics.submitted.inc({ pipeline: valid.spec.name, priority: valid.priority });
      let body = submitted.body;
      res.setHeader('Location', body.links.self);
      if (wait > 0 && !FINAL_STATUSES.has(body.status)) {
        const closed = new AbortController();
        res.once('close', () => closed.abort());
        body = (await jobs.waitForFinal(body.id, { station }, wait * 1000, closed.signal)) ?? body;
        if (submitted.deduplicated) body.deduplicated = true;
      }
      sendJson(res, submitted.deduplicated || FINAL_STATUSES.has(body.status) ? 200 : 202, body);
    },

    async status(res, viewer, id) {
      const loaded = await jobs.load(id, viewer);
      if (!loaded) throw notFound('no such job');
      sendJson(res, 200, await jobs.view(loaded));
    },
  };
}

const JSON_CHARSET = /;\s*charset\s*=\s*"?utf-?8"?\s*(;|$)/i;

/**
 * The body of a plain JSON request (no Content-Encoding, UTF-8), read with the size limit; or
 * undefined for anything else, which body-parser reads with the same limit and answers.
 */
function plainJsonBody(req: IncomingMessage, limit: number): Promise<unknown> | undefined {
  if (req.headers['content-encoding'] !== undefined) return undefined;
  const type = req.headers['content-type'] ?? '';
  const params = type.indexOf(';');
  if (params >= 0 && !JSON_CHARSET.test(type.slice(params))) return undefined;
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    req.resume();
    return Promise.reject(new HttpError(413, 'payload_too_large', 'the request body is larger than the limit'));
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
      if (size > limit) fail(new HttpError(413, 'payload_too_large', 'the request body is larger than the limit'));
      else chunks.push(c);
    });
    req.on('error', () => fail(new HttpError(400, 'invalid_request', 'the request was aborted')));
    req.on('aborted', () => fail(new HttpError(400, 'invalid_request', 'the request was aborted')));
    req.on('end', () => {
      if (failed) return;
      const text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch {
        fail(new HttpError(400, 'invalid_request', 'the body is not valid JSON'));
      }
    });
  });
}

export function jobsRouter(deps: Deps, stations: StationRegistry, jobs: JobService, hot: HotJobRoutes, rateLimit: RequestHandler): Router {
  const r = Router();
  const viewerOf = (req: express.Request): Viewer => (req.station ? { station: req.station } : { admin: true });
  const station = [requireStation(stations), rateLimit];
  const stationOrAdmin = [requireStation(stations, { allowAdmin: true }), rateLimit];

  // The fast lane answers the plain forms of these two; Express answers the rest the same way.
  r.post(
    '/v1/jobs',
    ...station,
    handler((req, res) => hot.submit(req, res, req.station!, req.query)),
  );

  r.get(
    '/v1/jobs',
    ...stationOrAdmin,
    handler(async (req, res) => {
      const raw = req.query.ids;
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
      res.json({ jobs: await jobs.getMany(ids, viewerOf(req)) });
    }),
  );

  const loadOr404 = async (req: express.Request): Promise<LoadedJob> => {
    const loaded = await jobs.load(String(req.params.id), viewerOf(req));
    if (!loaded) throw notFound('no such job');
    return loaded;
  };

  r.get(
    '/v1/jobs/:id',
    ...stationOrAdmin,
    handler((req, res) => hot.status(res, viewerOf(req), String(req.params.id))),
  );

  r.delete(
    '/v1/jobs/:id',
    ...stationOrAdmin,
    handler(async (req, res) => {
      const { outcome, body } = await jobs.cancel(await loadOr404(req), viewerOf(req));
      res.status(outcome === 'ended' ? 200 : 202).json(body);
    }),
  );

  r.get(
    '/v1/jobs/:id/result',
    ...stationOrAdmin,
    handler(async (req, res) => {
      const loaded = await loadOr404(req);
      const body = await jobs.view(loaded);
      if (body.status === 'queued' || body.status === 'active') {
        throw new HttpError(409, 'not_ready', `the job is ${body.status}; the result is not ready yet`, {
          headers: { 'Retry-After': '1' },
        });
      }
      const result = loaded.job.returnvalue;
      if (body.status !== 'completed' || !result) throw new HttpError(409, 'no_result', `the job is ${body.status}; it has no result`);
      const etag = `"${result.sha256}"`;
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', 'private, immutable');
      if (etagMatches(req.headers['if-none-match'], result.sha256)) {
        res.status(304).end();
        return;
      }
      const stream = deps.blobs.openRead(result.key || blobKeys.output(loaded.job.id!, result.format));
      await new Promise<void>((resolve, reject) => {
        stream.once('open', () => {
          res.status(200).type(result.contentType).setHeader('Content-Length', String(result.bytes));
          stream.pipe(res);
          stream.once('end', resolve);
        });
        stream.once('error', (err: NodeJS.ErrnoException) =>
          reject(
            err.code === 'ENOENT' && !res.headersSent
              ? new HttpError(410, 'expired', 'the result has been removed after its retention time')
              : err,
          ),
        );
      });
    }),
  );

  r.get(
    '/v1/jobs/:id/events',
    ...stationOrAdmin,
    handler(async (req, res) => {
      const loaded = await loadOr404(req);
      const viewer = viewerOf(req);
      const id = loaded.job.id!;
      const session = await createSession(req, res, { keepAlive: SSE_KEEPALIVE_MS, retry: 2000 });
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
    }),
  );

  return r;
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

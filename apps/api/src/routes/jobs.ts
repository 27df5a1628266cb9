import type { JobStatusBody } from '@darkroom/contracts';
import { blobKeys } from '@darkroom/core';
import express, { Router } from 'express';
import { requireStation } from '../auth/middleware.ts';
import type { StationRegistry } from '../auth/stations.ts';
import { handler } from '../http/async.ts';
import { badRequest, HttpError, notFound } from '../http/problem.ts';
import type { Deps, JobService, LoadedJob, Viewer } from '../jobs.ts';
import { fromJson, parseMultipart, type RawSubmit, tooLarge } from '../submit/parse.ts';
import { validateSubmit } from '../submit/validate.ts';

const FINAL = new Set(['completed', 'failed', 'cancelled']);
const MAX_IDS = 100;

export function jobsRouter(deps: Deps, stations: StationRegistry, jobs: JobService): Router {
  const r = Router();
  const { config } = deps;
  const maxUpload = config.limits.maxUploadBytes;
  // base64 is 4/3 of the bytes; the rest is room for the other fields.
  const json = express.json({ limit: Math.ceil((maxUpload * 4) / 3) + 256 * 1024, type: ['application/json', 'application/*+json'] });
  const viewerOf = (req: express.Request): Viewer => (req.station ? { station: req.station } : { admin: true });

  r.post(
    '/v1/jobs',
    requireStation(stations),
    handler(async (req, res) => {
      const wait = parseWait(req.query.wait);
      const type = req.headers['content-type'] ?? '';
      const declared = Number(req.headers['content-length'] ?? 0);
      let raw: RawSubmit;
      if (/^multipart\/form-data/i.test(type)) {
        // Refuse before reading when the declared size cannot fit the limit (the fields need little room).
        if (declared > maxUpload + 512 * 1024) throw tooLarge(maxUpload);
        raw = await parseMultipart(req, maxUpload);
      } else if (/^application\/([a-z.+-]+\+)?json/i.test(type)) {
        await new Promise<void>((resolve, reject) => json(req, res, (err?: unknown) => (err ? reject(err) : resolve())));
        raw = fromJson(req.body, maxUpload);
      } else {
        throw new HttpError(415, 'unsupported_media_type', 'send multipart/form-data (an "image" file part) or application/json');
      }
      const valid = validateSubmit(raw, req.station!, { webhookSecretAvailable: Boolean(config.webhooks.secret) });
      let body = await jobs.submit(valid, req.station!, req.id as string | undefined);
      if (wait > 0) {
        const final = await waitForFinal(jobs, body.id, { station: req.station! }, wait * 1000, res);
        if (final && FINAL.has(final.status)) {
          res.status(200).setHeader('Location', body.links.self).json(final);
          return;
        }
        if (final) body = final;
      }
      res.status(202).setHeader('Location', body.links.self).json(body);
    }),
  );

  r.get(
    '/v1/jobs',
    requireStation(stations, { allowAdmin: true }),
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
    requireStation(stations, { allowAdmin: true }),
    handler(async (req, res) => {
      res.json(await jobs.view(await loadOr404(req)));
    }),
  );

  r.get(
    '/v1/jobs/:id/result',
    requireStation(stations, { allowAdmin: true }),
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

/** Holds a submit until the job is final or the time is up; gives up early if the client leaves. */
async function waitForFinal(
  jobs: JobService,
  id: string,
  viewer: Viewer,
  ms: number,
  res: express.Response,
): Promise<JobStatusBody | undefined> {
  const deadline = Date.now() + ms;
  let closed = false;
  res.once('close', () => {
    closed = true;
  });
  let delay = 50;
  for (;;) {
    const loaded = await jobs.load(id, viewer);
    if (!loaded) return undefined;
    const body = await jobs.view(loaded);
    if (FINAL.has(body.status) || Date.now() >= deadline || closed) return body;
    await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, deadline - Date.now()))));
    delay = Math.min(delay * 1.5, 500);
  }
}

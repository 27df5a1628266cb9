import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { JobData } from '@darkroom/contracts';
import type { DarkroomQueue } from '@darkroom/jobs';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { pathToRegexp } from 'path-to-regexp';
import { PROBLEMS } from '../http/error-table.ts';
import { HttpError, notFound, unavailable } from '../http/problem.ts';
import { type PipelineAction, setPipelinePaused } from './admin.ts';
import type { RouteContext } from './route.ts';

export const DASHBOARD_PATH = '/admin/queues';

/** Job data as operators see it: blob references keep their facts but not their storage keys. */
export function redactJobData(data: JobData | undefined): unknown {
  if (!data || typeof data !== 'object') return data;
  const { input, ...rest } = data;
  if (!input) return rest;
  const { key: _key, ...facts } = input;
  return { ...rest, input: { ...facts, key: '[redacted]' } };
}

function redactResult(value: unknown): unknown {
  if (!value || typeof value !== 'object') return value;
  const { key: _key, ...facts } = value as Record<string, unknown>;
  return { ...facts, key: '[redacted]' };
}

/*
 * Bull Board's actions act on BullMQ alone: a retry, clean, promote, added job, edited data,
 * emptied or obliterated queue skips Darkroom's own records (a station's pending count,
 * tombstones, cancel flags, webhooks, stored files, usage, fair-share tags), so one click could
 * leave them wrong. The dashboard is for looking; what changes jobs goes through Darkroom's routes.
 *
 * Its API (Bull Board 9.10, dist/routes.js) is checked against lists, not against what it
 * refuses: an action a newer Bull Board adds answers 403 until someone decides it is safe.
 */
const READS = [
  '/api/redis/stats',
  '/api/queues',
  '/api/job-schedulers',
  '/api/queues/:queueName/metrics',
  '/api/queues/:queueName/default-job-options',
  '/api/queues/:queueName/workers',
  '/api/queues/:queueName/rate-limit',
  '/api/queues/:queueName/job-data-schema',
  '/api/queues/:queueName/:jobId/logs',
  '/api/queues/:queueName/:jobId/flow',
  '/api/queues/:queueName/:jobId',
].map(pattern);

/** Pausing and resuming only stop workers taking new jobs; they go through the admin routes' code. */
const PAUSE_ONE = pattern('/api/queues/:queueName/:action');
const PAUSE_ALL = pattern('/api/queues/:action');
const PAUSE_ACTIONS = new Set(['pause', 'resume']);

/** Bull Board's other actions: what each does, and where Darkroom does it, for the refusal's message. */
const ELSEWHERE: [RegExp[], string, string][] = [
  [
    ['/api/queues/:queueName/retry/:status', '/api/queues/:queueName/:jobId/retry'],
    'retrying a job',
    'a station retries its own failed job with POST /v1/jobs/{id}/retry',
  ],
  [
    ['/api/queues/:queueName/:jobId/clean'],
    'removing a job',
    'DELETE /v1/jobs/{id} (its station or the admin credential) cancels a job that has not finished; finished jobs go with retention',
  ],
  [
    ['/api/queues/:queueName/clean/:status', '/api/queues/:queueName/empty', '/api/queues/:queueName/obliterate'],
    'emptying a queue',
    'POST /v1/admin/pipelines/{name}/purge cancels every job of a pipeline that has not started; finished jobs go with retention',
  ],
  [['/api/queues/:queueName/add'], 'adding a job', 'stations submit with POST /v1/jobs'],
  [
    ['/api/queues/:queueName/:jobId/update-data'],
    'editing a job’s data',
    'its station cancels it (DELETE /v1/jobs/{id}) and submits it again',
  ],
  [
    ['/api/queues/:queueName/promote', '/api/queues/:queueName/:jobId/promote', '/api/queues/:queueName/:jobId/delay'],
    'promoting or rescheduling a job',
    'Darkroom schedules its retries itself',
  ],
  [
    ['/api/queues/:queueName/:jobId/priority'],
    'changing a job’s priority',
    'a job waits in its station’s priority class and moves up with age',
  ],
  [
    ['/api/queues/:queueName/concurrency', '/api/queues/:queueName/rate-limit', '/api/queues/:queueName/rate-limit/release'],
    'setting concurrency or a rate limit',
    'each worker’s DARKROOM_WORKER_CONCURRENCY decides how many jobs it runs',
  ],
].map(([paths, what, instead]) => [(paths as string[]).map(pattern), what as string, instead as string]);

/** An Express path (`:name` segments) as Express matches it: case-insensitive, a trailing slash allowed. */
function pattern(path: string): RegExp {
  return pathToRegexp(path).regexp;
}

function decodedName(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** What an operator is told for an action the dashboard does not offer (the request itself is not echoed). */
function refusal(path: string): string {
  const known = ELSEWHERE.find(([res]) => res.some((re) => re.test(path)));
  return known
    ? `${known[1]} is not available from the dashboard, which would skip Darkroom’s own records of the job; ${known[2]}`
    : 'this action is not available from the dashboard, which offers reads and pausing or resuming a pipeline';
}

/**
 * In front of Bull Board's router: reads go on, pause/resume run Darkroom's own code, anything
 * else under its API is refused with 403.
 */
function guard({ deps }: RouteContext) {
  const pause = async (action: PipelineAction, queues: DarkroomQueue[]) => {
    if (deps.redis.status !== 'ready') throw unavailable();
    const entries = [];
    for (const queue of queues) entries.push(await setPipelinePaused(deps, queue, action, 'dashboard'));
    return entries;
  };
  return (req: Request, res: Response, next: NextFunction) => {
    const path = req.path;
    const api = /^\/api(\/|$)/i.test(path);
    const read = req.method === 'GET' || req.method === 'HEAD';
    if (read && (!api || READS.some((re) => re.test(path)))) return next();
    if (req.method === 'PUT') {
      const one = PAUSE_ONE.exec(path);
      if (one && PAUSE_ACTIONS.has(one[2]!.toLowerCase())) {
        const name = decodedName(one[1] as string);
        const queue = deps.queues.get(name);
        if (!queue) return next(notFound(`unknown pipeline "${name.slice(0, 64)}"`));
        pause(one[2]!.toLowerCase() as PipelineAction, [queue]).then(([entry]) => res.json(entry), next);
        return;
      }
      const all = PAUSE_ALL.exec(path);
      if (all && PAUSE_ACTIONS.has(all[1]!.toLowerCase())) {
        pause(all[1]!.toLowerCase() as PipelineAction, deps.queues.all()).then((pipelines) => res.json({ pipelines }), next);
        return;
      }
    }
    // The page and its files are read with GET only; anything else there is no action either.
    next(new HttpError('forbidden', refusal(path)));
  };
}

export function dashboardRouter(ctx: RouteContext): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: ctx.deps.queues.all().map((q) => {
      // Read-only: Bull Board shows no action buttons and refuses its actions itself too, a
      // second lock behind the guard. It also hides pause/resume, which operators reach through
      // POST /v1/admin/pipelines/{name}/pause|resume (or this API's pause/resume, routed there).
      const adapter = new BullMQAdapter(q, { readOnlyMode: true, description: `pipeline ${q.name}` });
      adapter.setFormatter('data', (d) => redactJobData(d as JobData));
      adapter.setFormatter('returnValue', redactResult);
      return adapter;
    }),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Darkroom' } },
  });
  // Bull Board's own handler answers 500 with the error's message (and stack in development) for
  // query strings it cannot decode; those are the client's mistake, and no internals go out.
  serverAdapter.setErrorHandler((error: Error) =>
    error instanceof URIError || error instanceof SyntaxError
      ? { status: PROBLEMS.invalid_request[0], body: { error: 'invalid request', message: 'the query string could not be read' } }
      : { status: PROBLEMS.internal[0], body: { error: 'internal error', message: 'an internal error occurred; it has been logged' } },
  );
  const router = express.Router();
  router.use(guard(ctx));
  router.use(serverAdapter.getRouter() as Router);
  return router;
}

import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import querystring from 'node:querystring';
import type { Deps } from '@darkroom/jobs';
import type { Express } from 'express';
import { authenticate } from '../auth/middleware.ts';
import type { StationRegistry } from '../auth/stations.ts';
import type { StationRateLimit } from '../limits.ts';
import type { ApiMetrics } from '../metrics.ts';
import type { HotJobRoutes } from '../routes/jobs.ts';
import { answerError } from './error-handler.ts';
import { unavailable } from './problem.ts';
import type { requestLog } from './request-log.ts';
import { setHeaders } from './static-headers.ts';

/** A job id as the plain path segment: nothing to decode, no trailing slash. */
const PLAIN_ID = /^[A-Za-z0-9_-]{1,128}$/;
const JOBS = '/v1/jobs';
const noop = () => {};

/**
 * The HTTP entry point. Express's router costs about 100 µs of CPU per request here, as much as
 * everything else a submit does, so the two routes stations call all day, POST /v1/jobs and
 * GET /v1/jobs/{id} in their plain forms, are answered directly by the same handlers, after the
 * same steps in the same order as the Express stack: request id and log line, security headers,
 * metrics, the Redis check, authentication, the station's rate limit, and errors as problem+json.
 * Everything else, odd spellings of those paths included, goes to Express.
 */
export function fastLane(opts: {
  app: Express;
  deps: Deps;
  stations: StationRegistry;
  routes: HotJobRoutes;
  metrics: ApiMetrics;
  rateLimit: StationRateLimit;
  log: ReturnType<typeof requestLog>;
  headers: [string, string][];
}): RequestListener {
  const { app, deps, stations, routes, metrics, rateLimit, log, headers } = opts;
  const { logger } = deps;

  const answer = (req: IncomingMessage, res: ServerResponse, route: string, run: () => Promise<void>) => {
    log(req, res, noop);
    setHeaders(res, headers);
    metrics.track(req, res, () => route);
    const fail = (err: unknown) => answerError(logger, err, req.id, req.method, req.url, res);
    try {
      if (deps.redis.status !== 'ready') throw unavailable();
      run().catch(fail);
    } catch (err) {
      fail(err);
    }
  };

  return (req, res) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method;
    if (method === 'POST' && path === JOBS) {
      return answer(req, res, JOBS, async () => {
        const who = authenticate(stations, req);
        if (!('station' in who)) return;
        await rateLimit.consume(who.station, res);
        await routes.submit(req, res, who.station, q < 0 ? {} : querystring.parse(url.slice(q + 1)));
      });
    }
    if ((method === 'GET' || method === 'HEAD') && path.startsWith(`${JOBS}/`) && PLAIN_ID.test(path.slice(JOBS.length + 1))) {
      return answer(req, res, `${JOBS}/:id`, async () => {
        const who = authenticate(stations, req, { allowAdmin: true });
        if ('station' in who) await rateLimit.consume(who.station, res);
        await routes.status(res, who, path.slice(JOBS.length + 1));
      });
    }
    app(req, res);
  };
}

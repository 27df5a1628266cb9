import type { RequestListener } from 'node:http';
import { type Deps, JobService } from '@darkroom/jobs';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import { credentialOf, requireAdmin } from './auth/middleware.ts';
import type { StationRegistry } from './auth/stations.ts';
import { constantTimeEqual } from './auth/stations.ts';
import { handler } from './http/async.ts';
import { errorHandler, notFoundHandler } from './http/error-handler.ts';
import { fastLane } from './http/fast-lane.ts';
import { HttpError, unavailable } from './http/problem.ts';
import { requestLog } from './http/request-log.ts';
import { recordHeaders, setHeaders } from './http/static-headers.ts';
import { StationRateLimit } from './limits.ts';
import { ApiMetrics } from './metrics.ts';
import { adminRouter } from './routes/admin.ts';
import { DASHBOARD_PATH, dashboardRouter } from './routes/dashboard.ts';
import { docsRouter } from './routes/docs.ts';
import { hotJobRoutes, jobsRouter } from './routes/jobs.ts';
import { metaRouter } from './routes/meta.ts';

export interface App {
  app: Express;
  jobs: JobService;
  /** What the HTTP server runs: the fast lane for the hot routes, Express for the rest. */
  listener: RequestListener;
}

/** The HTTP app, apart from listen() so tests can drive it in process. */
export function createApp(deps: Deps, stations: StationRegistry): App {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.set('trust proxy', false);

  const log = requestLog(deps.logger);
  app.use(log);
  // Security headers. The dashboard and the docs page set their own script policy; the JSON API
  // needs none at all, so the default CSP forbids everything.
  const headers = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginEmbedderPolicy: false,
    strictTransportSecurity: deps.config.production ? { maxAge: 15552000 } : false,
  });
  const pageHeaders = helmet({
    contentSecurityPolicy: false,
    strictTransportSecurity: deps.config.production ? { maxAge: 15552000 } : false,
  });
  const apiHeaders = recordHeaders(headers, { 'Referrer-Policy': 'no-referrer' });
  const pageHeaderList = recordHeaders(pageHeaders, { 'Referrer-Policy': 'no-referrer' });
  app.use((req: Request, res: Response, next: NextFunction) => {
    setHeaders(res, req.path.startsWith(DASHBOARD_PATH) || req.path.startsWith('/docs') ? pageHeaderList : apiHeaders);
    next();
  });

  const jobs = new JobService(deps);
  const metrics = new ApiMetrics(deps);
  app.use(metrics.middleware());
  app.get(
    '/metrics',
    handler(async (req, res) => {
      const token = deps.config.metricsToken;
      if (token && !constantTimeEqual(credentialOf(req).bearer, token)) {
        throw new HttpError(401, 'unauthorized', 'the metrics token is required', { headers: { 'WWW-Authenticate': 'Bearer' } });
      }
      res.type(metrics.registry.contentType).send(await metrics.scrape());
    }),
  );
  // Producers fail fast: with the queue store away, answer 503 at once rather than queueing work.
  const needsRedis = (_req: Request, _res: Response, next: NextFunction) => (deps.redis.status === 'ready' ? next() : next(unavailable()));

  app.use(metaRouter(deps, stations, jobs));
  app.use(docsRouter());
  app.use('/v1/jobs', needsRedis);
  app.use('/v1/queue', needsRedis);
  app.use('/v1/admin', needsRedis);
  const rateLimit = new StationRateLimit(deps.redis, deps.config.prefix);
  const hot = hotJobRoutes(deps, jobs, metrics);
  app.use(jobsRouter(deps, stations, jobs, hot, rateLimit.middleware()));
  app.use(adminRouter(deps, stations));
  app.use(DASHBOARD_PATH, requireAdmin(stations, { realm: 'darkroom-admin' }), dashboardRouter(deps.queues));

  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger));
  const listener = fastLane({ app, deps, stations, routes: hot, metrics, rateLimit, log, headers: apiHeaders });
  return { app, jobs, listener };
}

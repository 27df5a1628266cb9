import { randomUUID } from 'node:crypto';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import { credentialOf, requireAdmin } from './auth/middleware.ts';
import type { StationRegistry } from './auth/stations.ts';
import { constantTimeEqual } from './auth/stations.ts';
import { handler } from './http/async.ts';
import { errorHandler, notFoundHandler } from './http/error-handler.ts';
import { HttpError, unavailable } from './http/problem.ts';
import { type Deps, JobService } from './jobs.ts';
import { stationRateLimit } from './limits.ts';
import { ApiMetrics } from './metrics.ts';
import { adminRouter } from './routes/admin.ts';
import { DASHBOARD_PATH, dashboardRouter } from './routes/dashboard.ts';
import { docsRouter } from './routes/docs.ts';
import { jobsRouter } from './routes/jobs.ts';
import { metaRouter } from './routes/meta.ts';

export interface App {
  app: Express;
  jobs: JobService;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** The HTTP app, apart from listen() so tests can drive it in process. */
export function createApp(deps: Deps, stations: StationRegistry): App {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.set('trust proxy', false);

  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'debug'),
      serializers: {
        req: (req) => ({ id: req.id, method: req.method, url: req.url }),
        res: (res) => ({ statusCode: res.statusCode }),
      },
    }),
  );
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
  app.use((req: Request, res: Response, next: NextFunction) =>
    req.path.startsWith(DASHBOARD_PATH) || req.path.startsWith('/docs') ? pageHeaders(req, res, next) : headers(req, res, next),
  );
  app.use((_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Referrer-Policy', 'no-referrer');
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
  app.use(jobsRouter(deps, stations, jobs, stationRateLimit(deps.redis, deps.config.prefix), metrics));
  app.use(adminRouter(deps, stations));
  app.use(DASHBOARD_PATH, requireAdmin(stations, { realm: 'darkroom-admin' }), dashboardRouter(deps.queues));

  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger));
  return { app, jobs };
}

import type { RequestListener, ServerResponse } from 'node:http';
import querystring from 'node:querystring';
import { buildOpenApiDocument } from '@darkroom/contracts';
import { type Deps, JobService } from '@darkroom/jobs';
import express, { type Express, type Request, type RequestHandler } from 'express';
import helmet from 'helmet';
import { credentialOf, requireAdmin, requireStation } from './auth/middleware.ts';
import type { StationRegistry } from './auth/stations.ts';
import { constantTimeEqual } from './auth/stations.ts';
import { RouteMatcher, runSteps, type Step } from './http/dispatch.ts';
import { answerError, errorHandler, notFoundHandler, sendJson } from './http/error-handler.ts';
import { useOpenAiErrors } from './http/openai-error.ts';
import { HttpError, unavailable } from './http/problem.ts';
import { requestLog } from './http/request-log.ts';
import { recordHeaders, setHeaders } from './http/static-headers.ts';
import { StationRateLimit } from './limits.ts';
import { ApiMetrics } from './metrics.ts';
import { DASHBOARD_PATH } from './routes/dashboard.ts';
import { DOCS_PATH } from './routes/docs.ts';
import type { Call, Reply, Route, RouteContext } from './routes/route.ts';
import { ROUTES, SCOPES } from './routes/table.ts';

export interface App {
  app: Express;
  jobs: JobService;
  /** What the HTTP server runs: the route table's dispatcher for plain spellings, Express for the rest. */
  listener: RequestListener;
}

const NO_QUERY: Record<string, never> = Object.freeze(Object.create(null));

/** `/v1/jobs/{id}` → `/v1/jobs/:id`. */
const expressPath = (path: string) => path.replace(/\{([^}]+)\}/g, ':$1');

/** The path of a request target, also in absolute form (`GET http://host/path`). */
function pathOf(url: string): string {
  if (url.startsWith('/')) return url;
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

/**
 * The HTTP app, apart from listen() so tests can drive it in process. Everything it serves is an
 * entry of the route table (routes/table.ts); the steps every request goes through (request id and
 * log line, security headers, metrics) and those each route adds from its entry (Redis check,
 * credential, rate limit) are built once here, and both ways in run the same ones in the same
 * order: Express, for every spelling of a path, and the dispatcher, which answers the plain
 * spellings of the table's routes without Express's router (about 100 µs of CPU a request).
 */
export function createApp(deps: Deps, stations: StationRegistry): App {
  const { logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.set('trust proxy', false);

  // Security headers. The dashboard and the docs page set their own script policy; the JSON API
  // needs none at all, so the default CSP forbids everything.
  const apiHeaders = recordHeaders(
    helmet({
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
      crossOriginEmbedderPolicy: false,
      strictTransportSecurity: deps.config.production ? { maxAge: 15552000 } : false,
    }),
    { 'Referrer-Policy': 'no-referrer' },
  );
  const pageHeaders = recordHeaders(
    helmet({
      contentSecurityPolicy: false,
      strictTransportSecurity: deps.config.production ? { maxAge: 15552000 } : false,
    }),
    { 'Referrer-Policy': 'no-referrer' },
  );

  const jobs = new JobService(deps);
  const metrics = new ApiMetrics(deps);
  const rateLimit = new StationRateLimit(deps.redis, deps.config.prefix);

  // The steps of every request, in order.
  const everyRequest: Step[] = [
    requestLog(logger),
    (req, res, next) => {
      const path = pathOf(req.url ?? '');
      setHeaders(res, path.startsWith(DASHBOARD_PATH) || path.startsWith(DOCS_PATH) ? pageHeaders : apiHeaders);
      next();
    },
    metrics.middleware() as unknown as Step,
  ];

  // The steps a route's entry asks for, in order: Redis check, credential, rate limit.
  // Producers fail fast: with the queue store away, answer 503 at once rather than queueing work.
  const needsRedis: Step = (_req, _res, next) => (deps.redis.status === 'ready' ? next() : next(unavailable()));
  const metricsToken: Step = (req, _res, next) => {
    const token = deps.config.metricsToken;
    if (token && !constantTimeEqual(credentialOf(req).bearer, token)) {
      return next(new HttpError('unauthorized', 'the metrics token is required', { headers: { 'WWW-Authenticate': 'Bearer' } }));
    }
    next();
  };
  const station = requireStation(stations) as unknown as Step;
  const stationOrAdmin = requireStation(stations, { allowAdmin: true }) as unknown as Step;
  const admin = requireAdmin(stations) as unknown as Step;
  const limit = rateLimit.middleware() as unknown as Step;
  const openAiErrors: Step = (_req, res, next) => {
    useOpenAiErrors(res);
    next();
  };
  const checks = (r: { redis: boolean; auth: Route['auth']; realm?: string; rateLimited?: boolean }): Step[] => {
    const out: Step[] = [];
    if (r.redis) out.push(needsRedis);
    if (r.auth === 'station') out.push(station);
    if (r.auth === 'station-or-admin') out.push(stationOrAdmin);
    if (r.auth === 'admin') out.push(r.realm ? (requireAdmin(stations, { realm: r.realm }) as unknown as Step) : admin);
    if (r.auth === 'metrics-token') out.push(metricsToken);
    if (r.rateLimited) out.push(limit);
    return out;
  };

  let document: string | undefined;
  const ctx: RouteContext = {
    deps,
    stations,
    jobs,
    metrics,
    // Built once, when first asked for: the routes and contracts do not change while the process runs.
    openapi: () => {
      document ??= JSON.stringify(buildOpenApiDocument({ routes: ROUTES }));
      return document;
    },
  };

  app.use(...(everyRequest as unknown as RequestHandler[]));
  const router = express.Router();
  const dispatcher = new RouteMatcher<{ steps: Step[]; route: { path: string } }>();
  const mounts: [Route & { kind: 'express' }, Step[]][] = [];
  for (const route of ROUTES) {
    if (route.kind === 'express') {
      mounts.push([route, checks(route)]);
      continue;
    }
    const path = expressPath(route.path);
    const shape: Step[] = route.errorShape === 'openai' ? [openAiErrors] : [];
    const steps = [...shape, ...checks(route), route.kind === 'json' ? answer(route.handler(ctx)) : answerRaw(route.handler(ctx))];
    router[route.method.toLowerCase() as 'get' | 'post' | 'delete'](path, ...(steps as unknown as RequestHandler[]));
    dispatcher.add(route.method, route.path, { steps: [...everyRequest, ...steps], route: { path } });
  }
  app.use(router);
  for (const scope of SCOPES) app.use(scope.prefix, ...(checks(scope) as unknown as RequestHandler[]));
  for (const [route, steps] of mounts) {
    const handlers = [...steps, route.router(ctx)] as unknown as RequestHandler[];
    if (route.mount) app.use(route.mount, ...handlers);
    else app.use(...handlers);
  }
  app.use(notFoundHandler);
  app.use(errorHandler(logger));

  const listener: RequestListener = (req, res) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const hit = dispatcher.match(req.method, q < 0 ? url : url.slice(0, q));
    if (!hit) return app(req, res);
    // What Express's router would have set: the parameters, the query, and the route for the metrics.
    const r = req as Request;
    r.params = hit.params;
    r.query = q < 0 ? NO_QUERY : querystring.parse(url.slice(q + 1));
    r.baseUrl = '';
    r.route = hit.value.route;
    runSteps(hit.value.steps, req, res, (err) => answerError(logger, err, req.id, req.method, req.url, res));
  };
  return { app, jobs, listener };
}

/** What a handler sees of a request that has passed its route's steps. */
class RequestCall implements Call {
  readonly req: Request;
  readonly #res: ServerResponse;

  constructor(req: Request, res: ServerResponse) {
    this.req = req;
    this.#res = res;
  }

  get params(): Record<string, string> {
    return this.req.params as Record<string, string>;
  }

  get query(): Record<string, unknown> {
    return this.req.query as Record<string, unknown>;
  }

  get station() {
    return this.req.station;
  }

  get viewer() {
    const { station } = this.req;
    if (station) return { station };
    if (this.req.isAdmin) return { admin: true as const };
    throw new Error('this route takes no credential: there is no viewer');
  }

  closed(): AbortSignal {
    const aborted = new AbortController();
    this.#res.once('close', () => aborted.abort());
    return aborted.signal;
  }
}

/** The last step of a `json` route: run the handler, write its reply; errors go on to the error path. */
function answer(handler: (call: Call) => Promise<Reply> | Reply): Step {
  return (req, res, next) => {
    let reply: Promise<Reply> | Reply;
    try {
      reply = handler(new RequestCall(req as Request, res));
    } catch (err) {
      return next(err);
    }
    if (reply instanceof Promise) reply.then((r) => send(res, r, next), next);
    else send(res, reply, next);
  };
}

function answerRaw(handler: (call: Call, res: ServerResponse) => Promise<void>): Step {
  return (req, res, next) => {
    handler(new RequestCall(req as Request, res), res).catch(next);
  };
}

function send(res: ServerResponse, reply: Reply, next: (err: unknown) => void): void {
  try {
    write(res, reply);
  } catch (err) {
    next(err);
  }
}

function write(res: ServerResponse, reply: Reply): void {
  if (reply.headers) for (const [k, v] of Object.entries(reply.headers)) res.setHeader(k, v);
  if ('json' in reply) {
    sendJson(res, reply.status, reply.json);
    return;
  }
  res.statusCode = reply.status;
  res.setHeader('Content-Type', reply.type);
  res.setHeader('Content-Length', Buffer.byteLength(reply.text));
  res.end(reply.text);
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DocumentedRoute } from '@darkroom/contracts';
import type { Deps, JobService, Viewer } from '@darkroom/jobs';
import type { Router } from 'express';
import type { Station, StationRegistry } from '../auth/stations.ts';
import type { ApiMetrics } from '../metrics.ts';

/** One request as a handler sees it, whichever way it was routed. */
export interface Call {
  /** Headers, and the body stream for handlers that read one. */
  req: IncomingMessage;
  params: Record<string, string>;
  query: Record<string, unknown>;
  /** Who is calling, on routes with a station credential: a station, or the admin where allowed. */
  viewer: Viewer;
  /** The calling station; undefined for the admin credential and on routes without one. */
  station: Station | undefined;
  /** Aborted when the connection closes before the answer is sent. */
  closed(): AbortSignal;
}

/** What a handler answers: a JSON body, or text/bytes of a given type. */
export type Reply =
  | { status: number; headers?: Record<string, string>; json: unknown }
  | { status: number; headers?: Record<string, string>; type: string; text: string | Buffer };

export type Handler = (call: Call) => Promise<Reply> | Reply;
/** For answers that are not one body: a file streamed out, an event stream held open. */
export type RawHandler = (call: Call, res: ServerResponse) => Promise<void>;

/** What handlers are built with, once, when the app starts. */
export interface RouteContext {
  deps: Deps;
  stations: StationRegistry;
  jobs: JobService;
  metrics: ApiMetrics;
  /** The OpenAPI document, as served (built from the route table). */
  openapi: () => string;
}

/**
 * An entry of the route table: what the document says of the route (method, path, credential,
 * Redis check, rate limit, description) and how it is answered.
 * - `json`: a plain handler returning a `Reply`.
 * - `raw`: a handler that writes the response itself (streams).
 * - `express`: an Express router serving the documented path and what hangs under it (the
 *   dashboard's API, the docs page's static files); mounted at `mount` when given.
 */
export type Route = DocumentedRoute & { realm?: string } & (
    | { kind: 'json'; handler: (ctx: RouteContext) => Handler }
    | { kind: 'raw'; handler: (ctx: RouteContext) => RawHandler }
    | { kind: 'express'; router: (ctx: RouteContext) => Router; mount?: string }
  );

/**
 * Checks a whole path prefix gets, so that an unknown path or method under it answers as the
 * routes there do (503 while Redis is away, 401/403 without the admin credential) before its 404.
 */
export interface Scope {
  prefix: string;
  redis: boolean;
  auth: 'none' | 'admin';
}

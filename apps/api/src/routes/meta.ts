import { PIPELINE_SPECS, paramsJsonSchema, type QueueBody } from '@darkroom/contracts';
import { queueEntry } from '@darkroom/jobs';
import { unavailable } from '../http/problem.ts';
import type { Handler, RouteContext } from './route.ts';

/** GET /healthz. */
export const healthz = (): Handler => () => ({ status: 200, json: { status: 'ok' } });

/** GET /readyz. */
export function readyz({ deps }: RouteContext): Handler {
  return async () => {
    try {
      if (deps.redis.status !== 'ready') throw new Error('not connected');
      await deps.redis.ping();
    } catch {
      throw unavailable('the queue store is unreachable');
    }
    return { status: 200, json: { status: 'ready' } };
  };
}

/** GET /v1/pipelines. */
export function listPipelines(): Handler {
  // Built once: the catalogue does not change while the process runs.
  const pipelines = {
    pipelines: Object.values(PIPELINE_SPECS).map((s) => ({
      name: s.name,
      description: s.description,
      acceptsImage: s.acceptsImage,
      params: paramsJsonSchema(s),
    })),
  };
  return () => ({ status: 200, json: pipelines });
}

/** GET /v1/queue. */
export function getQueue({ deps, jobs }: RouteContext): Handler {
  return async ({ station }) => {
    const all = await deps.stats.all();
    const entries = await Promise.all(deps.queues.all().map((q) => queueEntry(q, all.get(q.name))));
    const { limits } = deps.config;
    const body: QueueBody = {
      pipelines: entries,
      limits: {
        maxUploadBytes: limits.maxUploadBytes,
        maxImageEdge: limits.maxImageEdge,
        maxImagePixels: limits.maxImagePixels,
        maxQueueSize: limits.maxQueueSize,
      },
    };
    if (station) {
      body.limits.station = {
        name: station.name,
        maxPending: station.maxPending,
        maxPriority: station.maxPriority,
        pending: await jobs.pendingCount(station.name),
      };
    }
    return { status: 200, json: body };
  };
}

/** GET /metrics (the metrics token, when set, is checked before). */
export function scrapeMetrics({ metrics }: RouteContext): Handler {
  return async () => {
    return { status: 200, type: metrics.registry.contentType, text: await metrics.scrape() };
  };
}

import {
  AGED_PRIORITY,
  PIPELINE_SPECS,
  type PipelineQueueInfo,
  PRIORITIES,
  paramsJsonSchema,
  priorityRank,
  type QueueBody,
} from '@darkroom/contracts';
import type { DarkroomQueue, Deps, JobService } from '@darkroom/jobs';
import { Router } from 'express';
import { requireStation } from '../auth/middleware.ts';
import type { StationRegistry } from '../auth/stations.ts';
import { handler } from '../http/async.ts';
import { unavailable } from '../http/problem.ts';

export function metaRouter(deps: Deps, stations: StationRegistry, jobs: JobService): Router {
  const r = Router();
  // Built once: the catalogue does not change while the process runs.
  const pipelines = {
    pipelines: Object.values(PIPELINE_SPECS).map((s) => ({
      name: s.name,
      description: s.description,
      acceptsImage: s.acceptsImage,
      params: paramsJsonSchema(s),
    })),
  };

  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  r.get(
    '/readyz',
    handler(async (_req, res) => {
      try {
        if (deps.redis.status !== 'ready') throw new Error('not connected');
        await deps.redis.ping();
      } catch {
        throw unavailable('the queue store is unreachable');
      }
      res.json({ status: 'ready' });
    }),
  );

  r.get('/v1/pipelines', requireStation(stations, { allowAdmin: true }), (_req, res) => {
    res.json(pipelines);
  });

  r.get(
    '/v1/queue',
    requireStation(stations, { allowAdmin: true }),
    handler(async (req, res) => {
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
      if (req.station) {
        body.limits.station = {
          name: req.station.name,
          maxPending: req.station.maxPending,
          maxPriority: req.station.maxPriority,
          pending: await jobs.pendingCount(req.station.name),
        };
      }
      res.json(body);
    }),
  );

  return r;
}

/**
 * Waiting jobs per station priority class, counted by the class a job waits in now: aging moves
 * old jobs up, and those past the maximum wait (BullMQ's reserved class) count as `critical`.
 */
export async function waitingByPriority(queue: DarkroomQueue): Promise<PipelineQueueInfo['waiting']> {
  const perPriority = await queue.getCountsPerPriority([AGED_PRIORITY, ...PRIORITIES.map(priorityRank)]);
  const at = (p: number) => perPriority[String(p)] ?? 0;
  const waiting = {
    critical: at(AGED_PRIORITY) + at(priorityRank('critical')),
    high: at(priorityRank('high')),
    normal: at(priorityRank('normal')),
    low: at(priorityRank('low')),
    total: 0,
  };
  waiting.total = waiting.critical + waiting.high + waiting.normal + waiting.low;
  return waiting;
}

export async function queueEntry(
  queue: DarkroomQueue,
  stats: { avgProcessingMs: number | null; throughputPerMinute: number | null; workers: PipelineQueueInfo['workers'] } | undefined,
): Promise<PipelineQueueInfo> {
  const [counts, waiting, paused] = await Promise.all([
    queue.getJobCounts('active', 'completed', 'failed'),
    waitingByPriority(queue),
    queue.isPaused(),
  ]);
  return {
    name: queue.name,
    paused,
    waiting,
    active: counts.active ?? 0,
    completed: counts.completed ?? 0,
    failed: counts.failed ?? 0,
    workers: stats?.workers ?? [],
    avgProcessingMs: stats?.avgProcessingMs ?? null,
    throughputPerMinute: stats?.throughputPerMinute ?? null,
  };
}

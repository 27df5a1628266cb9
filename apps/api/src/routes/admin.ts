import type { Deps } from '@darkroom/jobs';
import { Router } from 'express';
import { requireAdmin } from '../auth/middleware.ts';
import type { StationRegistry } from '../auth/stations.ts';
import { handler } from '../http/async.ts';
import { notFound } from '../http/problem.ts';
import { queueEntry } from './meta.ts';

/** Operator routes under /v1/admin, behind the admin credential. Pause and resume are idempotent. */
export function adminRouter(deps: Deps, stations: StationRegistry): Router {
  const r = Router();
  r.use('/v1/admin', requireAdmin(stations));
  for (const action of ['pause', 'resume'] as const) {
    r.post(
      `/v1/admin/pipelines/:name/${action}`,
      handler(async (req, res) => {
        const queue = deps.queues.get(String(req.params.name));
        if (!queue) throw notFound(`unknown pipeline "${String(req.params.name).slice(0, 64)}"`);
        await (action === 'pause' ? queue.pause() : queue.resume());
        deps.logger.info({ pipeline: queue.name }, action === 'pause' ? 'pipeline paused' : 'pipeline resumed');
        res.json(await queueEntry(queue, await deps.stats.get(queue.name)));
      }),
    );
  }
  return r;
}

import { queueEntry } from '@darkroom/jobs';
import { notFound } from '../http/problem.ts';
import type { Handler, RouteContext } from './route.ts';

/** POST /v1/admin/pipelines/{name}/pause and …/resume. Idempotent. */
/** POST /v1/admin/pipelines/{name}/purge: every job of the pipeline that has not started, cancelled. */
export const purgePipeline =
  ({ deps, jobs }: RouteContext): Handler =>
  async ({ params }) => {
    const queue = deps.queues.get(String(params.name));
    if (!queue) throw notFound(`unknown pipeline "${String(params.name).slice(0, 64)}"`);
    return { status: 200, json: { pipeline: queue.name, cancelled: await jobs.purge(queue) } };
  };

export const pipelineAction =
  (action: 'pause' | 'resume') =>
  ({ deps }: RouteContext): Handler =>
  async ({ params }) => {
    const queue = deps.queues.get(String(params.name));
    if (!queue) throw notFound(`unknown pipeline "${String(params.name).slice(0, 64)}"`);
    await (action === 'pause' ? queue.pause() : queue.resume());
    deps.logger.info({ pipeline: queue.name }, action === 'pause' ? 'pipeline paused' : 'pipeline resumed');
    return { status: 200, json: await queueEntry(queue, await deps.stats.get(queue.name)) };
  };

import type { PipelineQueueInfo } from '@darkroom/contracts';
import { type DarkroomQueue, type Deps, queueEntry } from '@darkroom/jobs';
import { notFound } from '../http/problem.ts';
import type { Handler, RouteContext } from './route.ts';

export type PipelineAction = 'pause' | 'resume';

/**
 * Pauses or resumes a pipeline and answers its entry of `GET /v1/queue`. The one way both the
 * admin routes and the dashboard do it, so that a pause is logged and reported alike whichever
 * of them an operator used.
 */
export async function setPipelinePaused(
  deps: Deps,
  queue: DarkroomQueue,
  action: PipelineAction,
  via: 'api' | 'dashboard',
): Promise<PipelineQueueInfo> {
  await (action === 'pause' ? queue.pause() : queue.resume());
  deps.logger.info({ pipeline: queue.name, via }, action === 'pause' ? 'pipeline paused' : 'pipeline resumed');
  return queueEntry(queue, await deps.stats.get(queue.name));
}

/** POST /v1/admin/pipelines/{name}/purge: every job of the pipeline that has not started, cancelled. */
export const purgePipeline =
  ({ deps, jobs }: RouteContext): Handler =>
  async ({ params }) => {
    const queue = deps.queues.get(String(params.name));
    if (!queue) throw notFound(`unknown pipeline "${String(params.name).slice(0, 64)}"`);
    return { status: 200, json: { pipeline: queue.name, cancelled: await jobs.purge(queue) } };
  };

/** POST /v1/admin/pipelines/{name}/pause and …/resume. Idempotent. */
export const pipelineAction =
  (action: PipelineAction) =>
  ({ deps }: RouteContext): Handler =>
  async ({ params }) => {
    const queue = deps.queues.get(String(params.name));
    if (!queue) throw notFound(`unknown pipeline "${String(params.name).slice(0, 64)}"`);
    return { status: 200, json: await setPipelinePaused(deps, queue, action, 'api') };
  };

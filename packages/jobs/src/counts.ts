import { AGED_PRIORITY, type PipelineQueueInfo, PRIORITIES, priorityRank } from '@darkroom/contracts';
import type { DarkroomQueue } from './queues.ts';

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

/** A pipeline's entry in `GET /v1/queue`: its counts, whether it is paused, its workers and run times. */
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

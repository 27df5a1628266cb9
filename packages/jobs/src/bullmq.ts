import type { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';

/*
 * What Darkroom relies on of BullMQ beyond its public API, in one place. BullMQ is pinned to an
 * exact version; test/bullmq-internals.test.ts checks each of these against the installed one,
 * so an upgrade that moves any of them fails there, loudly, and not in production.
 */

/** Prioritized jobs are scored `priority · 2^32 + counter`: one class spans this many scores, in arrival order. */
export const PRIORITY_SCORE_SPAN = 0x100000000;

/** The lowest and highest score of priority class `priority` in the `prioritized` sorted set. */
export function priorityScoreRange(priority: number): [number, number] {
  return [priority * PRIORITY_SCORE_SPAN, (priority + 1) * PRIORITY_SCORE_SPAN - 1];
}

/** The queue's own connection, on which BullMQ's scripts run (commands sent on it keep their order). */
export async function queueClient(queue: Queue): Promise<Redis> {
  return (await queue.getBackend().client) as unknown as Redis;
}

/** Jobs a worker is processing right now: those its lock manager keeps locks for (a protected member). */
export function jobsInProgress(worker: Worker): number {
  return (worker as unknown as { lockManager?: { getActiveJobCount(): number } }).lockManager?.getActiveJobCount() ?? 0;
}

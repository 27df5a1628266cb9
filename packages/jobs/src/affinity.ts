import type { Redis } from 'ioredis';
import { luaCommand } from './lua.ts';

/*
 * Warm models first (lua/affinity-prefer.lua): before a free device slot takes a pipeline's next
 * job, a job of a model the worker has loaded is moved in front when the next one would need a
 * model load. BullMQ's worker takes from the front of one queue per pipeline, so choosing a job
 * means putting it there just before taking; another worker taking it in between only costs
 * that worker the preference, never a job.
 */

/** How many waiting jobs of the next job's class are looked at for a warm one. */
export const AFFINITY_SCAN = 64;

export interface AffinityOptions {
  /** Passed over this long (from the first time), a cold job is taken by the next free slot that can run it. */
  maxBypassMs: number;
}

/** `queue`: the pipeline's Queue or Worker (anything that names its keys). */
export async function preferWarm(
  redis: Redis,
  queue: { toKey(type: string): string },
  warm: readonly string[],
  opts: AffinityOptions,
): Promise<string | null> {
  if (warm.length === 0) return null;
  const res = await luaCommand(redis, 'affinity-prefer', 1)(
    queue.toKey('prioritized'),
    queue.toKey(''),
    Date.now(),
    opts.maxBypassMs,
    AFFINITY_SCAN,
    ...warm,
  );
  return typeof res === 'string' ? res : null;
}

import type { Redis } from 'ioredis';
import { luaCommand } from './lua.ts';
import type { DarkroomQueue } from './queues.ts';

/** Ends a job that has not started as failed with `failedReason` (lua/end-waiting.lua); false when it was not waiting. */
export async function endWaitingJob(redis: Redis, queue: DarkroomQueue, id: string, failedReason: string): Promise<boolean> {
  const k = (s: string) => queue.toKey(s);
  const res = await luaCommand(redis, 'end-waiting', 8)(
    k('prioritized'),
    k('wait'),
    k('delayed'),
    k('paused'),
    k('failed'),
    k(id),
    k('events'),
    k('meta'),
    id,
    failedReason,
    Date.now(),
  );
  return res === 1;
}

import type { Redis } from 'ioredis';
import { queueClient } from './bullmq.ts';
import { luaCommand } from './lua.ts';
import type { DarkroomQueue } from './queues.ts';

/*
 * Fair turns between stations inside a priority class (start-time fair queueing over BullMQ's
 * prioritized set; see lua/fair-place.lua). A station's weight sets how many turns it gets:
 * one job of weight 2 costs half the virtual time of one of weight 1. Priorities still come
 * first (the score's high part), and within a station jobs keep their order.
 */

/** Virtual time one job costs at weight 1; a weight divides it (2^10: weights up to 1024 stay exact enough). */
export const FAIR_UNIT = 1024;
/** Tags live above this; BullMQ's own arrival counter, used for jobs BullMQ puts back itself, stays below. */
export const FAIR_FLOOR = 2 ** 30;
/** Where a class's virtual time starts: room below it for the jobs aging moves to the front. */
export const FAIR_START = FAIR_FLOOR + 2 ** 24;
/** Past this virtual time a class's tags are moved back (maintenance), long before they reach 2^32. */
export const FAIR_REBASE_AT = 2 ** 31 + 2 ** 30;

/** The queue's fair-share state, beside its BullMQ keys (same hash slot in a cluster). */
export function fairStateKey(queue: DarkroomQueue): string {
  return queue.toKey('darkroom-fair');
}

export function fairIncrement(weight: number): number {
  return Math.max(1, Math.round(FAIR_UNIT / weight));
}

/** The command placing a just-added job at its turn; sent on the connection that added it, right after. */
export function fairPlace(client: Redis, queue: DarkroomQueue, id: string, priority: number, station: string, weight: number) {
  return luaCommand(client, 'fair-place', 2)(
    queue.toKey('prioritized'),
    fairStateKey(queue),
    id,
    priority,
    station,
    fairIncrement(weight),
  ) as Promise<number | null>;
}

/** After aging moved a job to class `priority`: to the front of that class. */
export async function fairFront(queue: DarkroomQueue, id: string, priority: number): Promise<boolean> {
  const client = await queueClient(queue);
  return (await luaCommand(client, 'fair-front', 2)(queue.toKey('prioritized'), fairStateKey(queue), id, priority)) === 1;
}

/** Moves a class's tags back when its virtual time nears the end of its span; the number of jobs moved. */
export async function fairRebase(redis: Redis, queue: DarkroomQueue, priority: number): Promise<number> {
  const v = Number(await redis.hget(fairStateKey(queue), `v:${priority}`));
  if (!(v > FAIR_REBASE_AT)) return 0;
  return Number(await luaCommand(redis, 'fair-rebase', 2)(queue.toKey('prioritized'), fairStateKey(queue), priority, v - FAIR_START));
}

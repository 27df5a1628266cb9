import type { Redis } from 'ioredis';
import type { DarkroomQueue } from './queues.ts';

/*
 * Ends a job that has not started — waiting, prioritized or delayed for a retry — as failed, from
 * outside a worker: cancelling a queued job, expiring one past its time-to-live. It stays a
 * BullMQ job in the failed set (status reads, Bull Board and retention all see it) and a
 * `failed` event goes to the queue's event stream like any other failure. One script, so a
 * worker taking the job at the same moment either gets it first (the script answers 0) or never.
 *
 * KEYS[1] prioritized  KEYS[2] wait  KEYS[3] delayed  KEYS[4] paused (legacy list)
 * KEYS[5] failed       KEYS[6] job hash  KEYS[7] events stream  KEYS[8] meta
 * ARGV[1] job id  ARGV[2] failedReason  ARGV[3] now (ms)
 * Returns 1 when the job was ended, 0 when it was not waiting (active, finished or gone).
 */
const END_WAITING_LUA = `
local rcall = redis.call
local id = ARGV[1]
local removed = rcall("ZREM", KEYS[1], id) + rcall("LREM", KEYS[2], 0, id) + rcall("ZREM", KEYS[3], id) + rcall("LREM", KEYS[4], 0, id)
if removed == 0 or rcall("EXISTS", KEYS[6]) == 0 then return 0 end
rcall("HSET", KEYS[6], "failedReason", ARGV[2], "finishedOn", ARGV[3])
rcall("ZADD", KEYS[5], ARGV[3], id)
local maxEvents = rcall("HGET", KEYS[8], "opts.maxLenEvents") or 10000
rcall("XADD", KEYS[7], "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId", id, "failedReason", ARGV[2], "prev", "waiting")
return 1
`;

type WithEndWaiting = Redis & {
  darkroomEndWaiting(...args: (string | number)[]): Promise<number>;
};

export async function endWaitingJob(redis: Redis, queue: DarkroomQueue, id: string, failedReason: string): Promise<boolean> {
  const r = redis as WithEndWaiting;
  if (typeof r.darkroomEndWaiting !== 'function') {
    redis.defineCommand('darkroomEndWaiting', { numberOfKeys: 8, lua: END_WAITING_LUA });
  }
  const k = (s: string) => queue.toKey(s);
  const res = await r.darkroomEndWaiting(
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

import type { Redis } from 'ioredis';
import { StationBusy } from './errors.ts';
import { luaCommand } from './lua.ts';
import type { Station } from './station.ts';
import type { PipelineStats } from './stats.ts';

/*
 * A station's share of the queue: waiting + active jobs (maxPending), and the queue's own room
 * (DARKROOM_MAX_QUEUE_SIZE). A refusal carries a retry time drawn from the station's own backlog
 * and the pipeline's drain rate, with jitter so stations refused together do not retry in lockstep.
 */

export type Admission = 'admitted' | 'queue_full' | 'station_full';

/**
 * One round trip (lua/admit.lua): checks the queue's room and the station's pending limit and,
 * when both have room, claims a pending slot for `id`. Only for limits that are set; with none,
 * the caller adds the id in the same write as the job.
 */
export async function admit(
  redis: Redis,
  keys: { pending: string; prioritized: string; wait: string },
  id: string,
  limits: { maxPending: number | null; maxQueue: number | null },
): Promise<Admission> {
  const res = await luaCommand(redis, 'admit', 3)(
    keys.pending,
    keys.prioritized,
    keys.wait,
    id,
    limits.maxPending ?? 0,
    limits.maxQueue ?? 0,
  );
  return res === 1 ? 'admitted' : res === -1 ? 'queue_full' : 'station_full';
}

/** Seconds with ±20 % jitter, at least 1. */
export function jittered(seconds: number, random = Math.random): number {
  return Math.max(1, Math.round(seconds * (0.8 + 0.4 * random())));
}

/**
 * Until one of the station's own jobs should finish: its backlog over the limit, times the
 * pipeline's average run time, shared among the workers serving it.
 */
export function backlogRetryAfter(over: number, stats: PipelineStats): number {
  const perJob = stats.avgProcessingMs !== null && stats.slots > 0 ? stats.avgProcessingMs / stats.slots / 1000 : 5;
  return jittered(Math.min(300, Math.max(1, perJob * Math.max(1, over))));
}

export function tooManyPending(station: Station, pending: number, stats: PipelineStats): StationBusy {
  return new StationBusy(
    `station ${station.name} has ${pending} jobs waiting or running, its limit is ${station.maxPending}; retry when one finishes`,
    { retryAfterSeconds: backlogRetryAfter(pending - (station.maxPending ?? 0) + 1, stats) },
  );
}

import type { ServerResponse } from 'node:http';
import { type PipelineStats, sysKeys } from '@darkroom/core';
import type { NextFunction, Request, Response } from 'express';
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Station } from './auth/stations.ts';
import { HttpError } from './http/problem.ts';

/*
 * A station's own limits: waiting + active jobs (maxPending) and requests per minute. Both answer
 * 429 `rate_limited` with a Retry-After drawn from the station's own backlog and the pipeline's
 * drain rate, with jitter so stations that were refused together do not retry in lockstep.
 */

/**
 * KEYS[1] the station's pending set  KEYS[2] the queue's prioritized set  KEYS[3] its wait list
 * ARGV[1] job id  ARGV[2] the station's pending limit (0: none)  ARGV[3] the queue's limit (0: none)
 * Room in the queue first, then in the station's share; adds the id when both have room.
 * Returns 1 if added, -1 if the queue is full, 0 if the station is.
 */
const ADMIT_LUA = `
local maxQueue = tonumber(ARGV[3])
if maxQueue > 0 and redis.call("ZCARD", KEYS[2]) + redis.call("LLEN", KEYS[3]) >= maxQueue then return -1 end
local maxPending = tonumber(ARGV[2])
if maxPending > 0 and redis.call("SCARD", KEYS[1]) >= maxPending then return 0 end
redis.call("SADD", KEYS[1], ARGV[1])
return 1
`;

export type Admission = 'admitted' | 'queue_full' | 'station_full';

type WithAdmit = Redis & {
  darkroomAdmit(pending: string, prioritized: string, wait: string, id: string, maxPending: number, maxQueue: number): Promise<number>;
};

/**
 * One round trip: checks the queue's room and the station's pending limit and, when both have
 * room, claims a pending slot for `id`. Only for limits that are set; with none, the caller adds
 * the id in the same transaction as the job.
 */
export async function admit(
  redis: Redis,
  keys: { pending: string; prioritized: string; wait: string },
  id: string,
  limits: { maxPending: number | null; maxQueue: number | null },
): Promise<Admission> {
  const r = redis as WithAdmit;
  if (typeof r.darkroomAdmit !== 'function') redis.defineCommand('darkroomAdmit', { numberOfKeys: 3, lua: ADMIT_LUA });
  const res = await r.darkroomAdmit(keys.pending, keys.prioritized, keys.wait, id, limits.maxPending ?? 0, limits.maxQueue ?? 0);
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

export function tooManyPending(station: Station, pending: number, stats: PipelineStats): HttpError {
  return new HttpError(
    429,
    'rate_limited',
    `station ${station.name} has ${pending} jobs waiting or running, its limit is ${station.maxPending}; retry when one finishes`,
    { headers: { 'Retry-After': String(backlogRetryAfter(pending - (station.maxPending ?? 0) + 1, stats)) } },
  );
}

/** Per-station requests per minute, counted in Redis so every API instance shares the budget. */
export class StationRateLimit {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #limiters = new Map<number, RateLimiterRedis>();

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  #limiterFor(points: number): RateLimiterRedis {
    let l = this.#limiters.get(points);
    if (!l) {
      l = new RateLimiterRedis({
        storeClient: this.#redis,
        keyPrefix: `${sysKeys(this.#prefix).rateLimit}:${points}`,
        points,
        duration: 60,
      });
      this.#limiters.set(points, l);
    }
    return l;
  }

  /** Counts one request of `station` and sets the RateLimit headers; 429 when over its budget. */
  async consume(station: Station | undefined, res: ServerResponse): Promise<void> {
    const rpm = station?.requestsPerMinute;
    if (!station || !rpm) return;
    try {
      const r = await this.#limiterFor(rpm).consume(station.name);
      res.setHeader('RateLimit-Policy', `${rpm};w=60`);
      res.setHeader('RateLimit', `limit=${rpm}, remaining=${r.remainingPoints}, reset=${Math.ceil(r.msBeforeNext / 1000)}`);
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        const wait = jittered(Math.max(1, err.msBeforeNext / 1000));
        throw new HttpError(429, 'rate_limited', `station ${station.name} is over its limit of ${rpm} requests per minute`, {
          headers: { 'Retry-After': String(wait) },
        });
      }
      throw err;
    }
  }

  middleware() {
    return (req: Request, res: Response, next: NextFunction) => {
      if (!req.station?.requestsPerMinute) return next();
      this.consume(req.station, res).then(() => next(), next);
    };
  }
}

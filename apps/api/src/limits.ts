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
 * KEYS[1] the station's pending set  ARGV[1] job id  ARGV[2] limit
 * Adds the id when the set holds fewer than `limit` ids. Returns 1 if added, 0 if full.
 */
const CLAIM_PENDING_LUA = `
if redis.call("SCARD", KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call("SADD", KEYS[1], ARGV[1])
return 1
`;

type WithClaim = Redis & { darkroomClaimPending(key: string, id: string, limit: number): Promise<number> };

export async function claimPendingSlot(redis: Redis, prefix: string, station: string, id: string, limit: number | null): Promise<boolean> {
  const key = sysKeys(prefix).pending(station);
  if (limit === null) {
    await redis.sadd(key, id);
    return true;
  }
  const r = redis as WithClaim;
  if (typeof r.darkroomClaimPending !== 'function')
    redis.defineCommand('darkroomClaimPending', { numberOfKeys: 1, lua: CLAIM_PENDING_LUA });
  return (await r.darkroomClaimPending(key, id, limit)) === 1;
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
export function stationRateLimit(redis: Redis, prefix: string) {
  const limiters = new Map<number, RateLimiterRedis>();
  const limiterFor = (points: number) => {
    let l = limiters.get(points);
    if (!l) {
      l = new RateLimiterRedis({ storeClient: redis, keyPrefix: `${sysKeys(prefix).rateLimit}:${points}`, points, duration: 60 });
      limiters.set(points, l);
    }
    return l;
  };
  return async (req: Request, res: Response, next: NextFunction) => {
    const rpm = req.station?.requestsPerMinute;
    if (!req.station || !rpm) return next();
    try {
      const r = await limiterFor(rpm).consume(req.station.name);
      res.setHeader('RateLimit-Policy', `${rpm};w=60`);
      res.setHeader('RateLimit', `limit=${rpm}, remaining=${r.remainingPoints}, reset=${Math.ceil(r.msBeforeNext / 1000)}`);
      next();
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        const wait = jittered(Math.max(1, err.msBeforeNext / 1000));
        return next(
          new HttpError(429, 'rate_limited', `station ${req.station.name} is over its limit of ${rpm} requests per minute`, {
            headers: { 'Retry-After': String(wait) },
          }),
        );
      }
      next(err);
    }
  };
}

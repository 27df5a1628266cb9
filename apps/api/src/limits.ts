import type { ServerResponse } from 'node:http';
import { jittered, StationBusy, sysKeys } from '@darkroom/jobs';
import type { NextFunction, Request, Response } from 'express';
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Station } from './auth/stations.ts';

/*
 * A station's requests per minute, answered like its pending limit (StationBusy, jittered
 * Retry-After). The pending limit itself is admission, in the job service.
 */

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
        throw new StationBusy(`station ${station.name} is over its limit of ${rpm} requests per minute`, { retryAfterSeconds: wait });
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

import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.ts';

/*
 * Two kinds of connection (STYLE: producers fail fast, workers wait):
 * - `producer`: the API's. No offline queue and one try per command, so a Redis outage answers
 *   503 at once instead of hanging a station's request; it reconnects by itself in the background.
 * - `blocking`: workers'. Commands wait through an outage (`maxRetriesPerRequest: null`), as
 *   BullMQ requires for its blocking calls.
 */
export function createRedis(url: string, kind: 'producer' | 'blocking', logger?: Logger): Redis {
  const common: RedisOptions = {
    lazyConnect: false,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 2000),
    // Never let a connection error crash the process or leak to a client; logged once per change.
    reconnectOnError: () => false,
  };
  const opts: RedisOptions =
    kind === 'producer'
      ? { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 2000, connectTimeout: 2000 }
      : { ...common, maxRetriesPerRequest: null, enableReadyCheck: true };
  const redis = new Redis(url, opts);
  let down = false;
  redis.on('error', (err) => {
    if (!down) logger?.warn({ err: err.message }, 'redis unavailable; retrying');
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger?.info('redis connection restored');
    down = false;
  });
  return redis;
}

/** BullMQ needs this policy: with eviction it loses jobs silently. */
export async function checkEvictionPolicy(redis: Redis, logger: Logger): Promise<void> {
  try {
    const res = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = res[1];
    if (policy && policy !== 'noeviction') {
      logger.warn({ policy }, `redis maxmemory-policy is "${policy}"; it must be "noeviction" or jobs can be lost`);
    }
  } catch {
    // CONFIG may be disabled on managed Redis; nothing to check then.
  }
}

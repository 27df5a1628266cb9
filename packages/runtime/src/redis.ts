import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';

/** Where Redis is: a URL, or the master Sentinels name (the URL then gives only credentials, database and TLS). */
export type RedisTarget = Pick<Config['redis'], 'url'> &
  Partial<Pick<Config['redis'], 'sentinels' | 'sentinelName' | 'sentinelPassword' | 'clusterNodes'>>;

export type RedisKind = 'producer' | 'blocking';

/*
 * Every connection Darkroom or BullMQ opens is built from these options, so each one finds the
 * master the same way and follows a failover by itself. Two kinds (STYLE: producers fail fast,
 * workers wait):
 * - `producer`: the API's. No offline queue and one try per command, so a Redis outage answers
 *   503 at once instead of hanging a station's request; it reconnects by itself in the background.
 * - `blocking`: workers' and every blocking reader's. Commands wait through an outage
 *   (`maxRetriesPerRequest: null`), as BullMQ requires for its blocking calls.
 *
 * With Sentinels, a lost connection asks them for the master again on each retry, so after a
 * failover every connection lands on the promoted replica. A master demoted under a connection
 * answers writes with READONLY: that reconnects too.
 */
export function redisOptions(target: RedisTarget | string, kind: RedisKind): RedisOptions {
  const t = typeof target === 'string' ? { url: target } : target;
  const url = new URL(t.url);
  const db = Number(url.pathname.replace(/^\//, '') || 0);
  const common: RedisOptions = {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(db ? { db } : {}),
    ...(url.protocol === 'rediss:' ? { tls: { servername: url.hostname } } : {}),
    lazyConnect: false,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 2000),
    // A demoted master: find the new one. Anything else never crashes the process or reaches a client.
    reconnectOnError: (err) => (/^READONLY/.test(err.message) ? 1 : false),
  };
  const where: RedisOptions = t.sentinels?.length
    ? {
        sentinels: t.sentinels.map((s) => ({ host: s.host, port: s.port })),
        name: t.sentinelName ?? 'mymaster',
        ...(t.sentinelPassword ? { sentinelPassword: t.sentinelPassword } : {}),
        sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
      }
    : { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) };
  const kindOpts: RedisOptions =
    kind === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 2000, connectTimeout: 2000 }
      : { maxRetriesPerRequest: null, enableReadyCheck: true };
  return { ...common, ...where, ...kindOpts };
}

/**
 * A connection of the given kind. On a Redis Cluster it is an ioredis Cluster, typed as the
 * Redis it stands in for: it answers the same commands, routed by key (every Darkroom key is in
 * one slot, see the prefix in config.ts). Nothing that needs one node's connection (WAIT, the
 * socket) runs on a cluster.
 */
export function createRedis(target: RedisTarget | string, kind: RedisKind, logger?: Logger): Redis {
  const t = typeof target === 'string' ? { url: target } : target;
  const redis = t.clusterNodes?.length ? createCluster(t, kind) : new Redis(redisOptions(t, kind));
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

function createCluster(t: RedisTarget, kind: RedisKind): Redis {
  const { host: _h, port: _p, db: _d, retryStrategy: _r, enableOfflineQueue, ...node } = redisOptions(t.url, kind);
  const cluster = new Cluster(
    t.clusterNodes!.map((n) => ({ host: n.host, port: n.port })),
    {
      redisOptions: node,
      enableOfflineQueue: enableOfflineQueue ?? true,
      enableReadyCheck: true,
      clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 2000),
      // Moved slots and failed-over masters: follow them.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      slotsRefreshTimeout: 2000,
    },
  );
  return cluster as unknown as Redis;
}

/**
 * BullMQ needs this policy: with eviction it loses jobs silently. Checked on every (re)connect, so
 * a master promoted by Sentinel is checked too.
 */
export function watchEvictionPolicy(redis: Redis, logger: Logger): void {
  redis.on('ready', () => void checkEvictionPolicy(redis, logger));
  if (redis.status === 'ready') void checkEvictionPolicy(redis, logger);
}

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

import type { WorkerInfo } from '@darkroom/contracts';
import type { Redis } from 'ioredis';
import { sysKeys } from './keys.ts';

/*
 * Run-time history per pipeline (recent durations, completions per minute) and worker
 * heartbeats. Workers write; the API reads through a short cache so status and queue lookups
 * cost no extra round trips on the hot path.
 */

const DURATION_SAMPLES = 100;
/** A worker whose heartbeat is older than this is not counted as serving. */
export const WORKER_STALE_MS = 20_000;

const minuteOf = (ms: number) => Math.floor(ms / 60_000);

export async function recordCompletion(redis: Redis, prefix: string, pipeline: string, durationMs: number): Promise<void> {
  const keys = sysKeys(prefix);
  const bucket = keys.doneBucket(pipeline, minuteOf(Date.now()));
  await redis
    .multi()
    .lpush(keys.durations(pipeline), Math.round(durationMs))
    .ltrim(keys.durations(pipeline), 0, DURATION_SAMPLES - 1)
    .incr(bucket)
    .expire(bucket, 180)
    .exec();
}

export interface WorkerHeartbeat extends WorkerInfo {
  concurrency: number;
  /** Longest event-loop stall since the last heartbeat: past half the lock duration a job could be run twice. */
  eventLoopDelayMaxMs?: number;
}

export async function writeHeartbeat(redis: Redis, prefix: string, hb: WorkerHeartbeat): Promise<void> {
  await redis.hset(sysKeys(prefix).workers, hb.name, JSON.stringify(hb));
}

export async function removeHeartbeat(redis: Redis, prefix: string, name: string): Promise<void> {
  await redis.hdel(sysKeys(prefix).workers, name);
}

export interface PipelineStats {
  avgProcessingMs: number | null;
  throughputPerMinute: number | null;
  workers: WorkerInfo[];
  /** Jobs the live workers of this pipeline can run at once. */
  slots: number;
}

export class StatsReader {
  readonly #redis: Redis;
  readonly #keys: ReturnType<typeof sysKeys>;
  readonly #ttlMs: number;
  #cache: { at: number; value: Promise<Map<string, PipelineStats>> } | undefined;
  readonly #pipelines: readonly string[];

  constructor(redis: Redis, prefix: string, pipelines: readonly string[], ttlMs = 1000) {
    this.#redis = redis;
    this.#keys = sysKeys(prefix);
    this.#ttlMs = ttlMs;
    this.#pipelines = pipelines;
  }

  async get(pipeline: string): Promise<PipelineStats> {
    const all = await this.all();
    return all.get(pipeline) ?? { avgProcessingMs: null, throughputPerMinute: null, workers: [], slots: 0 };
  }

  all(): Promise<Map<string, PipelineStats>> {
    const now = Date.now();
    if (!this.#cache || now - this.#cache.at > this.#ttlMs) {
      const value = this.#load(now);
      this.#cache = { at: now, value };
      // A failed load must not be served from the cache.
      value.catch(() => {
        if (this.#cache?.value === value) this.#cache = undefined;
      });
    }
    return this.#cache.value;
  }

  async #load(now: number): Promise<Map<string, PipelineStats>> {
    const minute = minuteOf(now);
    const multi = this.#redis.multi().hgetall(this.#keys.workers);
    for (const p of this.#pipelines) {
      multi.lrange(this.#keys.durations(p), 0, -1);
      multi.mget(this.#keys.doneBucket(p, minute - 1), this.#keys.doneBucket(p, minute));
    }
    const res = await multi.exec();
    if (!res) throw new Error('stats transaction aborted');
    const workersRaw = (res[0]?.[1] ?? {}) as Record<string, string>;
    const live: WorkerHeartbeat[] = [];
    for (const raw of Object.values(workersRaw)) {
      try {
        const hb = JSON.parse(raw) as WorkerHeartbeat;
        if (now - Date.parse(hb.lastSeen) <= WORKER_STALE_MS) live.push(hb);
      } catch {
        // a malformed entry is ignored; its worker rewrites it within seconds
      }
    }
    const out = new Map<string, PipelineStats>();
    this.#pipelines.forEach((p, idx) => {
      const durations = ((res[1 + idx * 2]?.[1] ?? []) as string[]).map(Number);
      const [prev, cur] = ((res[2 + idx * 2]?.[1] ?? []) as (string | null)[]).map((v) => Number(v ?? 0));
      const workers = live.filter((w) => w.pipelines.includes(p));
      const avg = durations.length > 0 ? Math.round(durations.reduce((a, b) => a + b, 0) / durations.length) : null;
      // The last 60 s, straddling two minute buckets: the previous one weighted by its overlap.
      const frac = (now % 60_000) / 60_000;
      const throughput = durations.length > 0 ? Math.round(((prev ?? 0) * (1 - frac) + (cur ?? 0)) * 10) / 10 : null;
      out.set(p, {
        avgProcessingMs: avg,
        throughputPerMinute: throughput,
        workers: workers.map(({ concurrency: _c, eventLoopDelayMaxMs: _e, ...info }) => info),
        slots: workers.reduce((n, w) => n + (w.concurrency || 1), 0),
      });
    });
    return out;
  }
}

export function estimateWaitSeconds(position: number, stats: PipelineStats): number | null {
  if (stats.avgProcessingMs === null || stats.slots === 0) return null;
  return Math.ceil((position * stats.avgProcessingMs) / stats.slots / 1000);
}

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

/** A model load as a worker measured it, folded into a moving average per (pipeline, model, device kind). */
export async function recordModelLoad(
  redis: Redis,
  prefix: string,
  pipeline: string,
  model: string,
  deviceKind: string,
  ms: number,
): Promise<void> {
  const key = sysKeys(prefix).loadTimes;
  const field = `${pipeline}|${model}|${deviceKind}`;
  const prev = Number(await redis.hget(key, field));
  // Racing workers may each fold in their own sample over the same previous value: an average either way.
  const next = Number.isFinite(prev) && prev > 0 ? Math.round(prev * 0.7 + ms * 0.3) : Math.round(ms);
  await redis.hset(key, field, next);
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
  /** Recent model load time per model (ms, averaged over device kinds). */
  loadMs: Record<string, number>;
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
    return all.get(pipeline) ?? { avgProcessingMs: null, throughputPerMinute: null, workers: [], slots: 0, loadMs: {} };
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
    const multi = this.#redis.multi().hgetall(this.#keys.workers).hgetall(this.#keys.loadTimes);
    for (const p of this.#pipelines) {
      multi.lrange(this.#keys.durations(p), 0, -1);
      multi.mget(this.#keys.doneBucket(p, minute - 1), this.#keys.doneBucket(p, minute));
    }
    const res = await multi.exec();
    if (!res) throw new Error('stats transaction aborted');
    const workersRaw = (res[0]?.[1] ?? {}) as Record<string, string>;
    const loads = new Map<string, Record<string, number[]>>();
    for (const [field, value] of Object.entries((res[1]?.[1] ?? {}) as Record<string, string>)) {
      const [pipeline, model] = field.split('|');
      if (!pipeline || model === undefined) continue;
      const byModel = loads.get(pipeline) ?? {};
      byModel[model] = [...(byModel[model] ?? []), Number(value)];
      loads.set(pipeline, byModel);
    }
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
      const durations = ((res[2 + idx * 2]?.[1] ?? []) as string[]).map(Number);
      const [prev, cur] = ((res[3 + idx * 2]?.[1] ?? []) as (string | null)[]).map((v) => Number(v ?? 0));
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
        loadMs: Object.fromEntries(
          Object.entries(loads.get(p) ?? {}).map(([m, v]) => [m, Math.round(v.reduce((a, b) => a + b, 0) / v.length)]),
        ),
      });
    });
    return out;
  }
}

/**
 * position × average run time ÷ slots; plus the model's recent load time when no live worker has
 * the job's model loaded (a worker will have to load it first).
 */
export function estimateWaitSeconds(position: number, stats: PipelineStats, pipeline?: string, model?: string): number | null {
  if (stats.avgProcessingMs === null || stats.slots === 0) return null;
  const queued = (position * stats.avgProcessingMs) / stats.slots;
  const warm = model === undefined || stats.workers.some((w) => pipeline && w.warmModels?.[pipeline]?.includes(model));
  const load = warm ? 0 : (stats.loadMs[model] ?? 0);
  return Math.ceil((queued + load) / 1000);
}

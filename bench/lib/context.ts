import { randomBytes, randomUUID } from 'node:crypto';
import os from 'node:os';
import { type JobData, PIPELINE_SPECS, type PipelineName, priorityRank } from '../../packages/contracts/src/index.ts';
import { newJobId, queueOptions } from '../../packages/jobs/src/index.ts';
import { type Config, loadConfig } from '../../packages/runtime/src/index.ts';
import { Queue, Redis } from './deps.ts';
import { buildRequest } from './http.ts';
import { BENCH_STATION, type BenchSystem, PREFIX } from './system.ts';

/** Sizes of one run: `--quick` proves the harness works in seconds; the full run takes the figures. */
export interface Sizes {
  warmupMs: number;
  submitMs: number;
  connections: number;
  latencyMs: number;
  dispatchSamples: number;
  dutyJobs: number;
  editReps: number;
  lookupQueued: number;
  lookups: number;
  fleet: FleetSizes;
}

/** 9's workload: see bench/scenarios/fleet.ts. */
export interface FleetSizes {
  /** Worker processes, one device slot each. */
  workers: number;
  /** Distinct models the jobs ask for. */
  models: number;
  /** Jobs of the flooding station, submitted first, back to back. */
  floodJobs: number;
  /** Jobs of each of the two light stations. */
  lightJobs: number;
  /** A light station's submits are this far apart. */
  lightEveryMs: number;
  /** What a worker pays to load a model it does not have warm. */
  loadMs: number;
  /** A job's run time (its one step) is drawn uniformly from this range, inclusive. */
  runMs: [number, number];
}

export const QUICK: Sizes = {
  warmupMs: 300,
  submitMs: 1000,
  connections: 64,
  latencyMs: 1500,
  dispatchSamples: 40,
  dutyJobs: 10,
  editReps: 2,
  lookupQueued: 2000,
  lookups: 300,
  fleet: { workers: 2, models: 4, floodJobs: 48, lightJobs: 6, lightEveryMs: 100, loadMs: 200, runMs: [20, 60] },
};

export const FULL: Sizes = {
  warmupMs: 1000,
  submitMs: 5000,
  connections: 64,
  latencyMs: 10_000,
  dispatchSamples: 400,
  dutyJobs: 100,
  editReps: 7,
  lookupQueued: 100_000,
  lookups: 5000,
  fleet: { workers: 4, models: 4, floodJobs: 400, lightJobs: 20, lightEveryMs: 1000, loadMs: 2000, runMs: [200, 600] },
};

/** A span of the run on the monotonic clock (µs), to cut a CPU profile to one benchmark. */
export interface Window {
  name: string;
  startUs: number;
  endUs: number;
  /** 1-minute load average when the span ended: other work on the machine shows here. */
  load1?: number;
}

export interface Ctx {
  quick: boolean;
  sizes: Sizes;
  sys: BenchSystem;
  config: Config;
  /** The bench's own plain connection, for INFO and key reads. */
  redis: Redis;
  windows: Window[];
  /** Processes whose CPU time the benchmarks account for. */
  pids: { redis?: number; bench: number };
  log(msg: string): void;
}

export const monoUs = () => Number(process.hrtime.bigint() / 1000n);

export async function timed<T>(ctx: Ctx, name: string, fn: () => Promise<T>): Promise<T> {
  const startUs = monoUs();
  try {
    return await fn();
  } finally {
    ctx.windows.push({ name, startUs, endUs: monoUs(), load1: Math.round(os.loadavg()[0]! * 100) / 100 });
  }
}

/** The configuration the api and worker load, so the bench builds queues and jobs exactly as they do. */
export function benchConfig(sys: BenchSystem): Config {
  return loadConfig(sys.env);
}

export const BASE_PREFIX = 'benchbase';

/** A Queue with Darkroom's own options (same job defaults, same events maxLen) on the given prefix. */
export function darkroomQueue(ctx: Ctx, name: string, prefix = PREFIX): Queue {
  const connection = new Redis(ctx.sys.redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(name, { ...queueOptions(ctx.config, connection as never), prefix }) as Queue;
  // BullMQ leaves a connection it was given open on close().
  const close = queue.close.bind(queue);
  queue.close = async () => {
    await close();
    connection.disconnect();
  };
  return queue;
}

export const EDIT_PARAMS = {
  operations: [
    { op: 'resize', width: 512 },
    { op: 'format', type: 'webp', quality: 80 },
  ],
};
export const JSON_SUBMIT = { pipeline: 'synthetic', params: { steps: 20, stepMs: 100 } };

const parsedParams = new WeakMap<object, Record<string, unknown>>();

/**
 * The job the api would queue for this submit: the same JobData (validated params, input
 * metadata, timeout, a request id) and the same add options (job id, priority, attempts).
 */
export function apiEquivalentJob(
  config: Config,
  pipeline: PipelineName,
  rawParams: Record<string, unknown>,
  image?: { bytes: number; width: number; height: number },
): { name: string; data: JobData; opts: { jobId: string; priority: number; attempts: number } } {
  const spec = PIPELINE_SPECS[pipeline];
  const id = newJobId(pipeline);
  // Validated once per params object: the baseline is the engine, not the api's validation.
  let params = parsedParams.get(rawParams);
  if (!params) {
    params = spec.params.parse(rawParams) as Record<string, unknown>;
    parsedParams.set(rawParams, params);
  }
  const data: JobData = {
    v: 1,
    station: BENCH_STATION.name,
    pipeline,
    priority: 'normal',
    params,
    ...(image
      ? {
          input: {
            key: `inputs/${id}`,
            bytes: image.bytes,
            sha256: randomBytes(32).toString('hex'),
            format: 'png',
            contentType: 'image/png',
            width: image.width,
            height: image.height,
            pages: 1,
          },
        }
      : {}),
    timeoutMs: config.limits.jobTimeoutMs,
    requestId: randomUUID(),
  };
  return {
    name: pipeline,
    data,
    opts: { jobId: id, priority: priorityRank('normal'), attempts: Math.min(spec.attempts, config.jobs.attempts) },
  };
}

export function authHeaders(): Record<string, string> {
  return { Authorization: `Bearer ${BENCH_STATION.key}` };
}

export function jsonSubmitRequest(port: number, body: unknown = JSON_SUBMIT): Buffer {
  return buildRequest({
    method: 'POST',
    path: '/v1/jobs',
    host: `127.0.0.1:${port}`,
    headers: { ...authHeaders(), 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  const m = /^used_memory:(\d+)/m.exec(info);
  return m ? Number(m[1]) : Number.NaN;
}

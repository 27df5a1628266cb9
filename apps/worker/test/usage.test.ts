import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BackendUnavailableError, type JobData, type JobResultData } from '@darkroom/contracts';
import { DeviceSlots, FsBlobStore, queueOptions, readUsage, usageModel, utcDay } from '@darkroom/jobs';
import { type Pipeline, syntheticPipeline } from '@darkroom/pipelines';
import { createLogger, loadConfig } from '@darkroom/runtime';
import { type RedisHandle, startRedis, uniquePrefix, waitFor } from '@darkroom/testing';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerMetrics } from '../src/metrics.ts';
import { createProcessor } from '../src/processor.ts';
import { UsageMeter } from '../src/usage.ts';

/*
 * What an attempt adds to its station's usage, on a real Redis and a real BullMQ queue: the model
 * load a pipeline reports, and the device time of an attempt that is retried, with the job
 * counted once.
 */

let redis: RedisHandle;
let connection: Redis;
let dataDir: string;
beforeAll(async () => {
  redis = await startRedis();
  connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-usage-'));
});
afterAll(async () => {
  connection?.disconnect();
  await redis?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Synthetic, but it reports a model load of 250 ms and fails its first attempt as a retryable backend failure. */
const flaky: Pipeline = {
  ...syntheticPipeline,
  async run(input, params, ctx) {
    await new Promise((r) => setTimeout(r, 150));
    if (ctx.job?.attempt === 1) throw new BackendUnavailableError('the backend went away');
    ctx.reportModelLoad?.(250);
    return syntheticPipeline.run(input, params as never, ctx);
  },
};

describe('usage of an attempt', () => {
  it('records the reported model load, and every attempt’s device time, with the job counted once', async () => {
    const prefix = uniquePrefix('usage');
    const config = loadConfig({ REDIS_URL: redis.url, DARKROOM_REDIS_PREFIX: prefix, DARKROOM_DATA_DIR: dataDir });
    const blobs = new FsBlobStore(config.dataDir);
    await blobs.ensureReady();
    const metrics = new WorkerMetrics();
    const logger = createLogger({ name: 'test', level: 'silent' });
    const usage = new UsageMeter({ redis: connection, prefix, metrics, logger });
    const processor = createProcessor(flaky, {
      config,
      logger,
      redis: connection,
      blobs,
      shutdownSignal: new AbortController().signal,
      drainSignal: new AbortController().signal,
      slots: new DeviceSlots(1),
      cancels: { heard: () => false, covers: () => true },
      metrics,
      usage,
    });
    const queue = new Queue<JobData, JobResultData>('synthetic', queueOptions(config, connection));
    const worker = new Worker<JobData, JobResultData>('synthetic', processor, { connection, prefix, concurrency: 1 });
    worker.on('completed', (job) => void usage.record(job, true));
    worker.on('failed', (job) => job && void usage.record(job, Boolean(job.finishedOn)));
    try {
      await queue.add(
        'synthetic',
        {
          v: 1,
          station: 'alpha',
          pipeline: 'synthetic',
          priority: 'normal',
          params: { steps: 2, stepMs: 100, width: 8, height: 8, seed: 1 },
          timeoutMs: 30_000,
        },
        { jobId: 'synthetic_usage0000000000000000', attempts: 2, backoff: { type: 'fixed', delay: 10 } },
      );
      const today = utcDay(Date.now());
      const body = await waitFor(
        async () => {
          const b = await readUsage(connection, prefix, { from: today, to: today });
          return b.totals.jobs === 1 ? b : undefined;
        },
        { what: 'the job in the usage', timeoutMs: 15_000 },
      );
      expect(body.days).toEqual([expect.objectContaining({ station: 'alpha', pipeline: 'synthetic', model: '', jobs: 1 })]);
      // Attempt 1: 0.15 s before it failed; attempt 2: 0.15 s, the reported load, 2 × 0.1 s of steps.
      expect(body.totals.deviceSeconds).toBeGreaterThanOrEqual(0.5);
      expect(body.totals.deviceSeconds).toBeLessThan(2);
      expect(body.totals.modelLoadSeconds).toBe(0.25);
      const load = await metrics.registry.getSingleMetric('darkroom_model_load_seconds_total')?.get();
      expect(load?.values.find((v) => v.labels.station === 'alpha')?.value).toBe(0.25);
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  it('keys a job’s model by its params: model, else workflow, else empty', () => {
    expect(usageModel({ model: 'sdxl-base', workflow: 'txt2img' })).toBe('sdxl-base');
    expect(usageModel({ workflow: 'txt2img' })).toBe('txt2img');
    expect(usageModel({ steps: 3 })).toBe('');
    expect(usageModel({ model: 7 })).toBe('');
    expect(usageModel(undefined)).toBe('');
  });
});

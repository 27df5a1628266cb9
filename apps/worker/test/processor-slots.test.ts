import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobData, JobResultData } from '@darkroom/contracts';
import { DeviceSlots, FsBlobStore, queueOptions } from '@darkroom/jobs';
import { syntheticPipeline } from '@darkroom/pipelines';
import { createLogger, loadConfig } from '@darkroom/runtime';
import { type RedisHandle, startRedis, uniquePrefix, waitFor } from '@darkroom/testing';
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerMetrics } from '../src/metrics.ts';
import { AbortReason, createProcessor } from '../src/processor.ts';

/*
 * The processor's wait for a device slot, on a real Redis and a real BullMQ queue. The worker
 * process takes jobs only with a slot in hand (packages/jobs/src/device-worker.ts), so a job waits here only when
 * it came without one; a plain BullMQ Worker at concurrency 2 over one slot makes that happen.
 * Such a waiting job must end at once on cancel, and go back to the queue unstarted, with no
 * attempt spent, when shutdown begins.
 */

let redis: RedisHandle;
let connection: Redis;
let dataDir: string;
beforeAll(async () => {
  redis = await startRedis();
  connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-slots-'));
});
afterAll(async () => {
  connection?.disconnect();
  await redis?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function setup() {
  const prefix = uniquePrefix('slots');
  const config = loadConfig({ REDIS_URL: redis.url, DARKROOM_REDIS_PREFIX: prefix, DARKROOM_DATA_DIR: dataDir });
  const blobs = new FsBlobStore(config.dataDir);
  await blobs.ensureReady();
  const drain = new AbortController();
  const metrics = new WorkerMetrics();
  const queue = new Queue<JobData, JobResultData>('synthetic', queueOptions(config, connection));
  const processor = createProcessor(syntheticPipeline, {
    config,
    logger: createLogger({ name: 'test', level: 'silent' }),
    redis: connection,
    blobs,
    shutdownSignal: new AbortController().signal,
    drainSignal: drain.signal,
    slots: new DeviceSlots(1),
    cancels: { heard: () => false, covers: () => true },
    metrics,
  });
  const worker = new Worker<JobData, JobResultData>('synthetic', processor, { connection, prefix, concurrency: 2 });
  const add = (id: string, steps: number) =>
    queue.add(
      'synthetic',
      {
        v: 1,
        station: 'alpha',
        pipeline: 'synthetic',
        priority: 'normal',
        params: { steps, stepMs: 50, width: 16, height: 16, seed: 1 },
        timeoutMs: 30_000,
      },
      { jobId: id, attempts: 3 },
    );
  const gauge = async (name: string) =>
    (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.pipeline === 'synthetic')?.value ?? 0;
  return { queue, worker, drain, add, gauge };
}

const state = (job: Job | undefined) => job?.getState();

describe('a job waiting for a device slot', () => {
  it('ends cancelled at once on cancel, never computing, while the running job completes', async () => {
    const { queue, worker, add, gauge } = await setup();
    try {
      await add('synthetic_running1', 6);
      await add('synthetic_waiting1', 1);
      await waitFor(async () => (await gauge('darkroom_worker_waiting_jobs')) === 1, { what: 'a job waiting for the slot' });
      expect(await gauge('darkroom_worker_busy_slots')).toBe(1);
      expect(worker.cancelJob('synthetic_waiting1', 'cancel')).toBe(true);
      await waitFor(async () => (await state(await queue.getJob('synthetic_waiting1'))) === 'failed', { what: 'the cancel' });
      const waiting = await queue.getJob('synthetic_waiting1');
      expect(waiting?.failedReason).toMatch(/^\[cancelled\]/);
      expect(waiting?.attemptsMade).toBe(1);
      expect(waiting?.progress).toBe(0);
      await waitFor(async () => (await state(await queue.getJob('synthetic_running1'))) === 'completed', { what: 'the running job' });
      expect(fs.existsSync(path.join(dataDir, 'outputs', 'synthetic_waiting1.png'))).toBe(false);
      expect(await gauge('darkroom_worker_busy_slots')).toBe(0);
      expect(await gauge('darkroom_worker_waiting_jobs')).toBe(0);
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  it('goes back to the queue unstarted, no attempt spent, when shutdown begins; the running job completes', async () => {
    const { queue, worker, drain, add, gauge } = await setup();
    try {
      await add('synthetic_running2', 6);
      await add('synthetic_waiting2', 1);
      await waitFor(async () => (await gauge('darkroom_worker_waiting_jobs')) === 1, { what: 'a job waiting for the slot' });
      // As the worker's shutdown does: stop taking jobs, hand back those not started.
      drain.abort(new AbortReason('shutdown'));
      await worker.close();
      const running = await queue.getJob('synthetic_running2');
      expect(await state(running)).toBe('completed');
      const waiting = await queue.getJob('synthetic_waiting2');
      expect(await state(waiting)).toBe('waiting');
      expect(waiting?.attemptsMade).toBe(0);
      expect(waiting?.progress).toBe(0);
      expect(fs.existsSync(path.join(dataDir, 'outputs', 'synthetic_waiting2.png'))).toBe(false);
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});

import { type BackendStatus, type GpuReport, PIPELINE_SPECS, WorkerInfo } from '@darkroom/contracts';
import { StatsReader, writeHeartbeat } from '@darkroom/jobs';
import { type AnyPipeline, type PipelineStatus, syntheticPipeline } from '@darkroom/pipelines';
import { type RedisHandle, startRedis, uniquePrefix } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assembleHeartbeat, type HeartbeatBase } from '../src/heartbeat.ts';
import { WorkerMetrics } from '../src/metrics.ts';

/*
 * The heartbeat as the worker assembles it at each beat, written to a real Redis and read back
 * the way GET /v1/queue reads it. Pipelines here are small stand-ins whose status() the test
 * controls: one reports a backend that goes down, one has no status (synthetic), one hangs and
 * one throws. The worker's metrics follow the same heartbeat.
 */

let redis: RedisHandle;
let connection: Redis;
beforeAll(async () => {
  redis = await startRedis();
  connection = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  connection?.disconnect();
  await redis?.stop();
});

const run = async (): Promise<never> => {
  throw new Error('not run in this test');
};

/** A pipeline answering status() with whatever `next` gives, counting the calls. */
function standIn(name: 'comfyui' | 'onnx' | 'upscale', next: () => PipelineStatus | Promise<PipelineStatus>) {
  const p = {
    spec: PIPELINE_SPECS[name],
    calls: 0,
    status: () => {
      p.calls++;
      return next();
    },
    run,
  };
  return p;
}

const GPUS: GpuReport[] = [
  { index: 0, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 1024, utilizationPercent: 3 },
  { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 40960 },
];

describe('the worker heartbeat', () => {
  it("asks every pipeline's status at each beat and carries backends and GPUs to /v1/queue and the metrics", async () => {
    const prefix = uniquePrefix('hb');
    const stats = new StatsReader(connection, prefix, ['synthetic', 'comfyui', 'onnx', 'upscale'], 0);
    const metrics = new WorkerMetrics();

    let backend: BackendStatus = {
      kind: 'comfyui',
      version: '0.3.40',
      healthy: true,
      vramTotalBytes: 25_769_803_776,
      vramFreeBytes: 20_000_000_000,
      checkedAt: '2026-01-01T00:00:00.000Z',
    };
    const comfy = standIn('comfyui', () => ({ device: 'comfyui: cuda:0', backend }));
    let hang = false;
    const onnx = standIn('onnx', () => (hang ? new Promise<PipelineStatus>(() => {}) : { device: 'cpu', models: ['invert'] }));
    const upscale = standIn('upscale', () => {
      throw new Error('status failed');
    });
    const pipelines: AnyPipeline[] = [syntheticPipeline, comfy, onnx, upscale];

    const base = (): HeartbeatBase => ({
      name: 'w1',
      activeJobs: 0,
      processed: 0,
      failed: 0,
      lastSeen: new Date().toISOString(),
      device: 'gpu: NVIDIA H100 80GB HBM3 (81559 MiB)',
      concurrency: 1,
    });
    const beat = async (gpus: GpuReport[] | undefined) => {
      const hb = await assembleHeartbeat(base(), pipelines, gpus);
      metrics.report(hb);
      await writeHeartbeat(connection, prefix, hb);
    };
    /** This worker as GET /v1/queue lists it under a pipeline, checked against the contract. */
    const listed = async (pipeline: string) => {
      const [w] = (await stats.get(pipeline)).workers;
      return WorkerInfo.strict().parse(w);
    };
    const gauge = async (name: string, labels: Record<string, string>) =>
      (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
        ?.value;

    // A healthy backend with its VRAM, and the GPUs.
    await beat(GPUS);
    const first = await listed('synthetic');
    expect(first.pipelines).toEqual(['synthetic', 'comfyui', 'onnx', 'upscale']);
    expect(first.backends).toEqual({ comfyui: backend });
    expect(first.pipelineDevices).toEqual({ comfyui: 'comfyui: cuda:0', onnx: 'cpu' });
    expect(first.models).toEqual({ onnx: ['invert'] });
    expect(first.gpus).toEqual(GPUS);
    expect(await listed('comfyui')).toEqual(first);
    expect(await gauge('darkroom_backend_healthy', { worker: 'w1', pipeline: 'comfyui' })).toBe(1);
    expect(await gauge('darkroom_backend_healthy', { pipeline: 'synthetic' })).toBeUndefined();
    expect(await gauge('darkroom_backend_vram_total_bytes', { worker: 'w1', pipeline: 'comfyui' })).toBe(25_769_803_776);
    expect(await gauge('darkroom_backend_vram_free_bytes', { worker: 'w1', pipeline: 'comfyui' })).toBe(20_000_000_000);
    const gpu1 = { worker: 'w1', gpu: '1', name: 'NVIDIA H100 80GB HBM3' };
    expect(await gauge('darkroom_gpu_memory_used_bytes', gpu1)).toBe(40960 * 1024 * 1024);
    expect(await gauge('darkroom_gpu_memory_total_bytes', gpu1)).toBe(81559 * 1024 * 1024);
    expect(await gauge('darkroom_gpu_utilization_ratio', { ...gpu1, gpu: '0' })).toBeCloseTo(0.03);
    expect(await gauge('darkroom_gpu_utilization_ratio', gpu1)).toBeUndefined(); // not reported for GPU 1

    // The backend goes down and the GPU report stops: the next beat says so, nothing stale stays.
    backend = { kind: 'comfyui', healthy: false, reason: 'ComfyUI does not answer', checkedAt: '2026-01-01T00:00:05.000Z' };
    await beat(undefined);
    const second = await listed('synthetic');
    expect(second.backends).toEqual({ comfyui: backend });
    expect(second).not.toHaveProperty('gpus');
    expect(await gauge('darkroom_backend_healthy', { worker: 'w1', pipeline: 'comfyui' })).toBe(0);
    expect(await gauge('darkroom_backend_vram_total_bytes', { pipeline: 'comfyui' })).toBeUndefined();
    expect(await gauge('darkroom_gpu_memory_used_bytes', gpu1)).toBeUndefined();
    expect([comfy.calls, onnx.calls, upscale.calls]).toEqual([2, 2, 2]);

    // A status that never answers is not waited for beyond its bound; the others still arrive.
    hang = true;
    const t = Date.now();
    await beat(GPUS);
    expect(Date.now() - t).toBeGreaterThanOrEqual(1900);
    expect(Date.now() - t).toBeLessThan(4000);
    const third = await listed('onnx');
    expect(third.backends).toEqual({ comfyui: backend });
    expect(third).not.toHaveProperty('models');
    expect(third.pipelineDevices).toEqual({ comfyui: 'comfyui: cuda:0' });
    expect(third.gpus).toEqual(GPUS);
  });

  it('leaves out backends and gpus when no pipeline reports a backend and there is no GPU report', async () => {
    const prefix = uniquePrefix('hb');
    const hb = await assembleHeartbeat(
      { name: 'cpu', activeJobs: 0, processed: 0, failed: 0, lastSeen: new Date().toISOString(), device: 'cpu (x)', concurrency: 1 },
      [syntheticPipeline],
      [],
    );
    await writeHeartbeat(connection, prefix, hb);
    const [w] = (await new StatsReader(connection, prefix, ['synthetic'], 0).get('synthetic')).workers;
    expect(w).toEqual({
      name: 'cpu',
      pipelines: ['synthetic'],
      activeJobs: 0,
      processed: 0,
      failed: 0,
      lastSeen: hb.lastSeen,
      device: 'cpu (x)',
    });
  });
});

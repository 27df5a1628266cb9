import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody, WorkerInfo } from '@darkroom/contracts';
import {
  ADMIN_TOKEN,
  FAKE_H100S,
  type FakeNvidiaSmi,
  type ProcessHandle,
  type System,
  startSystem,
  waitFor,
  writeFakeNvidiaSmi,
} from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from '../../api/test/helpers.ts';

/*
 * GPUs as a worker process reports them: a stand-in nvidia-smi first on its PATH answers with
 * two H100s, and GET /v1/queue and the worker's /metrics show them, following changes at the
 * poll rate. A worker whose PATH has no nvidia-smi reports no GPUs and works as before.
 */

let sys: System;
let smi: FakeNvidiaSmi;
let gpuWorker: ProcessHandle;
beforeAll(async () => {
  smi = writeFakeNvidiaSmi();
  sys = await startSystem({ workers: 0, env: { DARKROOM_WORKER_PIPELINES: 'synthetic' } });
  gpuWorker = await sys.addWorker({ DARKROOM_WORKER_NAME: 'gpu', PATH: smi.path, DARKROOM_GPU_POLL_SECONDS: '1' });
});
afterAll(async () => {
  await sys?.stop();
  smi?.remove();
});

const MIB = 1024 * 1024;
const admin = { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;

async function listed(name: string): Promise<WorkerInfo | undefined> {
  const body = (await (await sys.fetch('/v1/queue', admin)).json()) as { pipelines: { name: string; workers: WorkerInfo[] }[] };
  return body.pipelines.find((p) => p.name === 'synthetic')?.workers.find((w) => w.name === name);
}

/** The worker's /metrics as `name{labels}` → value. */
async function scrape(worker: ProcessHandle): Promise<Map<string, number>> {
  const url = /"metrics":"([^"]+)"/.exec(worker.output())?.[1];
  const res = await fetch(url ?? 'http://127.0.0.1:1/');
  expect(res.status).toBe(200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const series = (metric: string, worker: string, gpu: number) => `${metric}{worker="${worker}",gpu="${gpu}",name="NVIDIA H100 80GB HBM3"}`;

describe('a worker with NVIDIA GPUs', () => {
  it('lists both GPUs with their memory and utilisation under the worker in /v1/queue', async () => {
    const w = await listed('gpu');
    expect(w?.gpus).toEqual([
      { index: 0, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 1024, utilizationPercent: 3 },
      { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 40960, utilizationPercent: 97 },
    ]);
    expect(w?.device).toBe('gpu: NVIDIA H100 80GB HBM3 (81559 MiB), NVIDIA H100 80GB HBM3 (81559 MiB)');
    // The synthetic pipeline has no backend to report.
    expect(w).not.toHaveProperty('backends');
    expect(smi.calls()).toContainEqual([
      '--query-gpu=index,name,memory.total,memory.used,utilization.gpu',
      '--format=csv,noheader,nounits',
    ]);
  });

  it('exports them as gauges on its /metrics, labelled by worker, GPU index and name', async () => {
    const m = await scrape(gpuWorker);
    expect(m.get(series('darkroom_gpu_memory_used_bytes', 'gpu', 0))).toBe(1024 * MIB);
    expect(m.get(series('darkroom_gpu_memory_used_bytes', 'gpu', 1))).toBe(40960 * MIB);
    expect(m.get(series('darkroom_gpu_memory_total_bytes', 'gpu', 1))).toBe(81559 * MIB);
    expect(m.get(series('darkroom_gpu_utilization_ratio', 'gpu', 0))).toBeCloseTo(0.03);
    expect(m.get(series('darkroom_gpu_utilization_ratio', 'gpu', 1))).toBeCloseTo(0.97);
  });

  it('follows what nvidia-smi says at each poll, leaving out figures it cannot read', async () => {
    smi.setGpus([FAKE_H100S[0]!, { ...FAKE_H100S[1]!, memoryUsedMiB: 70000, utilizationPercent: '[N/A]' }]);
    const w = await waitFor(async () => {
      const found = await listed('gpu');
      return found?.gpus?.[1]?.memoryUsedMiB === 70000 && found;
    });
    expect(w.gpus?.[1]).toEqual({ index: 1, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 70000 });
    const m = await scrape(gpuWorker);
    expect(m.get(series('darkroom_gpu_memory_used_bytes', 'gpu', 1))).toBe(70000 * MIB);
    expect(m.has(series('darkroom_gpu_utilization_ratio', 'gpu', 1))).toBe(false);
    expect(m.get(series('darkroom_gpu_utilization_ratio', 'gpu', 0))).toBeCloseTo(0.03);
  });

  it('drops the report while nvidia-smi fails, logging it once, and takes it up again when it answers', async () => {
    const polls = smi.calls().length;
    smi.setExitCode(1);
    await waitFor(async () => (await listed('gpu'))?.gpus === undefined, { timeoutMs: 15_000, what: 'gpus to go' });
    await waitFor(() => smi.calls().length >= polls + 4, { timeoutMs: 15_000, what: 'more polls' });
    expect((await scrape(gpuWorker)).has(series('darkroom_gpu_memory_used_bytes', 'gpu', 0))).toBe(false);
    expect(gpuWorker.output().match(/nvidia-smi failed/g)).toHaveLength(1);
    expect((await listed('gpu'))?.activeJobs).toBe(0);

    smi.setExitCode(0);
    smi.setGpus(FAKE_H100S);
    await waitFor(async () => (await listed('gpu'))?.gpus?.length === 2, { timeoutMs: 15_000, what: 'gpus to come back' });
    expect(gpuWorker.output()).toMatch(/nvidia-smi answers again/);
  });
});

describe('a worker with the GPU report off', () => {
  it('never runs the report query (DARKROOM_GPU_POLL_SECONDS=0) and lists no gpus', async () => {
    const own = writeFakeNvidiaSmi();
    try {
      const off = await sys.addWorker({ DARKROOM_WORKER_NAME: 'off', PATH: own.path, DARKROOM_GPU_POLL_SECONDS: '0' });
      const w = await waitFor(() => listed('off'));
      expect(w).not.toHaveProperty('gpus');
      // The device found at start still comes from nvidia-smi.
      expect(w.device).toMatch(/^gpu: NVIDIA H100/);
      expect(own.calls()).toEqual([['--query-gpu=index,name,memory.total', '--format=csv,noheader,nounits']]);
      expect([...(await scrape(off)).keys()].filter((k) => k.startsWith('darkroom_gpu_'))).toEqual([]);
      await off.stop('SIGTERM');
    } finally {
      own.remove();
    }
  });
});

describe('a worker without nvidia-smi', () => {
  it('reports no gpus and runs jobs as before', async () => {
    // A PATH holding nothing: no nvidia-smi to find, whatever this host has installed.
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-empty-path-'));
    try {
      const cpu = await sys.addWorker({ DARKROOM_WORKER_NAME: 'cpu', PATH: empty, DARKROOM_GPU_POLL_SECONDS: '1' });
      const w = await waitFor(() => listed('cpu'));
      expect(w).not.toHaveProperty('gpus');
      expect(w.device).toMatch(/^cpu \(/);
      const m = await scrape(cpu);
      expect([...m.keys()].filter((k) => k.startsWith('darkroom_gpu_'))).toEqual([]);

      await gpuWorker.stop('SIGTERM'); // so the job goes to this worker
      const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 2, stepMs: 10 } });
      expect(res.status).toBe(202);
      const final = await waitForFinal(sys, ((await res.json()) as JobStatusBody).id);
      expect(final.status).toBe('completed');
      expect(cpu.output()).not.toMatch(/nvidia-smi failed/);
      await waitFor(async () => (await listed('cpu'))?.processed === 1, { what: 'the next heartbeat' });
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});

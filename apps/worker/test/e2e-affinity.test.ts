import type { JobStatusBody, QueueBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from '../../api/test/helpers.ts';

/*
 * Warm models first, end to end: a worker process with one device slot, `synthetic` jobs that
 * stand for models (`model`, `loadMs`), the api. What a station sees: which jobs ran cold
 * (`coldStart`, `modelLoadMs`) and in which order they started.
 */

const admin = { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;
const LOAD_MS = 400;

async function queue(sys: System, model: string): Promise<JobStatusBody> {
  const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 30, width: 8, height: 8, model, loadMs: LOAD_MS } });
  expect(res.status).toBe(202);
  return (await res.json()) as JobStatusBody;
}

async function pause(sys: System, action: 'pause' | 'resume') {
  expect((await sys.fetch(`/v1/admin/pipelines/synthetic/${action}`, { ...admin, method: 'POST' })).status).toBe(200);
}

function startOrder(jobs: JobStatusBody[]): string[] {
  return [...jobs].sort((a, b) => Date.parse(a.startedAt!) - Date.parse(b.startedAt!)).map((j) => j.id);
}

function startSystemWith(env: Record<string, string>) {
  return startSystem({
    workerEnv: {
      DARKROOM_WORKER_PIPELINES: 'synthetic',
      DARKROOM_WORKER_CONCURRENCY: '1',
      DARKROOM_WORKER_OVERLAP: '0',
      DARKROOM_SYNTHETIC_WARM_MODELS: '1',
      ...env,
    },
  });
}

describe('warm models first', () => {
  let sys: System;
  beforeAll(async () => {
    sys = await startSystemWith({});
  });
  afterAll(async () => {
    await sys?.stop();
  });

  it('a worker takes the jobs of the model it has loaded first, and says which jobs ran cold and for how long', async () => {
    const first = await waitForFinal(sys, (await queue(sys, 'sdxl')).id);
    expect(first).toMatchObject({ status: 'completed', coldStart: true });
    expect(first.modelLoadMs).toBeGreaterThanOrEqual(LOAD_MS - 20);
    await waitFor(
      async () => {
        const body = (await (await sys.fetch('/v1/queue', admin)).json()) as QueueBody;
        return body.pipelines.find((p) => p.name === 'synthetic')?.workers[0]?.warmModels?.synthetic?.includes('sdxl');
      },
      { timeoutMs: 10_000, what: '/v1/queue to show sdxl loaded' },
    );

    await pause(sys, 'pause');
    const f1 = await queue(sys, 'flux');
    const s1 = await queue(sys, 'sdxl');
    const f2 = await queue(sys, 'flux');
    const s2 = await queue(sys, 'sdxl');
    await pause(sys, 'resume');
    const finals = await Promise.all([f1, s1, f2, s2].map((j) => waitForFinal(sys, j.id)));
    // sdxl is loaded: both sdxl jobs first, then flux, loaded once.
    expect(startOrder(finals)).toEqual([s1.id, s2.id, f1.id, f2.id]);
    const byId = new Map(finals.map((j) => [j.id, j]));
    expect([s1, s2, f1, f2].map((j) => byId.get(j.id)!.coldStart)).toEqual([false, false, true, false]);
    expect(byId.get(f1.id)!.modelLoadMs).toBeGreaterThanOrEqual(LOAD_MS - 20);
    expect(byId.get(s1.id)!.modelLoadMs).toBe(0);
  });
});

describe('warm models first, bounded', () => {
  let sys: System;
  beforeAll(async () => {
    sys = await startSystemWith({ DARKROOM_AFFINITY_MAX_BYPASS_SECONDS: '1' });
  });
  afterAll(async () => {
    await sys?.stop();
  });

  it('passes a cold job over for no longer than the bypass bound', async () => {
    await waitForFinal(sys, (await queue(sys, 'sdxl')).id);
    await pause(sys, 'pause');
    const cold = await queue(sys, 'flux');
    const warm: JobStatusBody[] = [];
    for (let i = 0; i < 40; i++) warm.push(await queue(sys, 'sdxl'));
    await pause(sys, 'resume');
    const finals = await Promise.all([cold, ...warm].map((j) => waitForFinal(sys, j.id)));
    const order = startOrder(finals);
    const started = (id: string) => Date.parse(finals.find((j) => j.id === id)!.startedAt!);
    // Passed over at first (warm jobs go before it), then taken once the bound is reached, before the warm ones ran out.
    expect(order.indexOf(cold.id)).toBeGreaterThan(0);
    expect(order.indexOf(cold.id)).toBeLessThan(order.length - 1);
    expect(started(cold.id) - started(order[0]!)).toBeGreaterThanOrEqual(900);
  });
});

describe('warm models first, off', () => {
  let sys: System;
  beforeAll(async () => {
    sys = await startSystemWith({ DARKROOM_AFFINITY: 'off' });
  });
  afterAll(async () => {
    await sys?.stop();
  });

  it('takes jobs in queue order with DARKROOM_AFFINITY=off', async () => {
    await waitForFinal(sys, (await queue(sys, 'sdxl')).id);
    await pause(sys, 'pause');
    const jobs = [await queue(sys, 'flux'), await queue(sys, 'sdxl'), await queue(sys, 'flux')];
    await pause(sys, 'resume');
    const finals = await Promise.all(jobs.map((j) => waitForFinal(sys, j.id)));
    expect(startOrder(finals)).toEqual(jobs.map((j) => j.id));
    expect(finals.map((j) => j.coldStart)).toEqual([true, true, true]);
  });
});

import fs from 'node:fs';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { fixture, listFiles, type System, startSystem, waitFor } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, waitForFinal } from '../../api/test/helpers.ts';

/*
 * The worker as a separate process: priority order, execution limit, bad pixels, retries of
 * transient storage failures, and graceful shutdown.
 */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({
    env: { DARKROOM_JOB_TIMEOUT_SECONDS: '4', DARKROOM_RETRY_BACKOFF_MS: '1000', DARKROOM_SHUTDOWN_GRACE_SECONDS: '10' },
  });
});
afterAll(async () => {
  await sys?.stop();
});
afterEach(() => {
  // Leaves the data directory as the worker expects it, whatever a test did to it.
  const outputs = path.join(sys.dataDir, 'outputs');
  if (fs.existsSync(outputs) && !fs.statSync(outputs).isDirectory()) fs.rmSync(outputs);
  fs.mkdirSync(outputs, { recursive: true });
});

const synthetic = (params: object, priority?: string) => ({ pipeline: 'synthetic', params, ...(priority ? { priority } : {}) });
const idOf = async (res: Response) => {
  expect(res.status).toBe(202);
  return ((await res.json()) as JobStatusBody).id;
};
const status = async (id: string) => (await (await sys.fetch(`/v1/jobs/${id}`)).json()) as JobStatusBody;

describe('worker', () => {
  it('serves priorities in order, oldest first within a priority', async () => {
    const blocker = await idOf(await submit(sys, synthetic({ steps: 10, stepMs: 100 })));
    await waitFor(async () => (await status(blocker)).status === 'active', { what: 'blocker to start' });
    const order = ['low', 'normal', 'high', 'critical', 'low', 'high', 'normal', 'critical'];
    const submitted: { id: string; priority: string; position: number }[] = [];
    for (const p of order) {
      const res = await submit(sys, synthetic({ steps: 1, stepMs: 0 }, p));
      const body = (await res.json()) as JobStatusBody;
      submitted.push({ id: body.id, priority: p, position: body.position! });
    }
    // Positions given at submit: the first critical went ahead of everything queued before it.
    expect(submitted.map((s) => s.position)).toEqual([1, 1, 1, 1, 5, 3, 5, 2]);
    const finals = await Promise.all(submitted.map((s) => waitForFinal(sys, s.id)));
    const started = finals
      .map((f, i) => ({ i, at: Date.parse(f.startedAt!) }))
      .sort((a, b) => a.at - b.at)
      .map(({ i }) => `${order[i]}#${i}`);
    expect(started).toEqual(['critical#3', 'critical#7', 'high#2', 'high#5', 'normal#1', 'normal#6', 'low#0', 'low#4']);
    expect(finals.every((f) => f.status === 'completed' && f.attempts === 1)).toBe(true);
  });

  it('stops a job at its execution limit and fails it as timeout, without retrying', async () => {
    const id = await idOf(await submit(sys, synthetic({ steps: 100, stepMs: 100 })));
    const final = await waitForFinal(sys, id);
    expect(final.status).toBe('failed');
    expect(final.error?.code).toBe('timeout');
    expect(final.attempts).toBe(1);
    // The worker is free again: the next job runs.
    const next = await waitForFinal(sys, await idOf(await submit(sys, synthetic({ steps: 1, stepMs: 0 }))));
    expect(next.status).toBe('completed');
  });

  it('fails damage that shows only when decoding as invalid_input, once', async () => {
    const raw = Buffer.alloc(64 * 64 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919) % 251;
    const png = await sharp(raw, { raw: { width: 64, height: 64, channels: 3 } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    const idat = png.indexOf('IDAT');
    for (let i = idat + 200; i < idat + 260; i++) png[i]! ^= 0x5a;
    const id = await idOf(await submit(sys, multipart({ pipeline: 'edit', params: '{"operations":[{"op":"flip"}]}' }, { data: png })));
    const final = await waitForFinal(sys, id);
    expect(final).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'invalid_input' } });
    expect(final.error!.message).not.toMatch(/\/tmp|\/work|data-/);
    expect((await sys.fetch(`/v1/jobs/${id}/result`)).status).toBe(409);
  });

  it('retries when results cannot be stored, and completes once storage is back', async () => {
    const outputs = path.join(sys.dataDir, 'outputs');
    fs.rmSync(outputs, { recursive: true, force: true });
    fs.writeFileSync(outputs, 'not a directory');
    const id = await idOf(
      await submit(
        sys,
        multipart({ pipeline: 'edit', params: '{"operations":[{"op":"grayscale"}]}' }, { data: fixture('with-alpha.png') }),
      ),
    );
    // The first attempt fails and the job waits for its retry (status queued, one attempt spent).
    await waitFor(
      async () => {
        const s = await status(id);
        return s.status === 'queued' && s.attempts >= 1;
      },
      { what: 'a failed first attempt' },
    );
    fs.rmSync(outputs);
    fs.mkdirSync(outputs);
    const final = await waitForFinal(sys, id);
    expect(final.status).toBe('completed');
    expect(final.attempts).toBeGreaterThanOrEqual(2);
    expect(listFiles(sys.dataDir).filter((f) => f.startsWith('tmp/'))).toEqual([]);
    expect(listFiles(sys.dataDir).filter((f) => f.startsWith(`outputs/${id}`))).toHaveLength(1);
  });

  it('gives up on storage that stays broken as backend_unavailable after every attempt', async () => {
    const outputs = path.join(sys.dataDir, 'outputs');
    fs.rmSync(outputs, { recursive: true, force: true });
    fs.writeFileSync(outputs, 'not a directory');
    const id = await idOf(await submit(sys, synthetic({ steps: 1, stepMs: 0 })));
    const final = await waitForFinal(sys, id, 'alpha', 30_000);
    expect(final).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'backend_unavailable' } });
    expect(listFiles(sys.dataDir).filter((f) => f.startsWith('tmp/'))).toEqual([]);
  });

  it('on SIGTERM finishes the running job within the grace period and exits 0', async () => {
    const id = await idOf(await submit(sys, synthetic({ steps: 10, stepMs: 100 })));
    await waitFor(async () => (await status(id)).status === 'active', { what: 'job to start' });
    const worker = sys.workers[0]!;
    const exit = await worker.stop('SIGTERM');
    expect(exit.code).toBe(0);
    const s = await status(id);
    expect(s.status).toBe('completed');
    expect(s.attempts).toBe(1);
  });

  it('on SIGTERM past the grace period hands the job back, and another worker completes it once', async () => {
    const w = await sys.addWorker({ DARKROOM_SHUTDOWN_GRACE_SECONDS: '0', DARKROOM_WORKER_NAME: 'impatient' });
    const id = await idOf(await submit(sys, synthetic({ steps: 20, stepMs: 100 })));
    await waitFor(async () => (await status(id)).status === 'active', { what: 'job to start' });
    const exit = await w.stop('SIGTERM');
    expect(exit.code).toBe(0);
    const back = await status(id);
    expect(back.status).toBe('queued');
    expect(back.position).toBe(1);
    await sys.addWorker({ DARKROOM_WORKER_NAME: 'successor' });
    const final = await waitForFinal(sys, id);
    expect(final.status).toBe('completed');
    expect(listFiles(sys.dataDir).filter((f) => f.startsWith(`outputs/${id}`))).toHaveLength(1);
  });
});

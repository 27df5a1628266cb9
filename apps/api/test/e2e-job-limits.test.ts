import type { JobStatusBody } from '@darkroom/contracts';
import { type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, totalJobs, waitForFinal } from './helpers.ts';

/*
 * A job's own execution limit (`timeoutSeconds`) and queue time-to-live (`ttlSeconds`): used
 * instead of the operator's, never above them, and kept when the job runs again.
 */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({
    workers: 0,
    env: {
      DARKROOM_JOB_TIMEOUT_SECONDS: '60',
      DARKROOM_JOB_TTL_SECONDS: '120',
      DARKROOM_MAINTENANCE_INTERVAL_MS: '200',
    },
  });
});
afterAll(async () => {
  await sys?.stop();
});

const body = async (res: Response) => (await res.json()) as JobStatusBody;
const slow = (extra: object = {}) => ({ pipeline: 'synthetic', params: { steps: 100, stepMs: 100, width: 8, height: 8 }, ...extra });
const status = async (id: string) => body(await sys.fetch(`/v1/jobs/${id}`));

describe('ttlSeconds', () => {
  it('fails a job that no worker started within its own time-to-live as expired; it never runs', async () => {
    const t0 = Date.now();
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, ttlSeconds: 1 });
    expect(res.status).toBe(202);
    const { id } = await body(res);
    // Another job, on the operator's two minutes, waits on.
    const other = await body(await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } }));
    const final = await waitForFinal(sys, id, 'alpha', 15_000);
    expect(final).toMatchObject({ status: 'failed', attempts: 0, error: { code: 'expired' } });
    expect(final.error?.message).toContain('1 s');
    expect(final.startedAt).toBeUndefined();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect((await status(other.id)).status).toBe('queued');

    // The worker arriving now runs the other job, never the expired one.
    await sys.addWorker();
    expect((await waitForFinal(sys, other.id)).status).toBe('completed');
    expect((await status(id)).startedAt).toBeUndefined();
  });

  it('fails a job that waits behind a busy worker past its time-to-live as expired', async () => {
    const busy = await body(await submit(sys, { pipeline: 'synthetic', params: { steps: 25, stepMs: 100 } }));
    await waitFor(async () => (await status(busy.id)).status === 'active', { what: 'the first job to start' });
    const { id } = await body(await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, ttlSeconds: 1 }));
    const final = await waitForFinal(sys, id, 'alpha', 15_000);
    expect(final).toMatchObject({ status: 'failed', error: { code: 'expired' } });
    expect(final.startedAt).toBeUndefined();
    expect((await status(busy.id)).status).not.toBe('failed');
    await waitForFinal(sys, busy.id);
  });
});

describe('timeoutSeconds', () => {
  it('fails a job that computes past its own execution limit with timeout', async () => {
    const res = await submit(sys, slow({ timeoutSeconds: 1 }));
    expect(res.status).toBe(202);
    const { id } = await body(res);
    const final = await waitForFinal(sys, id, 'alpha', 20_000);
    expect(final).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'timeout' } });
    expect(final.error?.message).toContain('1 s');
    // Stopped at its limit, far short of the 10 s it would have run.
    expect(final.durationMs).toBeLessThan(5000);
  });

  it('is taken from a multipart submit too', async () => {
    const form = multipart({ pipeline: 'synthetic', params: JSON.stringify(slow().params), timeoutSeconds: '1' });
    const { id } = await body(await submit(sys, form));
    expect(await waitForFinal(sys, id, 'alpha', 20_000)).toMatchObject({ status: 'failed', error: { code: 'timeout' } });
  });

  it('keeps both limits when the job runs again on another worker', async () => {
    // The job's first attempt is handed back when its worker stops; the next, on another worker,
    // still stops at 3 s, and is not refused as expired though it starts long after its 1 s TTL.
    const first = await sys.addWorker({ DARKROOM_SHUTDOWN_GRACE_SECONDS: '0', DARKROOM_WORKER_NAME: 'leaving' });
    for (const w of sys.workers.filter((w) => w !== first)) await w.stop('SIGTERM');
    const { id } = await body(await submit(sys, slow({ timeoutSeconds: 3, ttlSeconds: 1 })));
    await waitFor(async () => (await status(id)).status === 'active', { what: 'the job to start' });
    await first.stop('SIGTERM');
    expect((await status(id)).status).toBe('queued');
    await new Promise((r) => setTimeout(r, 1200));
    await sys.addWorker({ DARKROOM_WORKER_NAME: 'next' });
    const final = await waitForFinal(sys, id, 'alpha', 20_000);
    expect(final).toMatchObject({ status: 'failed', attempts: 2, error: { code: 'timeout' } });
    expect(final.error?.message).toContain('3 s');
  });
});

describe('limits above the operator’s, or not whole seconds', () => {
  const cases: [string, () => Promise<Response>, string][] = [
    ['timeoutSeconds above DARKROOM_JOB_TIMEOUT_SECONDS', () => submit(sys, slow({ timeoutSeconds: 61 })), 'timeoutSeconds'],
    ['ttlSeconds above DARKROOM_JOB_TTL_SECONDS', () => submit(sys, slow({ ttlSeconds: 121 })), 'ttlSeconds'],
    ['timeoutSeconds 0', () => submit(sys, slow({ timeoutSeconds: 0 })), 'timeoutSeconds'],
    ['ttlSeconds negative', () => submit(sys, slow({ ttlSeconds: -5 })), 'ttlSeconds'],
    ['timeoutSeconds a fraction', () => submit(sys, slow({ timeoutSeconds: 1.5 })), 'timeoutSeconds'],
    ['ttlSeconds not a number', () => submit(sys, slow({ ttlSeconds: 'soon' })), 'ttlSeconds'],
    ['ttlSeconds an object', () => submit(sys, slow({ ttlSeconds: { s: 1 } })), 'ttlSeconds'],
    [
      'multipart timeoutSeconds above the limit',
      () => submit(sys, multipart({ pipeline: 'synthetic', timeoutSeconds: '61' })),
      'timeoutSeconds',
    ],
    ['multipart ttlSeconds a fraction', () => submit(sys, multipart({ pipeline: 'synthetic', ttlSeconds: '0.5' })), 'ttlSeconds'],
  ];

  it.each(cases)('%s: 400 naming the field, and no job', async (_name, send, path) => {
    const before = await totalJobs(sys);
    const res = await send();
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = (await res.json()) as { code: string; detail: string; errors: { path: string; message: string }[] };
    expect(problem.code).toBe('invalid_request');
    expect(problem.errors.map((e) => e.path)).toEqual([path]);
    expect(JSON.stringify(problem)).not.toMatch(/\n\s+at |\/(tmp|work|home)\/|Redis|ERR /);
    expect(await totalJobs(sys)).toBe(before);
  });

  it('accepts exactly the operator’s limits', async () => {
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, timeoutSeconds: 60, ttlSeconds: 120 });
    expect(res.status).toBe(202);
    expect((await waitForFinal(sys, (await body(res)).id)).status).toBe('completed');
  });
});

describe('Idempotency-Key', () => {
  it('counts the limits as part of the request', async () => {
    const key = `limits-${Date.now()}`;
    const job = { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, timeoutSeconds: 30 };
    const first = await submit(sys, job, { headers: { 'idempotency-key': key } });
    expect(first.status).toBe(202);
    const again = await submit(sys, job, { headers: { 'idempotency-key': key } });
    expect(again.status).toBe(200);
    expect((await body(again)).id).toBe((await body(first)).id);
    const other = await submit(sys, { ...job, timeoutSeconds: 31 }, { headers: { 'idempotency-key': key } });
    expect(other.status).toBe(409);
    expect(((await other.json()) as { code: string }).code).toBe('conflict');
  });
});

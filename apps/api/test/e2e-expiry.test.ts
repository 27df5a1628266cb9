import type { JobStatusBody } from '@darkroom/contracts';
import { fixture, listFiles, type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

/* Time-to-live in the queue, and retention of final jobs with their files. */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({
    workers: 0,
    env: { DARKROOM_JOB_TTL_SECONDS: '1', DARKROOM_RETENTION_SECONDS: '2', DARKROOM_MAINTENANCE_INTERVAL_MS: '200' },
  });
});
afterAll(async () => {
  await sys?.stop();
});

const body = async (res: Response) => (await res.json()) as JobStatusBody;

describe('time-to-live and retention', () => {
  it('fails a job not started within its TTL as expired, and it never runs', async () => {
    const { id } = await body(await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } }));
    const final = await waitForFinal(sys, id, 'alpha', 10_000);
    expect(final).toMatchObject({ status: 'failed', attempts: 0, error: { code: 'expired' } });
    expect(final.startedAt).toBeUndefined();
    // A worker arriving later finds nothing to run.
    await sys.addWorker();
    await new Promise((r) => setTimeout(r, 500));
    expect((await body(await sys.fetch(`/v1/jobs/${id}`))).startedAt).toBeUndefined();
  });

  it('removes a final job and its files after retention: 410 for its station, 404 for others', async () => {
    if (sys.workers.length === 0) await sys.addWorker();
    const res = await submit(sys, {
      pipeline: 'edit',
      params: { operations: [{ op: 'grayscale' }] },
      imageBase64: fixture('with-alpha.png').toString('base64'),
    });
    const { id } = await body(res);
    const done = await waitForFinal(sys, id);
    expect(done.status).toBe('completed');
    expect(listFiles(sys.dataDir).filter((f) => f.includes(id))).toHaveLength(2); // input and output

    await waitFor(async () => (await sys.fetch(`/v1/jobs/${id}`)).status === 410, { timeoutMs: 15_000, what: 'retention' });
    const gone = await sys.fetch(`/v1/jobs/${id}`);
    expect(gone.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(((await gone.json()) as { code: string }).code).toBe('expired');
    const result = await sys.fetch(`/v1/jobs/${id}/result`);
    expect(result.status).toBe(410);
    expect(((await result.json()) as { code: string }).code).toBe('expired');
    expect((await sys.fetch(`/v1/jobs/${id}`, { station: 'beta' })).status).toBe(404);
    expect((await sys.fetch('/v1/jobs/edit_zzzzzzzzzzzzzzzzzzzzzzzz')).status).toBe(404);
    const list = (await (await sys.fetch(`/v1/jobs?ids=${id}`)).json()) as { jobs: unknown[] };
    expect(list.jobs).toEqual([]);
    expect(listFiles(sys.dataDir).filter((f) => f.includes(id))).toEqual([]);
    expect(listFiles(sys.dataDir).filter((f) => f.startsWith('tmp/'))).toEqual([]);
  });
});

import type { JobStatusBody } from '@darkroom/contracts';
import { type System, spawnApp, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

/* One log line per job state change, each naming the job, its pipeline and station; JSON when piped, pretty in a terminal. */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({ env: { DARKROOM_JOB_TIMEOUT_SECONDS: '1' } });
});
afterAll(async () => {
  await sys?.stop();
});

const linesOf = (id: string) =>
  [sys.api, ...sys.workers]
    .flatMap((p) => p.output().split('\n'))
    .filter((l) => l.includes(`"jobId":"${id}"`))
    .map((l) => JSON.parse(l) as { msg: string; pipeline: string; station: string; durationMs?: number; level: number });

describe('job logs', () => {
  it('writes queued, started and completed lines with job, pipeline, station and duration', async () => {
    const { id } = (await (await submit(sys, { pipeline: 'synthetic', params: { steps: 2, stepMs: 10 } })).json()) as JobStatusBody;
    await waitForFinal(sys, id);
    await new Promise((r) => setTimeout(r, 200));
    const lines = linesOf(id).filter((l) => l.level >= 30);
    expect(lines.map((l) => l.msg)).toEqual(['job queued', 'job started', 'job completed']);
    for (const l of lines) expect([l.pipeline, l.station]).toEqual(['synthetic', 'alpha']);
    expect(lines.at(-1)!.durationMs).toBeGreaterThanOrEqual(20);
  });

  it('writes a failure line with its duration and reason', async () => {
    const { id } = (await (await submit(sys, { pipeline: 'synthetic', params: { steps: 50, stepMs: 100 } })).json()) as JobStatusBody;
    await waitForFinal(sys, id);
    await new Promise((r) => setTimeout(r, 200));
    const failed = linesOf(id).find((l) => l.msg === 'job failed') as { durationMs: number; reason: string } | undefined;
    expect(failed?.reason).toMatch(/^\[timeout\]/);
    expect(failed?.durationMs).toBeGreaterThanOrEqual(900);
  });

  it('prints pretty lines instead of JSON when asked (as in a terminal)', async () => {
    const api = spawnApp('api', { ...sys.env, PORT: '0', DARKROOM_LOG_PRETTY: 'true' });
    try {
      await api.waitForOutput(/api listening/);
      const line = api
        .output()
        .split('\n')
        .find((l) => l.includes('api listening'))!;
      expect(line.trim().startsWith('{')).toBe(false);
      expect(line).toMatch(/INFO/);
    } finally {
      await api.stop('SIGKILL');
    }
  });
});

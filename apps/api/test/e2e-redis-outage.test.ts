import type { JobStatusBody } from '@darkroom/contracts';
import { type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

let sys: System;
beforeAll(async () => {
  sys = await startSystem({ redis: { needPrivate: true, appendonly: 'always' } });
});
afterAll(async () => {
  await sys?.stop();
});

describe('the queue store goes away and comes back', () => {
  it('answers 503 with Retry-After at once while Redis is down, and recovers by itself', async () => {
    const before = (await (await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } })).json()) as JobStatusBody;
    await waitForFinal(sys, before.id);

    await sys.redis.kill(true);
    // A hang would trip the 5 s abort and fail the test; the answer must be a 503 problem.
    const probes = [
      () => submit(sys, { pipeline: 'synthetic' }),
      () => sys.fetch(`/v1/jobs/${before.id}`, { signal: AbortSignal.timeout(5000) }),
      () => sys.fetch('/v1/queue', { signal: AbortSignal.timeout(5000) }),
      () => fetch(`${sys.url}/readyz`, { signal: AbortSignal.timeout(5000) }),
    ];
    for (const probe of probes) {
      const res = await probe();
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const body = (await res.json()) as { code: string; detail: string };
      expect(body.code).toBe('unavailable');
      expect(body.detail).not.toMatch(/ECONN|127\.0\.0\.1|redis:\/\//i);
      if (res.url.includes('/v1/')) expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    expect((await fetch(`${sys.url}/healthz`)).status).toBe(200);

    await sys.redis.restart();
    // Neither process was restarted: both reconnect, and a new job goes all the way through.
    const accepted = await waitFor(
      async () => {
        const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 2, stepMs: 10 } });
        return res.status === 202 ? ((await res.json()) as JobStatusBody) : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'the API to accept jobs again' },
    );
    const final = await waitForFinal(sys, accepted.id, 'alpha', 30_000);
    expect(final.status).toBe('completed');
    // The job completed before the outage survived it (append-only persistence).
    expect((await (await sys.fetch(`/v1/jobs/${before.id}`)).json()) as JobStatusBody).toMatchObject({ status: 'completed' });
  });
});

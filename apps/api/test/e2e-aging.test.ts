import type { JobStatusBody } from '@darkroom/contracts';
import { type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

/*
 * No starvation: under a steady stream of high-priority work, a low-priority job is not passed
 * for ever by work that arrives after it. Aging promotes every waiting job by its age, so once
 * the low job has waited the maximum wait it runs ahead of younger high jobs (jobs older than
 * it, aged too, still go first: at the limit the order is by age).
 */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({ env: { DARKROOM_MAX_WAIT_SECONDS: '2', DARKROOM_MAINTENANCE_INTERVAL_MS: '200' } });
});
afterAll(async () => {
  await sys?.stop();
});

it('promotes a waiting low-priority job past a steady stream of high-priority work', async () => {
  const high: string[] = [];
  const submitHigh = async () => {
    const res = await submit(sys, { pipeline: 'synthetic', priority: 'high', params: { steps: 1, stepMs: 250 } });
    high.push(((await res.json()) as JobStatusBody).id);
  };
  for (let i = 0; i < 12; i++) await submitHigh(); // about 3 s of work queued ahead
  const low = (
    (await (await submit(sys, { pipeline: 'synthetic', priority: 'low', params: { steps: 1, stepMs: 0 } })).json()) as JobStatusBody
  ).id;
  // Keep high work arriving while the low job waits.
  for (let i = 0; i < 12; i++) {
    await submitHigh();
    await new Promise((r) => setTimeout(r, 200));
  }
  const lowFinal = await waitForFinal(sys, low, 'alpha', 30_000);
  const highFinals = await Promise.all(high.map((id) => waitForFinal(sys, id, 'alpha', 30_000)));
  const lowStart = Date.parse(lowFinal.startedAt!);
  const queuedAfterLow = highFinals.slice(12);
  // Without aging every high job, later ones included, would start before the low one.
  const overtaken = queuedAfterLow.filter((h) => Date.parse(h.startedAt!) > lowStart);
  expect(lowFinal.status).toBe('completed');
  expect(overtaken.length).toBeGreaterThan(0);
  expect(lowFinal.priority).toBe('low'); // the requested priority is what stations see
});

import { type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { submit } from './helpers.ts';

let sys: System;
beforeAll(async () => {
  sys = await startSystem({ workers: 0, env: { DARKROOM_MAX_QUEUE_SIZE: '2' } });
});
afterAll(async () => {
  await sys?.stop();
});

it('answers 429 queue_full with Retry-After once a pipeline holds its limit, per pipeline', async () => {
  for (let i = 0; i < 2; i++) expect((await submit(sys, { pipeline: 'synthetic' })).status).toBe(202);
  const full = await submit(sys, { pipeline: 'synthetic' });
  expect(full.status).toBe(429);
  expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  expect(await full.json()).toMatchObject({ status: 429, code: 'queue_full' });
  const queue = (await (await sys.fetch('/v1/queue')).json()) as { pipelines: { name: string; waiting: { total: number } }[] };
  expect(queue.pipelines.find((p) => p.name === 'synthetic')!.waiting.total).toBe(2);
  // Another pipeline's queue is not affected.
  const other = await submit(sys, {
    pipeline: 'edit',
    params: { operations: [] },
    imageBase64: (await import('@darkroom/testing')).fixture('with-alpha.png').toString('base64'),
  });
  expect(other.status).toBe(202);
});

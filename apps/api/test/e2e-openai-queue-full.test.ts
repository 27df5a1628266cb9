import { STATIONS, type System, startSystem } from '@darkroom/testing';
import OpenAI, { RateLimitError } from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { submit } from './helpers.ts';

let sys: System;
beforeAll(async () => {
  sys = await startSystem({ workers: 0, env: { DARKROOM_MAX_QUEUE_SIZE: '1' } });
});
afterAll(async () => {
  await sys?.stop();
});

it('raises RateLimitError with Retry-After when the pipeline’s queue is full, and queues nothing', async () => {
  expect((await submit(sys, { pipeline: 'synthetic' })).status).toBe(202);
  const client = new OpenAI({ apiKey: STATIONS.alpha.key, baseURL: `${sys.url}/v1`, maxRetries: 0 });
  const err = await client.images.generate({ model: 'synthetic', prompt: 'x' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(RateLimitError);
  const e = err as RateLimitError;
  expect(e.status).toBe(429);
  expect(e.error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
  expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
  const queue = (await (await sys.fetch('/v1/queue')).json()) as { pipelines: { name: string; waiting: { total: number } }[] };
  expect(queue.pipelines.find((p) => p.name === 'synthetic')!.waiting.total).toBe(1);
});

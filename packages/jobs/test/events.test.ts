import { newJobId, queueOptions } from '@darkroom/jobs';
import { loadConfig } from '@darkroom/runtime';
import { type RedisHandle, startRedis, uniquePrefix, waitFor } from '@darkroom/testing';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventHub, type JobChange } from '../src/events.ts';

/* The event hub against a real Redis and real BullMQ events: subscriptions open on demand, lose nothing, close when idle. */

let redis: RedisHandle;
let conn: Redis;
const logger = pino({ level: 'silent' });

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  conn?.disconnect();
  await redis?.stop();
});

function setup(idleCloseMs = 60_000) {
  const prefix = uniquePrefix();
  const config = loadConfig({ REDIS_URL: redis.url, DARKROOM_REDIS_PREFIX: prefix });
  const queue = new Queue('synthetic', { ...queueOptions(config, conn as never) });
  const hub = new EventHub(config, conn, ['synthetic', 'edit'], logger, { idleCloseMs });
  return { config, queue, hub };
}

describe('EventHub', () => {
  it('reads no event stream until something watches, then one per pipeline however many watch', async () => {
    const { queue, hub } = setup();
    try {
      await queue.add('synthetic', { n: 1 }, { jobId: newJobId('synthetic') });
      expect(hub.subscribed).toEqual([]);
      const ids = Array.from({ length: 20 }, () => newJobId('synthetic'));
      const stops = ids.map((id) => hub.watch(id, () => {}));
      expect(hub.subscribed).toEqual(['synthetic']);
      for (const stop of stops) stop();
      stops[0]!(); // a second call changes nothing
      expect(hub.subscribed).toEqual(['synthetic']); // until it has been idle a while
    } finally {
      await hub.close();
      await queue.close();
    }
  });

  it('tells watchers of every change, and of a change made before the subscription was up', async () => {
    const { queue, hub, config } = setup();
    const worker = new Worker('synthetic', async () => ({ ok: true }), {
      connection: new Redis(redis.url, { maxRetriesPerRequest: null }) as never,
      prefix: config.prefix,
      autorun: false,
    });
    try {
      // Queued before anyone watched; the watcher's first "resync" covers it.
      const early = newJobId('synthetic');
      await queue.add('synthetic', {}, { jobId: early });
      const seenEarly: JobChange[] = [];
      const stopEarly = hub.watch(early, (c) => seenEarly.push(c));
      await waitFor(() => seenEarly.includes('resync'), { timeoutMs: 5000 });
      // Then every state change arrives as an event.
      const later = newJobId('synthetic');
      const seenLater: JobChange[] = [];
      const stopLater = hub.watch(later, (c) => seenLater.push(c));
      await queue.add('synthetic', {}, { jobId: later });
      void worker.run();
      await waitFor(() => seenLater.filter((c) => c === 'state').length >= 3, { timeoutMs: 10_000 }); // waiting, active, completed
      await waitFor(() => seenEarly.filter((c) => c === 'state').length >= 2, { timeoutMs: 10_000 }); // active, completed
      stopEarly();
      stopLater();
    } finally {
      await worker.close();
      await hub.close();
      await queue.close();
    }
  });

  it('closes a pipeline’s subscription once nothing has watched it for a while, and reopens it on demand', async () => {
    const { queue, hub } = setup(200);
    try {
      const stop = hub.watch(newJobId('edit'), () => {});
      expect(hub.subscribed).toEqual(['edit']);
      stop();
      await waitFor(() => hub.subscribed.length === 0, { timeoutMs: 5000 });
      const seen: JobChange[] = [];
      const again = hub.watch(newJobId('edit'), (c) => seen.push(c));
      expect(hub.subscribed).toEqual(['edit']);
      await waitFor(() => seen.includes('resync'), { timeoutMs: 5000 });
      again();
    } finally {
      await hub.close();
      await queue.close();
    }
  });
});

import { type RedisHandle, startRedis, uniquePrefix, waitFor } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelWatch } from '../src/cancel-watch.ts';

/*
 * When the worker may skip reading the cancel flag: only for a first activation taken after its
 * subscription was confirmed, and never across a break in that subscription.
 */

let redis: RedisHandle;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('cancel watch', () => {
  it('hears cancels, and trusts the channel only for first activations since an unbroken subscription', async () => {
    const channel = `${uniquePrefix('cw')}:cancel`;
    const sub = new Redis(redis.url, { maxRetriesPerRequest: null, connectionName: 'watch' });
    sub.on('error', () => {});
    const pub = new Redis(redis.url);
    const heard: string[] = [];
    const watch = new CancelWatch(sub, channel, (id) => heard.push(id));
    try {
      const before = Date.now() - 1;
      await watch.start();
      await new Promise((r) => setTimeout(r, 5));
      const taken = Date.now();
      expect(watch.covers({ processedOn: before, attemptsStarted: 1 })).toBe(false);
      expect(watch.covers({ processedOn: taken, attemptsStarted: 1 })).toBe(true);
      expect(watch.covers({ processedOn: taken, attemptsStarted: 2 })).toBe(false);

      await pub.publish(channel, 'job-1');
      await waitFor(() => heard.includes('job-1'), { what: 'the message' });
      expect(watch.heard('job-1')).toBe(true);
      expect(watch.heard('job-2')).toBe(false);

      // A break in the subscription: nothing taken before it is covered, even after it is back.
      await pub.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitFor(() => sub.status !== 'ready' || !watch.covers({ processedOn: taken, attemptsStarted: 1 }), { what: 'the break' });
      await waitFor(() => watch.covers({ processedOn: Date.now() + 1, attemptsStarted: 1 }), { what: 'the subscription back' });
      expect(watch.covers({ processedOn: taken, attemptsStarted: 1 })).toBe(false);
      await pub.publish(channel, 'job-3');
      await waitFor(() => heard.includes('job-3'), { what: 'a message after the break' });
    } finally {
      sub.disconnect();
      pub.disconnect();
    }
  });
});

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type RedisHandle, startRedis, uniquePrefix, waitFor } from '@darkroom/testing';
import {
  createWebhookProcessor,
  WEBHOOK_QUEUE,
  type WebhookJobData,
  type WebhookResult,
  webhookJobId,
  webhookJobOptions,
} from '@darkroom/webhooks';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The processor on a real BullMQ queue and a real Redis: retryable failures are retried with the
 * job's backoff, permanent ones stop at the first attempt whatever `attempts` says.
 */

const SECRET = 'whsec_bullmq_0123456789abcdef';

let redis: RedisHandle;
let connection: Redis;
let server: http.Server;
let base: string;
const hits = new Map<string, Array<{ delivery: string | undefined; id: string | undefined }>>();
const script = new Map<string, number[]>(); // path -> statuses to answer in turn (the last repeats)

beforeAll(async () => {
  redis = await startRedis();
  connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const path = req.url ?? '/';
      const list = hits.get(path) ?? [];
      list.push({ delivery: req.headers['darkroom-delivery'] as string | undefined, id: req.headers['webhook-id'] as string | undefined });
      hits.set(path, list);
      const statuses = script.get(path) ?? [200];
      res.statusCode = statuses[Math.min(list.length - 1, statuses.length - 1)] ?? 200;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  connection?.disconnect();
  await redis?.stop();
});

async function withQueue<T>(fn: (queue: Queue<WebhookJobData, WebhookResult>) => Promise<T>): Promise<T> {
  const prefix = uniquePrefix('wh');
  const queue = new Queue<WebhookJobData, WebhookResult>(WEBHOOK_QUEUE, { connection, prefix });
  const worker = new Worker<WebhookJobData, WebhookResult>(
    WEBHOOK_QUEUE,
    createWebhookProcessor({ secretFor: () => SECRET, allowPrivate: true, timeoutMs: 2_000, logger: pino({ level: 'silent' }) }),
    { connection: connection.duplicate(), prefix },
  );
  try {
    return await fn(queue);
  } finally {
    await worker.close();
    await queue.close();
  }
}

function data(path: string, jobId: string): WebhookJobData {
  return { url: `${base}${path}`, station: 'front-desk', jobId, event: 'job.completed', body: JSON.stringify({ id: jobId }) };
}

describe('webhook processor on BullMQ', () => {
  it('retries a 500 with backoff and completes on the next try, with one delivery id', async () => {
    script.set('/retry', [500, 200]);
    await withQueue(async (queue) => {
      const jobId = 'edit_retry';
      await queue.add('job.completed', data('/retry', jobId), {
        ...webhookJobOptions({ attempts: 3, backoffMs: 10 }),
        jobId: webhookJobId(jobId),
      });
      await waitFor(async () => (await queue.getJob(webhookJobId(jobId)))?.isCompleted(), { what: 'the webhook job to complete' });
      const job = (await queue.getJob(webhookJobId(jobId)))!; // read once it is final
      expect(job.returnvalue).toEqual({ status: 200 });
      expect(job.attemptsMade).toBe(2);
      expect(hits.get('/retry')).toEqual([
        { delivery: 'wh_edit_retry', id: 'wh_edit_retry' },
        { delivery: 'wh_edit_retry', id: 'wh_edit_retry' },
      ]);
    });
  });

  it('fails a 404 at the first attempt although more are allowed', async () => {
    script.set('/gone', [404]);
    await withQueue(async (queue) => {
      const jobId = 'edit_gone';
      await queue.add('job.completed', data('/gone', jobId), {
        ...webhookJobOptions({ attempts: 6, backoffMs: 10 }),
        jobId: webhookJobId(jobId),
      });
      await waitFor(async () => (await queue.getJob(webhookJobId(jobId)))?.isFailed(), { what: 'the webhook job to fail' });
      const job = (await queue.getJob(webhookJobId(jobId)))!; // read once it is final
      expect(job.attemptsMade).toBe(1);
      expect(job.failedReason).toMatch(/404/);
      expect(hits.get('/gone')).toHaveLength(1);
    });
  });

  it('gives up after the configured attempts on a receiver that keeps failing', async () => {
    script.set('/down', [503]);
    await withQueue(async (queue) => {
      const jobId = 'edit_down';
      await queue.add('job.completed', data('/down', jobId), {
        ...webhookJobOptions({ attempts: 3, backoffMs: 10 }),
        jobId: webhookJobId(jobId),
      });
      await waitFor(async () => (await queue.getJob(webhookJobId(jobId)))?.isFailed(), { what: 'the webhook job to fail' });
      // Read again once it is failed: a copy read before the last attempt ended would show one attempt fewer.
      const job = (await queue.getJob(webhookJobId(jobId)))!;
      expect(job.attemptsMade).toBe(3);
      expect(hits.get('/down')).toHaveLength(3);
    });
  });

  it('adds one webhook job per job id', async () => {
    await withQueue(async (queue) => {
      const opts = { ...webhookJobOptions(), jobId: webhookJobId('edit_once'), delay: 60_000 };
      await queue.add('job.completed', data('/once', 'edit_once'), opts);
      await queue.add('job.completed', data('/once', 'edit_once'), opts);
      expect(await queue.getJobCounts('delayed')).toEqual({ delayed: 1 });
    });
  });
});

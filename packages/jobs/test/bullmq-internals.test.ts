import { readFileSync } from 'node:fs';
import type { JobData, JobResultData } from '@darkroom/contracts';
import { loadConfig } from '@darkroom/runtime';
import { type RedisHandle, startRedis, uniquePrefix, waitFor } from '@darkroom/testing';
import { Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobsInProgress, PRIORITY_SCORE_SPAN, priorityScoreRange, queueClient } from '../src/bullmq.ts';
import { endWaitingJob } from '../src/end-waiting.ts';
import { finishedState, statusOf } from '../src/job-view.ts';
import { queueOptions } from '../src/queues.ts';

/*
 * One test per BullMQ internal that Darkroom relies on (src/bullmq.ts, src/lua/, the worker's
 * slot gate). BullMQ is pinned to one version; an upgrade that moves any of these fails here.
 */

let redis: RedisHandle;
let conn: Redis;

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  conn?.disconnect();
  await redis?.stop();
});

function queue(name = 'synthetic') {
  const config = loadConfig({ REDIS_URL: redis.url, DARKROOM_REDIS_PREFIX: uniquePrefix() });
  return { config, queue: new Queue<JobData, JobResultData>(name, queueOptions(config, conn)) };
}

const data = (over: Partial<JobData> = {}): JobData => ({
  v: 1,
  station: 's1',
  pipeline: 'synthetic',
  priority: 'normal',
  params: {},
  timeoutMs: 60_000,
  ...over,
});

describe('BullMQ internals Darkroom relies on', () => {
  it('is the pinned version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../node_modules/bullmq/package.json', import.meta.url), 'utf8')) as { version: string };
    expect(pkg.version).toBe('6.7.0');
  });

  it('keys: <prefix>:<queue>:<name> for the sets and lists the scripts touch, and the job hash at <prefix>:<queue>:<id>', async () => {
    const { config, queue: q } = queue();
    try {
      await q.add('synthetic', data(), { jobId: 'synthetic_k1', priority: 3 });
      await q.add('synthetic', data(), { jobId: 'synthetic_k2' });
      await q.add('synthetic', data(), { jobId: 'synthetic_k3', delay: 60_000 });
      const base = `${config.prefix}:synthetic`;
      for (const name of ['prioritized', 'wait', 'delayed', 'events', 'meta', 'synthetic_k1'])
        expect(q.toKey(name)).toBe(`${base}:${name}`);
      expect(await conn.zrange(`${base}:prioritized`, '0', '-1')).toEqual(['synthetic_k1']);
      expect(await conn.lrange(`${base}:wait`, 0, -1)).toEqual(['synthetic_k2']);
      expect(await conn.zrange(`${base}:delayed`, '0', '-1')).toEqual(['synthetic_k3']);
      expect(await conn.hget(`${base}:synthetic_k1`, 'timestamp')).toMatch(/^\d+$/);
      expect(await conn.hget(`${base}:meta`, 'opts.maxLenEvents')).toBe('2000');
      expect(await conn.xlen(`${base}:events`)).toBeGreaterThan(0);
    } finally {
      await q.obliterate({ force: true });
      await q.close();
    }
  });

  it('scores prioritized jobs priority·2^32 + arrival counter, so a class is one score range in arrival order', async () => {
    const { queue: q } = queue();
    try {
      for (const [i, p] of [2, 1, 2, 3, 1].entries()) await q.add('synthetic', data(), { jobId: `synthetic_p${i}`, priority: p });
      const scored = await conn.zrange(q.toKey('prioritized'), '0', '-1', 'WITHSCORES');
      const rows = [];
      for (let i = 0; i < scored.length; i += 2) rows.push([scored[i], Number(scored[i + 1])] as const);
      expect(rows.map(([id]) => id)).toEqual(['synthetic_p1', 'synthetic_p4', 'synthetic_p0', 'synthetic_p2', 'synthetic_p3']);
      for (const [id, score] of rows) {
        const p = Number((await q.getJob(id!))!.opts.priority);
        const [low, high] = priorityScoreRange(p);
        expect(score).toBeGreaterThanOrEqual(low);
        expect(score).toBeLessThanOrEqual(high);
        expect(Math.floor(score / PRIORITY_SCORE_SPAN)).toBe(p);
      }
      // Within a class, the counter keeps arrival order.
      expect(rows[2]![1]).toBeLessThan(rows[3]![1] + PRIORITY_SCORE_SPAN);
      expect(rows[0]![1]).toBeLessThan(rows[1]![1]);
    } finally {
      await q.obliterate({ force: true });
      await q.close();
    }
  });

  it('adds a job on the queue connection with Job#addJob, corked with other commands, as Queue#add would', async () => {
    const { queue: q } = queue();
    try {
      const client = await queueClient(q);
      const job = new Job<JobData, JobResultData>(q, 'synthetic', data(), { ...q.defaultJobOptions, priority: 2 }, 'synthetic_raw');
      client.stream.cork();
      const sent = [job.addJob(client as never), client.zrank(q.toKey('prioritized'), 'synthetic_raw')];
      client.stream.uncork();
      const [id, rank] = await Promise.all(sent);
      expect([id, rank]).toEqual(['synthetic_raw', 0]);
      const read = await Job.fromId<JobData, JobResultData>(q, 'synthetic_raw');
      expect(read?.data).toEqual(data());
      expect(await read!.getState()).toBe('prioritized');
    } finally {
      await q.obliterate({ force: true });
      await q.close();
    }
  });

  it('ends a waiting job from outside a worker (lua/end-waiting.lua) the way BullMQ records a failure', async () => {
    const { queue: q } = queue();
    try {
      await q.add('synthetic', data(), { jobId: 'synthetic_e1', priority: 2 });
      await q.add('synthetic', data(), { jobId: 'synthetic_e2' });
      await q.add('synthetic', data(), { jobId: 'synthetic_e3', delay: 60_000 });
      for (const id of ['synthetic_e1', 'synthetic_e2', 'synthetic_e3']) {
        expect(await endWaitingJob(conn, q, id, '[cancelled] cancelled on request')).toBe(true);
        const job = (await Job.fromId<JobData, JobResultData>(q, id))!;
        expect(await job.getState()).toBe('failed');
        expect(finishedState(job)).toBe('failed');
        expect(statusOf('failed', job)).toBe('cancelled');
      }
      expect(await endWaitingJob(conn, q, 'synthetic_e1', 'again')).toBe(false);
      const events = await conn.xrange(q.toKey('events'), '-', '+');
      const failed = events.filter(([, f]) => f[1] === 'failed').map(([, f]) => f[3]);
      expect(failed).toEqual(['synthetic_e1', 'synthetic_e2', 'synthetic_e3']);
    } finally {
      await q.obliterate({ force: true });
      await q.close();
    }
  });

  it('has the protected Worker members the device-slot gate overrides, and the private set of jobs in progress', async () => {
    const proto = Worker.prototype as unknown as Record<string, unknown>;
    for (const name of ['moveToActive', 'handleCompleted', 'handleFailed']) expect(typeof proto[name], name).toBe('function');
    const params = (name: string) =>
      /^[^(]*\(([\s\S]*?)\)\s*\{/
        .exec(String(proto[name]))?.[1]
        ?.replace(/\s*=[^,]*/g, '')
        .split(/,\s*/);
    expect(params('moveToActive')).toEqual(['token', 'name']);
    expect(params('handleCompleted')).toEqual(['result', 'job', 'token', 'fetchNextCallback', 'span']);
    expect(params('handleFailed')).toEqual(['err', 'job', 'token', 'fetchNextCallback', 'span']);

    const { config, queue: q } = queue();
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const w = new Worker<JobData, JobResultData>('synthetic', () => held.then(() => ({}) as JobResultData), {
      connection: conn.duplicate(),
      prefix: config.prefix,
      concurrency: 2,
    });
    try {
      expect(jobsInProgress(w)).toBe(0);
      await q.add('synthetic', data(), { jobId: 'synthetic_w1' });
      await waitFor(() => jobsInProgress(w) === 1, { timeoutMs: 10_000 });
      release();
      await waitFor(() => jobsInProgress(w) === 0, { timeoutMs: 10_000 });
    } finally {
      release();
      await w.close();
      await q.obliterate({ force: true });
      await q.close();
    }
  });
});

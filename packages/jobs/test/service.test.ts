import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '@darkroom/runtime';
import { fixture, type RedisHandle, startRedis, uniquePrefix } from '@darkroom/testing';
import { webhookJobId } from '@darkroom/webhooks';
import { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CLAIM_LEASE_MS,
  createJobSystem,
  decodeJobCursor,
  FsBlobStore,
  IdempotencyConflict,
  InvalidImage,
  JobExpired,
  JobService,
  JobStateConflict,
  Maintenance,
  QueueFull,
  ReplicasUnavailable,
  type Station,
  StationBusy,
  sysKeys,
  UnsupportedImage,
  validateSubmit,
} from '../src/index.ts';

/*
 * The job service in process, against a real Redis and a real data directory: submit and
 * admission, idempotency, cancel, expiry and retention, each leaving the Redis state and the
 * files a station would expect, and nothing more.
 */

let redis: RedisHandle;
let conn: Redis;
const logger = pino({ level: 'silent' });
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});
afterAll(async () => {
  conn?.disconnect();
  await redis?.stop();
});

const station = (over: Partial<Station> = {}): Station => ({
  name: 'kiosk1',
  maxPriority: 'critical',
  defaultPriority: 'normal',
  maxPending: 100,
  requestsPerMinute: null,
  webhookSecret: 'a-secret-of-some-length',
  weight: 1,
  ...over,
});

async function setup(env: Record<string, string> = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-jobs-'));
  const config = loadConfig({ REDIS_URL: redis.url, DARKROOM_REDIS_PREFIX: uniquePrefix(), DARKROOM_DATA_DIR: dataDir, ...env });
  const blobs = new FsBlobStore(dataDir);
  await blobs.ensureReady();
  const notified: string[] = [];
  const deps = createJobSystem({ config, logger, redis: conn, blobs });
  const notify = deps.events.notify.bind(deps.events);
  deps.events.notify = (id: string) => {
    notified.push(id);
    notify(id);
  };
  const { webhooks } = deps;
  const jobs = new JobService(deps);
  closers.push(
    () => deps.close(),
    async () => fs.rmSync(dataDir, { recursive: true, force: true }),
  );
  const files = (dir: 'inputs' | 'outputs' | 'tmp') => fs.readdirSync(path.join(dataDir, dir));
  const pending = (name = 'kiosk1') => conn.smembers(sysKeys(config.prefix).pending(name));
  const submit = (raw: Record<string, unknown>, s = station(), opts: { idempotencyKey?: string } = {}) =>
    jobs.submit(validateSubmit({ errors: [], ...raw }, s, { webhookSecretAvailable: true }), s, opts);
  return { config, jobs, deps, webhooks, notified, files, pending, submit };
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

describe('JobService in process', () => {
  it('queues a job with its input stored, its position, and a pending entry for its station', async () => {
    const t = await setup();
    const image = fixture('with-alpha.png');
    const { body, deduplicated } = await t.submit({ pipeline: 'edit', params: { operations: [{ op: 'flip' }] }, image });
    expect(deduplicated).toBe(false);
    expect(body).toMatchObject({ status: 'queued', pipeline: 'edit', priority: 'normal', position: 1, attempts: 0 });
    expect(t.files('inputs')).toEqual([body.id]);
    expect(fs.readFileSync(path.join(t.config.dataDir, 'inputs', body.id))).toEqual(image);
    expect(await t.pending()).toEqual([body.id]);
    const second = await t.submit({ pipeline: 'edit', params: { operations: [] }, image });
    expect(second.body.position).toBe(2);
    const loaded = (await t.jobs.load(body.id, { station: station() }))!;
    expect((await t.jobs.view(loaded)).position).toBe(1);
    expect(await t.jobs.load(body.id, { station: station({ name: 'other' }) })).toBeUndefined();
  });

  it('refuses images by their bytes, leaving no job, file, pending entry or idempotency key', async () => {
    const t = await setup();
    const cases: [Buffer, new (...a: never[]) => Error][] = [
      [fixture('truncated.png'), InvalidImage],
      [fixture('corrupt-header.jpg'), InvalidImage],
      [fixture('check.svg'), UnsupportedImage],
    ];
    for (const [image, kind] of cases) {
      const err = await refusal(t.submit({ pipeline: 'edit', params: { operations: [] }, image }, station(), { idempotencyKey: 'k1' }));
      expect(err).toBeInstanceOf(kind);
    }
    expect(t.files('inputs')).toEqual([]);
    expect(await t.pending()).toEqual([]);
    expect(await conn.keys(`${t.config.prefix}:*`)).not.toContainEqual(expect.stringContaining(':idem:'));
    expect(await t.deps.queues.get('edit')!.getJobCounts()).toMatchObject({ prioritized: 0, waiting: 0 });
  });

  it('answers a repeated Idempotency-Key with the original job, and a different request under it with IdempotencyConflict', async () => {
    const t = await setup();
    const a = await t.submit({ pipeline: 'synthetic', params: { steps: 2 } }, station(), { idempotencyKey: 'order-7' });
    const b = await t.submit({ pipeline: 'synthetic', params: { steps: 2 } }, station(), { idempotencyKey: 'order-7' });
    expect(b).toMatchObject({ deduplicated: true, body: { id: a.body.id, deduplicated: true } });
    expect(
      await refusal(t.submit({ pipeline: 'synthetic', params: { steps: 3 } }, station(), { idempotencyKey: 'order-7' })),
    ).toBeInstanceOf(IdempotencyConflict);
    expect(await t.deps.queues.get('synthetic')!.count()).toBe(1);
  });

  it('takes over a claim whose process died before creating its job, once the claim is older than its lease', async () => {
    const t = await setup();
    const claimKey = async () => sysKeys(t.config.prefix).idempotency('kiosk1', createHash('sha256').update('order-9').digest('hex'));
    // A process claimed the key, then died before adding its job.
    const a = await t.submit({ pipeline: 'synthetic', params: { steps: 2 } }, station(), { idempotencyKey: 'order-9' });
    const orphan = JSON.parse((await conn.get(await claimKey()))!) as { fp: string; jobId: string; at: number };
    const lost = { ...orphan, jobId: a.body.id.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a')), at: Date.now() };
    await conn.set(await claimKey(), JSON.stringify(lost));
    // Within the lease the claim stands: the retry is told to come back.
    const early = await refusal(t.submit({ pipeline: 'synthetic', params: { steps: 2 } }, station(), { idempotencyKey: 'order-9' }));
    expect(early).toBeInstanceOf(IdempotencyConflict);
    // Past it, the retry takes the key over and creates the job, once.
    await conn.set(await claimKey(), JSON.stringify({ ...lost, at: Date.now() - CLAIM_LEASE_MS - 1 }));
    const retry = await t.submit({ pipeline: 'synthetic', params: { steps: 2 } }, station(), { idempotencyKey: 'order-9' });
    expect(retry.deduplicated).toBe(false);
    const again = await t.submit({ pipeline: 'synthetic', params: { steps: 2 } }, station(), { idempotencyKey: 'order-9' });
    expect(again).toMatchObject({ deduplicated: true, body: { id: retry.body.id } });
    // A stale claim whose job exists is never taken over.
    await conn.set(await claimKey(), JSON.stringify({ ...JSON.parse((await conn.get(await claimKey()))!), at: 1 }));
    const late = await t.submit({ pipeline: 'synthetic', params: { steps: 2 } }, station(), { idempotencyKey: 'order-9' });
    expect(late).toMatchObject({ deduplicated: true, body: { id: retry.body.id } });
    expect(await t.deps.queues.get('synthetic')!.count()).toBe(2);
  }, 30_000);

  it('withdraws a job its replicas did not confirm in time: ReplicasUnavailable, and no job, file, pending entry or idempotency key', async () => {
    // This Redis has no replica: a submit that must reach one cannot.
    for (const env of [{}, { DARKROOM_MAX_QUEUE_SIZE: 'off' }] as Record<string, string>[]) {
      const t = await setup({ DARKROOM_REDIS_MIN_REPLICAS: '1', DARKROOM_REDIS_REPLICA_TIMEOUT_MS: '50', ...env });
      const s = station(env.DARKROOM_MAX_QUEUE_SIZE ? { maxPending: null } : {});
      const image = fixture('with-alpha.png');
      const err = (await refusal(
        t.submit({ pipeline: 'edit', params: { operations: [] }, image }, s, { idempotencyKey: 'k-repl' }),
      )) as ReplicasUnavailable;
      expect(err).toBeInstanceOf(ReplicasUnavailable);
      expect(err.retryAfterSeconds).toBeGreaterThan(0);
      expect(t.files('inputs')).toEqual([]);
      expect(await t.pending()).toEqual([]);
      const keys = await conn.keys(`${t.config.prefix}:*`);
      expect(keys.filter((k) => k.includes(':idem:') || /:edit:edit_/.test(k))).toEqual([]);
      expect(await conn.xlen(sysKeys(t.config.prefix).jobIndex('kiosk1'))).toBe(0);
      expect(await t.deps.queues.get('edit')!.getJobCounts()).toMatchObject({ prioritized: 0, waiting: 0, active: 0 });
    }
  });

  it('refuses past the station’s pending limit and the queue’s, with a retry time, adding nothing', async () => {
    const t = await setup({ DARKROOM_MAX_QUEUE_SIZE: '3' });
    const small = station({ maxPending: 2 });
    await t.submit({ pipeline: 'synthetic' }, small);
    await t.submit({ pipeline: 'synthetic' }, small);
    const busy = (await refusal(t.submit({ pipeline: 'synthetic' }, small))) as StationBusy;
    expect(busy).toBeInstanceOf(StationBusy);
    expect(busy.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    await t.submit({ pipeline: 'synthetic' }, station({ name: 'kiosk2' }));
    const full = (await refusal(t.submit({ pipeline: 'synthetic' }, station({ name: 'kiosk3' })))) as QueueFull;
    expect(full).toBeInstanceOf(QueueFull);
    expect(full.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(await t.deps.queues.get('synthetic')!.count()).toBe(3);
    expect(await t.pending('kiosk1')).toHaveLength(2);
    expect(await t.pending('kiosk3')).toEqual([]);
  });

  it('cancels a queued job through finalizeJob: cancelled, pending released, watchers woken, webhook queued once', async () => {
    const t = await setup();
    const { body } = await t.submit({ pipeline: 'synthetic', webhookUrl: 'https://hooks.example.org/darkroom' });
    const loaded = (await t.jobs.load(body.id, { station: station() }))!;
    const { outcome, body: ended } = await t.jobs.cancel(loaded, { station: station() });
    expect([outcome, ended.status]).toEqual(['ended', 'cancelled']);
    expect(await t.pending()).toEqual([]);
    expect(t.notified).toEqual([body.id]);
    const hook = await t.webhooks.getJob(webhookJobId(body.id));
    expect(hook?.data).toMatchObject({ event: 'job.cancelled', jobId: body.id, station: 'kiosk1' });
    expect(JSON.parse(hook!.data.body)).toMatchObject({ id: body.id, status: 'cancelled' });
    const again = (await t.jobs.load(body.id, { station: station() }))!;
    expect(await refusal(t.jobs.cancel(again, { station: station() }))).toBeInstanceOf(JobStateConflict);
    expect(await t.webhooks.count()).toBe(1);
  });

  it('expires a job past its time-to-live and retires it after retention: failed expired, then JobExpired for its station only', async () => {
    const t = await setup({ DARKROOM_JOB_TTL_SECONDS: '1', DARKROOM_RETENTION_SECONDS: '1' });
    const image = fixture('with-alpha.png');
    const { body } = await t.submit({ pipeline: 'edit', params: { operations: [] }, image, webhookUrl: 'https://hooks.example.org/x' });
    const maintenance = new Maintenance(t.deps);
    closers.push(() => maintenance.stop());
    const queue = t.deps.queues.get('edit')!;
    // Back-date it past its TTL rather than waiting.
    await conn.hset(queue.toKey(body.id), 'timestamp', String(Date.now() - 5000));
    await maintenance.tick();
    const after = await t.jobs.reload(body.id, { station: station() });
    expect(after).toMatchObject({ status: 'failed', error: { code: 'expired' } });
    expect(await t.pending()).toEqual([]);
    expect((await t.webhooks.getJob(webhookJobId(body.id)))?.data.event).toBe('job.failed');
    // Retention: back-date its end, then the tombstone answers for its own station only.
    await conn.zadd(queue.toKey('failed'), String(Date.now() - 5000), body.id);
    await maintenance.tick();
    expect(await Job.fromId(queue, body.id)).toBeUndefined();
    expect(t.files('inputs')).toEqual([]);
    expect(await refusal(t.jobs.load(body.id, { station: station() }))).toBeInstanceOf(JobExpired);
    expect(await t.jobs.load(body.id, { station: station({ name: 'other' }) })).toBeUndefined();
  });

  it('indexes each job for its station’s listing; a page looks at a bounded number of entries and still has a cursor', async () => {
    const t = await setup({ DARKROOM_STATION_MAX_PENDING: 'off', DARKROOM_MAX_QUEUE_SIZE: 'off' });
    const s = station({ maxPending: null });
    const ids: string[] = [];
    for (let i = 0; i < 620; i++) ids.push((await t.submit({ pipeline: 'synthetic' }, s)).body.id);
    const index = sysKeys(t.config.prefix).jobIndex('kiosk1');
    expect(await conn.xlen(index)).toBe(620);
    // Nothing matches: every page stops at its bound, with a cursor, until the index ends.
    const viewer = { station: s };
    const pages: { jobs: unknown[]; nextCursor: string | null }[] = [];
    let cursor: string | null | undefined;
    do {
      const c = cursor ? decodeJobCursor(cursor) : undefined;
      pages.push(await t.jobs.list('kiosk1', { limit: 20, statuses: new Set(['completed']), ...(c ? { cursor: c } : {}) }, viewer));
      cursor = pages.at(-1)!.nextCursor;
    } while (cursor);
    expect(pages.map((p) => p.jobs.length)).toEqual([0, 0]);
    // Without a filter, every job once, newest first.
    const seen: string[] = [];
    let next: string | null = null;
    do {
      const c = next ? decodeJobCursor(next) : undefined;
      const page = await t.jobs.list('kiosk1', { limit: 100, ...(c ? { cursor: c } : {}) }, viewer);
      seen.push(...page.jobs.map((j) => j.id));
      next = page.nextCursor;
    } while (next);
    expect(new Set(seen).size).toBe(620);
    expect(seen.at(-1)).toBe(ids[0]);
  });

  it('drops index entries of jobs removed after retention when listing, and trims entries older than any job lives', async () => {
    const t = await setup({ DARKROOM_RETENTION_SECONDS: '1' });
    const { body } = await t.submit({ pipeline: 'synthetic' });
    const keys = sysKeys(t.config.prefix);
    const loaded = (await t.jobs.load(body.id, { station: station() }))!;
    await t.jobs.cancel(loaded, { station: station() });
    const queue = t.deps.queues.get('synthetic')!;
    await conn.zadd(queue.toKey('failed'), String(Date.now() - 5000), body.id);
    const maintenance = new Maintenance(t.deps, { stations: () => ['kiosk1', 'kiosk9'] });
    closers.push(() => maintenance.stop());
    await maintenance.tick();
    expect(await Job.fromId(queue, body.id)).toBeUndefined();
    // Listing skips the removed job and drops its entry.
    expect(await conn.xlen(keys.jobIndex('kiosk1'))).toBe(1);
    expect(await t.jobs.list('kiosk1', { limit: 20 }, { station: station() })).toEqual({ jobs: [], nextCursor: null });
    expect(await conn.xlen(keys.jobIndex('kiosk1'))).toBe(0);
    // Entries from longer ago than any job lives are trimmed; a recent one stays.
    const index = keys.jobIndex('kiosk9');
    const lifetimeMs = t.config.limits.jobTtlMs + t.config.limits.jobTimeoutMs * t.config.jobs.attempts + 1000;
    await conn.xadd(index, `${Date.now() - lifetimeMs - 60_000}-0`, 'j', 'synthetic_0000000000000000000a');
    await conn.xadd(index, '*', 'j', 'synthetic_0000000000000000000b');
    expect(await maintenance.trimJobIndexes()).toBe(1);
    expect((await conn.xrange(index, '-', '+')).map(([, f]) => f[1])).toEqual(['synthetic_0000000000000000000b']);
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '@darkroom/runtime';
import { fixture, type ObjectStoreHandle, type RedisHandle, startObjectStore, startRedis, uniquePrefix } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createJobSystem, JobService, Maintenance, S3BlobStore, type Station, validateSubmit } from '../src/index.ts';

/*
 * The orphan sweep on a bucket (a real one-node Swift) listed a page at a time: with pages of
 * three keys, a dozen and more orphans, temporary objects and stale multipart uploads are removed
 * while the listing goes on, every request asks for one small page, and what a job refers to or
 * what is young stays.
 */

const PAGE = 3;
let redis: RedisHandle;
let conn: Redis;
let objectStore: ObjectStoreHandle;
let dataDir: string;

beforeAll(async () => {
  [redis, objectStore] = await Promise.all([startRedis(), startObjectStore()]);
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-sweep-'));
}, 60_000);
afterAll(async () => {
  conn?.disconnect();
  await redis?.stop();
  await objectStore?.stop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

const station: Station = {
  name: 'kiosk1',
  maxPriority: 'critical',
  defaultPriority: 'normal',
  maxPending: 100,
  requestsPerMinute: null,
  webhookSecret: undefined,
  weight: 1,
};

const ago = (ms: number) => new Date(Date.now() - ms);
const MONTH = 30 * 24 * 3600_000;
const HOURS_2 = 2 * 3600_000;

it('sweeps a bucket page by page: orphans, stale temporaries and uploads go, live and young objects stay', async () => {
  const bucket = await objectStore.createBucket();
  const prefix = 'dr/';
  const config = loadConfig({ REDIS_URL: redis.url, DARKROOM_REDIS_PREFIX: uniquePrefix(), DARKROOM_DATA_DIR: dataDir });
  const blobs = new S3BlobStore({
    bucket,
    prefix,
    localDir: dataDir,
    forcePathStyle: true,
    client: objectStore.s3ClientOptions(),
    listPageSize: PAGE,
  });
  await blobs.ensureReady();
  // What the store asks of the bucket, in order: each listing with the page it asks for and gets.
  const calls: { op: string; prefix?: string; asked?: number; got?: number }[] = [];
  blobs.client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Prefix?: string; MaxKeys?: number; MaxUploads?: number; Key?: string };
      const result = await next(args);
      const output = result.output as { Contents?: unknown[]; Uploads?: unknown[] };
      const op = context.commandName ?? '';
      if (op === 'ListObjectsV2Command' || op === 'ListMultipartUploadsCommand') {
        calls.push({
          op,
          ...(input.Prefix !== undefined ? { prefix: input.Prefix } : {}),
          ...((input.MaxKeys ?? input.MaxUploads) ? { asked: input.MaxKeys ?? input.MaxUploads } : {}),
          got: (output.Contents ?? output.Uploads ?? []).length,
        });
      } else calls.push({ op, prefix: input.Key ?? '' });
      return result;
    },
    { step: 'initialize', name: 'recordCalls' },
  );
  const deps = createJobSystem({ config, logger: pino({ level: 'silent' }), redis: conn, blobs });
  const maintenance = new Maintenance(deps);
  try {
    // A live job, and an object under its output's name that looks a month old: its job keeps it.
    const jobs = new JobService(deps);
    const { body } = await jobs.submit(
      validateSubmit({ errors: [], pipeline: 'edit', params: { operations: [] }, image: fixture('with-alpha.png') }, station, {
        webhookSecretAvailable: true,
      }),
      station,
    );
    const liveId = body.id;
    await objectStore.putAt(bucket, `${prefix}outputs/${liveId}.png`, 'x', ago(MONTH));

    const oldInputs = Array.from({ length: 8 }, (_, i) => `inputs/edit_${String(i).padStart(24, '0')}`).concat('inputs/not-a-job');
    const oldOutputs = Array.from({ length: 5 }, (_, i) => `outputs/upscale_${String(i).padStart(24, '0')}.webp`);
    const oldTemps = Array.from({ length: 4 }, (_, i) => `tmp/dead-writer-${i}.part`);
    const young = ['inputs/edit_yyyyyyyyyyyyyyyyyyyyyyyy', 'outputs/edit_yyyyyyyyyyyyyyyyyyyyyyyy.png', 'tmp/in-flight.part'];
    for (const key of [...oldInputs, ...oldOutputs]) await objectStore.putAt(bucket, prefix + key, 'x', ago(MONTH));
    for (const key of oldTemps) await objectStore.putAt(bucket, prefix + key, 'x', ago(HOURS_2));
    for (const key of young) await objectStore.putAt(bucket, prefix + key, 'x', new Date());
    for (let i = 0; i < 4; i++) await objectStore.startUploadAt(bucket, `${prefix}tmp/dead-upload-${i}.part`, ago(HOURS_2));
    await objectStore.startUploadAt(bucket, `${prefix}tmp/live-upload.part`, new Date());
    calls.length = 0;

    const removed = await maintenance.sweepOrphans();
    expect(removed).toBe(oldInputs.length + oldOutputs.length + oldTemps.length + 4);
    expect(await objectStore.listKeys(bucket, prefix)).toEqual(
      [`inputs/${liveId}`, `outputs/${liveId}.png`, ...young].map((k) => prefix + k).sort(),
    );
    expect(await objectStore.listUploads(bucket, prefix)).toEqual([`${prefix}tmp/live-upload.part`]);

    // Every listing asks for one small page and gets no more; each directory takes several.
    const lists = calls.filter((c) => c.op.startsWith('List'));
    expect(lists.every((c) => c.asked === PAGE && c.got! <= PAGE)).toBe(true);
    for (const [dir, objects] of [
      ['inputs/', oldInputs.length + 2],
      ['outputs/', oldOutputs.length + 2],
      ['tmp/', oldTemps.length + 1],
    ] as const) {
      expect(lists.filter((c) => c.op === 'ListObjectsV2Command' && c.prefix === prefix + dir).length).toBeGreaterThanOrEqual(
        Math.ceil(objects / PAGE),
      );
    }
    expect(lists.filter((c) => c.op === 'ListMultipartUploadsCommand').length).toBeGreaterThanOrEqual(Math.ceil(5 / PAGE));
    // Removals start before the listing ends: the sweep works on each page as it comes.
    const lastInputsList = calls.findLastIndex((c) => c.op === 'ListObjectsV2Command' && c.prefix === `${prefix}inputs/`);
    const firstDelete = calls.findIndex((c) => c.op === 'DeleteObjectCommand');
    expect(firstDelete).toBeGreaterThanOrEqual(0);
    expect(firstDelete).toBeLessThan(lastInputsList);
  } finally {
    await maintenance.stop();
    await deps.close();
    blobs.close();
  }
}, 60_000);

import fs from 'node:fs';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, fixture, type ObjectStoreHandle, type System, startObjectStore, startSystem, waitFor } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostDirs, multipart, submit, waitForFinal } from './helpers.ts';

/*
 * Many hosts, no shared disk: the api and two workers each have their own data directory and
 * meet only in Redis and an S3-compatible bucket (a real one-node Swift). A station's image goes
 * in (a large one streamed to the bucket as it arrives), its result comes out through the api, and
 * a refused upload leaves no object behind; a retried job's input is copied within the bucket.
 */

let store: ObjectStoreHandle;
let sys: System;
let bucket: string;
const hosts = hostDirs();
const ownDir = hosts.own;

beforeAll(async () => {
  store = await startObjectStore();
  bucket = await store.createBucket();
  const env = { ...store.env(bucket, 'darkroom/'), DARKROOM_UPLOAD_MEMORY_BYTES: String(64 * 1024) };
  sys = await startSystem({ env, apiEnv: { DARKROOM_DATA_DIR: ownDir() }, workers: 0 });
  await sys.addWorker({ DARKROOM_DATA_DIR: ownDir(), DARKROOM_WORKER_NAME: 'w1' });
  await sys.addWorker({ DARKROOM_DATA_DIR: ownDir(), DARKROOM_WORKER_NAME: 'w2' });
}, 90_000);

afterAll(async () => {
  await sys?.stop();
  await store?.stop();
  hosts.removeAll();
});

const listIn = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir) : []);
const keys = () => store.listKeys(bucket, 'darkroom/');

it('takes a station’s images in and gives their results out through the bucket alone', async () => {
  const large = fixture('Landscape_1.jpg'); // past the memory threshold: streamed to the bucket
  const small = fixture('with-alpha.png');
  const ids: string[] = [];
  for (const [image, params] of [
    [
      large,
      {
        operations: [
          { op: 'resize', width: 64, fit: 'inside' },
          { op: 'format', type: 'webp' },
        ],
      },
    ],
    [small, { operations: [{ op: 'flip' }, { op: 'format', type: 'png' }] }],
  ] as const) {
    const res = await submit(sys, multipart({ pipeline: 'edit', params: JSON.stringify(params) }, { data: image }));
    expect(res.status, await res.clone().text()).toBe(202);
    ids.push(((await res.json()) as JobStatusBody).id);
  }
  const finals = await Promise.all(ids.map((id) => waitForFinal(sys, id)));
  expect(finals.map((f) => f.status)).toEqual(['completed', 'completed']);

  const res = await sys.fetch(`/v1/jobs/${ids[0]}/result`, { station: 'alpha' });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/webp');
  expect(res.headers.get('cache-control')).toBe('private, immutable');
  const etag = res.headers.get('etag')!;
  const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
  expect([meta.format, meta.width]).toEqual(['webp', 64]);
  const again = await sys.fetch(`/v1/jobs/${ids[0]}/result`, { station: 'alpha', headers: { 'if-none-match': etag } });
  expect(again.status).toBe(304);
  const png = await sharp(Buffer.from(await (await sys.fetch(`/v1/jobs/${ids[1]}/result`, { station: 'alpha' })).arrayBuffer())).metadata();
  expect(png.format).toBe('png');

  // Exactly one input and one result per job, nothing temporary; no host's own directory holds an image.
  expect(await keys()).toEqual(
    [`darkroom/inputs/${ids[0]}`, `darkroom/inputs/${ids[1]}`, `darkroom/outputs/${ids[0]}.webp`, `darkroom/outputs/${ids[1]}.png`].sort(),
  );
  const held = () => hosts.dirs.flatMap((d) => ['inputs', 'outputs', 'tmp'].flatMap((sub) => listIn(path.join(d, sub))));
  await waitFor(() => held().length === 0, { what: 'the hosts’ own directories to hold no image' });
}, 90_000);

it('leaves no object behind a refused upload, streamed or not', async () => {
  const before = await keys();
  const notImage = Buffer.alloc(300_000, 0x41); // streamed: past the memory threshold
  const truncated = fixture('Landscape_1.jpg').subarray(0, 100_000);
  for (const [data, status] of [
    [notImage, 415],
    [truncated, 422],
  ] as const) {
    const res = await submit(sys, multipart({ pipeline: 'edit', params: '{"operations":[{"op":"flip"}]}' }, { data }));
    expect(res.status).toBe(status);
  }
  expect(await keys()).toEqual(before);
}, 60_000);

it('retries a cancelled job with its input copied within the bucket', async () => {
  const params = {
    operations: [
      { op: 'resize', width: 48, height: 40, fit: 'fill' },
      { op: 'format', type: 'png' },
    ],
  };
  await sys.fetch('/v1/admin/pipelines/edit/pause', { station: null, method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  let old: JobStatusBody;
  try {
    const res = await submit(sys, multipart({ pipeline: 'edit', params: JSON.stringify(params) }, { data: fixture('with-alpha.png') }));
    old = (await res.json()) as JobStatusBody;
    expect((await sys.fetch(`/v1/jobs/${old.id}`, { method: 'DELETE' })).status).toBe(200);
  } finally {
    await sys.fetch('/v1/admin/pipelines/edit/resume', {
      station: null,
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
  }
  const res = await sys.fetch(`/v1/jobs/${old.id}/retry`, { method: 'POST' });
  expect(res.status).toBe(202);
  const retry = (await res.json()) as JobStatusBody;
  expect(await waitForFinal(sys, retry.id)).toMatchObject({ status: 'completed', retryOf: old.id, result: { width: 48, height: 40 } });
  const out = await sharp(Buffer.from(await (await sys.fetch(`/v1/jobs/${retry.id}/result`)).arrayBuffer())).metadata();
  expect([out.format, out.width, out.height]).toEqual(['png', 48, 40]);
  const objects = await keys();
  expect(objects).toEqual(expect.arrayContaining([`darkroom/inputs/${old.id}`, `darkroom/inputs/${retry.id}`]));
  expect(objects.filter((k) => k.includes('/tmp/'))).toEqual([]);
}, 60_000);

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BlobNotFound, type BlobStore, BlobStoreUnavailable, FsBlobStore, S3BlobStore } from '@darkroom/jobs';
import { freePort, type ObjectStoreHandle, startObjectStore } from '@darkroom/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

/*
 * What every blob store answers alike, run against the file store and a real S3-compatible store
 * (a one-node OpenStack Swift): callers (submit, the worker, the result route, maintenance) rely
 * on exactly this.
 */

const readAll = async (s: NodeJS.ReadableStream) => {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const names = async (store: BlobStore, dir: string) => {
  const out: string[] = [];
  for await (const page of store.list(dir)) out.push(...page.map((e) => e.name));
  return out.sort();
};

/** Writes `data` to a staged write in chunks, as an upload arrives, and waits until it is stored. */
async function writeStaged(store: BlobStore, data: Buffer, chunk = 256 * 1024) {
  const staged = store.stage('upload');
  for (let at = 0; at < data.length; at += chunk) {
    if (!staged.out.write(data.subarray(at, at + chunk))) await once(staged.out, 'drain');
  }
  staged.out.end();
  await once(staged.out, 'finish');
  return staged;
}

let objectStore: ObjectStoreHandle;
let root: string;

beforeAll(async () => {
  objectStore = await startObjectStore();
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'darkroom-contract-'));
}, 60_000);

afterAll(async () => {
  await objectStore?.stop();
  await fs.rm(root, { recursive: true, force: true });
});

const stores: [string, () => Promise<{ store: BlobStore; leftovers: () => Promise<string[]> }>][] = [
  [
    'FsBlobStore',
    async () => {
      const dir = await fs.mkdtemp(path.join(root, 'fs-'));
      const store = new FsBlobStore(dir);
      await store.ensureReady();
      return { store, leftovers: async () => (await fs.readdir(path.join(dir, 'tmp'))).sort() };
    },
  ],
  [
    'S3BlobStore',
    async () => {
      const bucket = await objectStore.createBucket();
      const local = await fs.mkdtemp(path.join(root, 's3-'));
      const store = new S3BlobStore({
        bucket,
        prefix: 'dr/',
        localDir: local,
        forcePathStyle: true,
        client: objectStore.s3ClientOptions(),
      });
      await store.ensureReady();
      return {
        store,
        leftovers: async () => [...(await objectStore.listKeys(bucket, 'dr/tmp/')), ...(await fs.readdir(path.join(local, 'tmp')))].sort(),
      };
    },
  ],
];

describe.each(stores)('%s', (_name, make) => {
  let store: BlobStore;
  let leftovers: () => Promise<string[]>;
  beforeEach(async () => {
    ({ store, leftovers } = await make());
  });

  it('puts, reads back and replaces a blob whole: a re-run leaves one blob', async () => {
    const first = Buffer.from('first result');
    expect(await store.put('outputs/edit_a.webp', first)).toEqual({ bytes: first.length, sha256: sha(first) });
    const second = Buffer.alloc(70_000, 3);
    await store.put('outputs/edit_a.webp', second);
    const read = await store.openRead('outputs/edit_a.webp');
    expect(read.bytes).toBe(second.length);
    expect(await readAll(read.body)).toEqual(second);
    expect(await names(store, 'outputs')).toEqual(['edit_a.webp']);
    expect(await leftovers()).toEqual([]);
  });

  it('creates a new blob under a fresh key', async () => {
    await store.create('inputs/edit_new', Buffer.from('input'), { sync: true });
    expect(await store.exists('inputs/edit_new')).toBe(true);
    expect((await readAll((await store.openRead('inputs/edit_new')).body)).toString()).toBe('input');
  });

  it('copies a blob to a new key, leaving the original; a missing one is BlobNotFound and copies nothing', async () => {
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256;
    await store.create('inputs/edit_old', data);
    await store.copy('inputs/edit_old', 'inputs/edit_retry');
    expect(sha(await readAll((await store.openRead('inputs/edit_retry')).body))).toBe(sha(data));
    expect(sha(await readAll((await store.openRead('inputs/edit_old')).body))).toBe(sha(data));
    await expect(store.copy('inputs/edit_gone', 'inputs/edit_other')).rejects.toBeInstanceOf(BlobNotFound);
    expect(await names(store, 'inputs')).toEqual(['edit_old', 'edit_retry']);
    expect(await leftovers()).toEqual([]);
  });

  it('adopts a staged write (a multipart upload above one part) under its key, leaving nothing temporary', async () => {
    const data = Buffer.alloc(6 * 1024 * 1024 + 123);
    for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
    const staged = await writeStaged(store, data);
    expect((await fs.readFile(staged.path)).equals(data)).toBe(true); // the local copy the api reads the header from
    await store.adopt(staged.path, 'inputs/edit_big');
    await store.discard(staged.path); // what the api does after every answer: nothing left to drop
    const read = await store.openRead('inputs/edit_big');
    expect(read.bytes).toBe(data.length);
    expect(sha(await readAll(read.body))).toBe(sha(data));
    expect(await leftovers()).toEqual([]);
  });

  it('discards a staged write: nothing of it stays behind', async () => {
    const staged = await writeStaged(store, Buffer.alloc(300_000, 9));
    await store.discard(staged.path);
    expect(await leftovers()).toEqual([]);
    expect(await names(store, 'inputs')).toEqual([]);
  });

  it('discards a staged write abandoned midway', async () => {
    const staged = store.stage('upload');
    staged.out.write(Buffer.alloc(100_000, 1));
    await store.discard(staged.path);
    expect(await leftovers()).toEqual([]);
  });

  it('answers BlobNotFound for a missing blob, and fetch copies an existing one to a local file', async () => {
    await expect(store.openRead('outputs/missing.png')).rejects.toBeInstanceOf(BlobNotFound);
    await expect(store.fetch('inputs/missing')).rejects.toBeInstanceOf(BlobNotFound);
    expect(await store.exists('inputs/missing')).toBe(false);
    expect(await store.modifiedMs('inputs/missing')).toBeUndefined();
    await store.put('inputs/edit_f', Buffer.from('fetch me'));
    const local = await store.fetch('inputs/edit_f');
    expect((await fs.readFile(local.path)).toString()).toBe('fetch me');
    await local.release();
    expect(await store.exists('inputs/edit_f')).toBe(true);
  });

  it('lists a directory in pages with ages, and deletes idempotently', async () => {
    const before = Date.now() - 5000;
    await Promise.all(['a', 'b', 'c'].map((n) => store.put(`inputs/edit_${n}`, Buffer.from(n))));
    await store.put('outputs/edit_a.png', Buffer.from('o'));
    expect(await names(store, 'inputs')).toEqual(['edit_a', 'edit_b', 'edit_c']);
    for await (const page of store.list('inputs')) {
      for (const e of page) expect(e.modifiedMs ?? (await store.modifiedMs(`inputs/${e.name}`))).toBeGreaterThan(before);
    }
    await store.delete('inputs/edit_b');
    await store.delete('inputs/edit_b');
    await store.delete('inputs/never-was');
    expect(await names(store, 'inputs')).toEqual(['edit_a', 'edit_c']);
    expect(await names(store, 'nothing-here')).toEqual([]);
  });

  it('sweeps only temporary blobs older than asked', async () => {
    const staged = await writeStaged(store, Buffer.from('left by a writer that died'));
    expect(await store.sweepTemps(3600_000)).toBe(0);
    await new Promise((r) => setTimeout(r, 1100)); // listings give whole seconds
    expect(await store.sweepTemps(0)).toBeGreaterThan(0);
    await store.discard(staged.path);
    expect(await leftovers()).toEqual([]);
  });
});

describe('S3BlobStore', () => {
  it('signs a short-lived URL a client can GET the blob from', async () => {
    const bucket = await objectStore.createBucket();
    const store = new S3BlobStore({ bucket, localDir: root, forcePathStyle: true, client: objectStore.s3ClientOptions() });
    await store.put('outputs/edit_p.png', Buffer.from('signed'));
    const url = await store.presignGet!('outputs/edit_p.png', { expiresInSeconds: 60, contentType: 'image/png' });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(await res.text()).toBe('signed');
    expect((await fetch(url.replace(/Signature=[0-9a-f]+/, 'Signature=00'))).status).toBe(403);
  });

  it('answers BlobStoreUnavailable when the store does not answer, and a staged write fails', async () => {
    const port = await freePort();
    const store = new S3BlobStore({
      bucket: 'b',
      localDir: root,
      forcePathStyle: true,
      client: { ...objectStore.s3ClientOptions(), endpoint: `http://127.0.0.1:${port}`, maxAttempts: 1 },
    });
    await expect(store.put('outputs/x.png', Buffer.from('x'))).rejects.toBeInstanceOf(BlobStoreUnavailable);
    await expect(store.openRead('outputs/x.png')).rejects.toBeInstanceOf(BlobStoreUnavailable);
    await expect(store.ensureReady()).rejects.toBeInstanceOf(BlobStoreUnavailable);
    const staged = store.stage('upload');
    staged.out.end(Buffer.alloc(1000));
    const [err] = (await once(staged.out, 'error')) as [Error];
    expect(err).toBeInstanceOf(BlobStoreUnavailable);
    await store.discard(staged.path).catch(() => {});
    await expect(fs.access(staged.path)).rejects.toThrow();
  });
});

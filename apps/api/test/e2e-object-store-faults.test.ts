import { createHash } from 'node:crypto';
import http from 'node:http';
import type { JobStatusBody } from '@darkroom/contracts';
import { sysKeys } from '@darkroom/jobs';
import {
  fixture,
  freePort,
  listFiles,
  type ObjectStoreHandle,
  STATIONS,
  type System,
  startApi,
  startObjectStore,
  startSystem,
  startWorker,
  waitFor,
} from '@darkroom/testing';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostDirs, multipart, submit, totalJobs, waitForFinal } from './helpers.ts';

/*
 * The object-store path where it can fail, with real processes on a real one-node Swift: the
 * result route's presigned redirect (what the URL gives, for how long, to whom), and the store
 * going away under the api (a submit answers 503 and keeps nothing) and under a worker (the job
 * is retried with backoff, then fails `backend_unavailable`, or completes once the store is back).
 */

const URL_SECONDS = 2;
const BACKOFF_MS = 1500;

let store: ObjectStoreHandle;
let sys: System;
let bucket: string;
let redis: Redis;
let apiDir: string;
const hosts = hostDirs();
const ownDir = hosts.own;

beforeAll(async () => {
  store = await startObjectStore();
  bucket = await store.createBucket();
  const env = {
    ...store.env(bucket, 'darkroom/'),
    DARKROOM_UPLOAD_MEMORY_BYTES: String(64 * 1024),
    DARKROOM_RETRY_BACKOFF_MS: String(BACKOFF_MS),
    DARKROOM_JOB_ATTEMPTS: '3',
  };
  apiDir = ownDir();
  sys = await startSystem({
    env,
    apiEnv: { DARKROOM_DATA_DIR: apiDir, DARKROOM_RESULT_REDIRECT: 'presigned', DARKROOM_RESULT_URL_SECONDS: String(URL_SECONDS) },
    workerEnv: { DARKROOM_DATA_DIR: ownDir() },
  });
  redis = new Redis(sys.redis.url, { maxRetriesPerRequest: 1 });
}, 90_000);

afterAll(async () => {
  redis?.disconnect();
  await sys?.stop();
  await store?.stop();
  hosts.removeAll();
});

const keys = () => store.listKeys(bucket, 'darkroom/');
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
/** Where a claimed Idempotency-Key of station alpha lives in Redis. */
const idemKey = (key: string) => sysKeys(sys.prefix).idempotency('alpha', sha256(key));

it('redirects a result to a short-lived presigned URL that only that URL opens', async () => {
  const image = fixture('with-alpha.png');
  const source = await sharp(image).metadata();
  const res = await submit(
    sys,
    multipart({ pipeline: 'edit', params: '{"operations":[{"op":"flip"},{"op":"format","type":"png"}]}' }, { data: image }),
  );
  expect(res.status, await res.clone().text()).toBe(202);
  const { id } = (await res.json()) as JobStatusBody;
  expect((await waitForFinal(sys, id)).status).toBe('completed');

  const redirect = await sys.fetch(`/v1/jobs/${id}/result`, { redirect: 'manual' });
  expect(redirect.status).toBe(302);
  expect(redirect.headers.get('cache-control')).toBe('private, no-store');
  const etag = redirect.headers.get('etag')!;
  expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
  const location = new URL(redirect.headers.get('location')!);
  expect(location.origin).toBe(store.endpoint);
  expect(location.pathname).toBe(`/${bucket}/darkroom/outputs/${id}.png`);
  expect(location.searchParams.get('X-Amz-Expires')).toBe(String(URL_SECONDS));
  expect(location.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
  const signedAt = Date.now();

  // The URL alone, without the station's key, yields the exact result.
  const direct = await fetch(location, { signal: AbortSignal.timeout(10_000) });
  expect(direct.status).toBe(200);
  expect(direct.headers.get('content-type')).toBe('image/png');
  const bytes = Buffer.from(await direct.arrayBuffer());
  expect(`"${sha256(bytes)}"`).toBe(etag);
  const meta = await sharp(bytes).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', source.width, source.height]);

  // A client that follows redirects with its key set (fetch drops it across origins) gets the same bytes.
  const followed = await sys.fetch(`/v1/jobs/${id}/result`);
  expect(followed.status).toBe(200);
  expect(Buffer.from(await followed.arrayBuffer()).equals(bytes)).toBe(true);

  // A tampered signature, or another object under the same signature, is refused by the store.
  const tampered = new URL(location);
  const sig = tampered.searchParams.get('X-Amz-Signature')!;
  tampered.searchParams.set('X-Amz-Signature', (sig[0] === '0' ? '1' : '0') + sig.slice(1));
  expect((await fetch(tampered)).status).toBe(403);
  const otherKey = new URL(location);
  otherKey.pathname = `/${bucket}/darkroom/inputs/${id}`;
  expect((await fetch(otherKey)).status).toBe(403);

  // Another station learns nothing of the job; a matching ETag is answered by the api, without a redirect.
  const other = await sys.fetch(`/v1/jobs/${id}/result`, { station: 'beta', redirect: 'manual' });
  expect(other.status).toBe(404);
  expect(other.headers.get('location')).toBeNull();
  const cached = await sys.fetch(`/v1/jobs/${id}/result`, { redirect: 'manual', headers: { 'if-none-match': etag } });
  expect(cached.status).toBe(304);
  expect(cached.headers.get('location')).toBeNull();
  expect(cached.headers.get('etag')).toBe(etag);

  // Past its lifetime the URL no longer opens (the store counts whole seconds: allow one more).
  await new Promise((r) => setTimeout(r, Math.max(0, signedAt + (URL_SECONDS + 1.5) * 1000 - Date.now())));
  expect((await fetch(location)).status).toBe(403);
  // Asking the api again gives a fresh URL that does.
  const fresh = await sys.fetch(`/v1/jobs/${id}/result`, { redirect: 'manual' });
  expect(fresh.status).toBe(302);
  expect((await fetch(fresh.headers.get('location')!)).status).toBe(200);
}, 60_000);

it('answers a submit 503 while the store is down, keeps nothing of it, and takes the same request once it is back', async () => {
  const k = sysKeys(sys.prefix);
  const jobsBefore = await totalJobs(sys);
  const keysBefore = await keys();
  const small = fixture('with-alpha.png'); // held in memory, stored with one PUT
  const large = fixture('Landscape_1.jpg'); // past the memory threshold: streamed to the bucket as it arrives
  const requests = [
    {
      name: 'json',
      idem: 'down-json-1',
      send: (idem: string) =>
        submit(
          sys,
          { pipeline: 'edit', params: { operations: [{ op: 'flip' }] }, image: small.toString('base64') },
          { headers: { 'idempotency-key': idem } },
        ),
    },
    {
      name: 'streamed',
      idem: 'down-stream-1',
      send: (idem: string) =>
        submit(sys, multipart({ pipeline: 'edit', params: '{"operations":[{"op":"resize","width":32}]}' }, { data: large }), {
          headers: { 'idempotency-key': idem },
        }),
    },
  ];

  await store.down();
  try {
    for (const r of requests) {
      const started = Date.now();
      const res = await r.send(r.idem);
      const text = await res.text();
      expect([r.name, res.status], text).toEqual([r.name, 503]);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      const problem = JSON.parse(text) as { code: string; detail?: string };
      expect(problem.code).toBe('unavailable');
      // Nothing of the store's side shows: no host, port, bucket, key, path or SDK wording.
      for (const secret of [
        '127.0.0.1',
        new URL(store.endpoint).port,
        bucket,
        'darkroom/',
        'inputs',
        'tmp',
        apiDir,
        'ECONNREFUSED',
        'S3',
        'SDK',
        'object store could not',
      ]) {
        expect(text, `${r.name} answer names ${secret}`).not.toContain(secret);
      }
    }
    // No job, no pending entry, no claimed Idempotency-Key, no file left on the api's own disk.
    expect(await totalJobs(sys)).toBe(jobsBefore);
    expect(await redis.scard(k.pending('alpha'))).toBe(0);
    for (const r of requests) expect(await redis.exists(idemKey(r.idem))).toBe(0);
    expect(listFiles(apiDir)).toEqual([]);
  } finally {
    await store.up();
  }
  expect(await keys()).toEqual(keysBefore);

  // Back up, the same requests (same keys) are taken and done.
  for (const r of requests) {
    const res = await r.send(r.idem);
    expect([r.name, res.status], await res.clone().text()).toEqual([r.name, 202]);
    const { id } = (await res.json()) as JobStatusBody;
    expect((await waitForFinal(sys, id)).status).toBe('completed');
  }
  expect(listFiles(apiDir)).toEqual([]);
}, 90_000);

it('answers 503 and keeps nothing when the store goes down while an upload streams in', async () => {
  const keysBefore = await keys();
  const jobsBefore = await totalJobs(sys);
  const form = multipart({ pipeline: 'edit', params: '{"operations":[{"op":"flip"}]}' }, { data: fixture('2569067123_aca715a2ee_o.jpg') });
  const encoded = new Response(form);
  const body = Buffer.from(await encoded.arrayBuffer());
  const half = Math.floor(body.length / 2);
  const url = new URL('/v1/jobs', sys.url);
  try {
    const answered = await new Promise<{ status: number; type: string | undefined; retryAfter: string | undefined; text: string }>(
      (resolve, reject) => {
        const req = http.request(url, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${STATIONS.alpha.key}`,
            'content-type': encoded.headers.get('content-type')!,
            'content-length': String(body.length),
            'idempotency-key': 'down-midway-1',
          },
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () =>
            resolve({ status: res.statusCode!, type: res.headers['content-type'], retryAfter: res.headers['retry-after'], text }),
          );
        });
        req.on('error', reject);
        // The first half reaches the api (and the staging write) before the store goes away.
        req.write(body.subarray(0, half), () => {
          setTimeout(() => {
            void store.down().then(() => {
              req.end(body.subarray(half));
            });
          }, 300);
        });
      },
    );
    expect(answered.status, answered.text).toBe(503);
    expect(answered.type).toMatch(/^application\/problem\+json/);
    expect(Number(answered.retryAfter)).toBeGreaterThan(0);
    expect(answered.text).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|darkroom\/|tmp\/|S3/);
    expect(await totalJobs(sys)).toBe(jobsBefore);
    expect(await redis.exists(idemKey('down-midway-1'))).toBe(0);
    expect(await redis.scard(sysKeys(sys.prefix).pending('alpha'))).toBe(0);
    expect(listFiles(apiDir)).toEqual([]);
  } finally {
    await store.up();
  }
  expect(await keys()).toEqual(keysBefore);
}, 60_000);

/** The times (ms) at which the worker started each attempt of a job, from its log. */
const attemptStarts = (id: string): number[] =>
  sys.workers
    .flatMap((w) => w.output().split('\n'))
    .flatMap((line) => {
      try {
        const e = JSON.parse(line) as { jobId?: string; msg?: string; time?: number };
        return e.jobId === id && e.msg === 'job started' && typeof e.time === 'number' ? [e.time] : [];
      } catch {
        return [];
      }
    })
    .sort((a, b) => a - b);

const view = async (id: string) => (await (await sys.fetch(`/v1/jobs/${id}`)).json()) as JobStatusBody;

it('retries a job whose result cannot be stored with backoff, then fails it backend_unavailable, leaving no object', async () => {
  const keysBefore = await keys();
  await store.down();
  let id: string;
  try {
    // No input image: the job is queued without the store, and its result is what cannot be written.
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0, width: 64, height: 64 } });
    expect(res.status, await res.clone().text()).toBe(202);
    id = ((await res.json()) as JobStatusBody).id;
    const final = await waitForFinal(sys, id, 'alpha', 60_000);
    expect(final.status).toBe('failed');
    expect(final.error?.code).toBe('backend_unavailable');
    expect(final.error?.message).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|darkroom\//);
    expect(final.attempts).toBe(3);
    // Three attempts, each after the exponential backoff (1.5 s, then 3 s).
    const starts = attemptStarts(id);
    expect(starts).toHaveLength(3);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(BACKOFF_MS);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(2 * BACKOFF_MS);
  } finally {
    await store.up();
  }
  // Nothing was stored, in part or whole; the result route says the job failed.
  expect(await keys()).toEqual(keysBefore);
  expect((await sys.fetch(`/v1/jobs/${id}/result`, { redirect: 'manual' })).status).toBe(409);
}, 90_000);

it('completes a job exactly once, with one result object, when the store comes back before its attempts run out', async () => {
  const keysBefore = await keys();
  const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 4, stepMs: 250, width: 64, height: 64 } });
  expect(res.status, await res.clone().text()).toBe(202);
  const { id } = (await res.json()) as JobStatusBody;
  // The store goes away while the job computes: its first result cannot be written.
  await waitFor(async () => (await view(id)).status === 'active', { what: 'the job to start', timeoutMs: 20_000 });
  await store.down();
  try {
    await waitFor(async () => (await view(id)).attempts >= 1 && attemptStarts(id).length >= 1 && (await view(id)).status !== 'active', {
      what: 'the first attempt to fail',
      timeoutMs: 20_000,
    });
    expect((await view(id)).status).not.toBe('failed');
  } finally {
    await store.up();
  }
  const final = await waitForFinal(sys, id, 'alpha', 60_000);
  const log = () => sys.workers.map((w) => w.output().slice(-3000)).join('\n');
  expect(final.status, log()).toBe('completed');
  expect(final.attempts).toBeGreaterThanOrEqual(2);
  // The job reads completed before its worker's log line is read back: wait for the line.
  const completions = () =>
    sys.workers
      .flatMap((w) => w.output().split('\n'))
      .filter((line) => line.includes(`"jobId":"${id}"`) && line.includes('"msg":"job completed"'));
  await waitFor(() => completions().length >= 1, { what: "the worker's 'job completed' line", timeoutMs: 10_000 });
  expect(completions(), log()).toHaveLength(1);
  expect(await keys(), log()).toEqual([...keysBefore, `darkroom/outputs/${id}.png`].sort());
  const bytes = Buffer.from(await (await sys.fetch(`/v1/jobs/${id}/result`)).arrayBuffer());
  const meta = await sharp(bytes).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
}, 90_000);

it('closes the store’s client last when an api or a worker shuts down', async () => {
  // A job done, then its result streamed by an api of its own: that api's client holds a connection to the store.
  const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0, width: 16, height: 16 } });
  const { id } = (await res.json()) as JobStatusBody;
  expect((await waitForFinal(sys, id)).status).toBe('completed');
  const port = await freePort();
  const debug = { DARKROOM_LOG_LEVEL: 'debug', DARKROOM_DATA_DIR: ownDir() };
  const api = await startApi({ ...sys.env, ...debug, PORT: String(port) });
  const worker = await startWorker({ ...sys.env, ...debug, DARKROOM_WORKER_NAME: 'w-shutdown' });
  const got = await fetch(`http://127.0.0.1:${port}/v1/jobs/${id}/result`, {
    headers: { authorization: `Bearer ${STATIONS.alpha.key}` },
  });
  expect(got.status).toBe(200);
  await got.arrayBuffer();

  for (const p of [api, worker]) {
    expect(await p.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    // Log lines may reach the pipe out of order: order the steps by the time each was logged.
    const closed = p
      .output()
      .split('\n')
      .flatMap((line) => {
        try {
          const e = JSON.parse(line) as { msg?: string; step?: string; time?: number };
          return e.msg === 'closed' && e.step ? [{ step: e.step, time: e.time ?? 0 }] : [];
        } catch {
          return [];
        }
      });
    const blobs = closed.find((c) => c.step === 'blobs');
    expect(blobs, p.output().slice(-2000)).toBeDefined();
    expect(closed.length).toBeGreaterThan(3);
    for (const c of closed) expect(blobs!.time, `${c.step} closed after the store's client`).toBeGreaterThanOrEqual(c.time);
    expect(p.output()).not.toContain('close failed');
  }
}, 60_000);

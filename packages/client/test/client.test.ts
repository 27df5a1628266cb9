import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { JobStatusBody } from '@darkroom/contracts';
import {
  ADMIN_TOKEN,
  fixture,
  fixturePath,
  freePort,
  REPO_ROOT,
  STATIONS,
  type System,
  serveFixtures,
  startSystem,
  waitFor,
} from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DarkroomClient,
  type DarkroomClientOptions,
  DarkroomError,
  DarkroomNetworkError,
  DarkroomTimeoutError,
  type RetryEvent,
} from '../src/index.ts';

/*
 * The client against the real system: a Redis, the api and a worker as separate processes. Where
 * a test needs the network to misbehave (a lost answer, a proxy without SSE, a dropped stream),
 * it wraps the real fetch; the server is never mocked.
 */

const LIMITED = { name: 'limited', key: 'limited-key-0123456789abcdef' };
const PHOTO = path.join(REPO_ROOT, 'examples/photo.jpg'); // 2725×2225 JPEG
let sys: System;
let dir: string;
let client: DarkroomClient;
let admin: DarkroomClient;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-client-'));
  const stations = path.join(dir, 'stations.json');
  fs.writeFileSync(stations, JSON.stringify([{ ...LIMITED, maxPending: 1 }]));
  // The imageUrl tests fetch from a server on loopback, which the api refuses unless allowed.
  sys = await startSystem({ env: { DARKROOM_STATIONS_FILE: stations, DARKROOM_INPUT_URL_ALLOW_PRIVATE: 'true' } });
  client = connect();
  admin = connect({ apiKey: ADMIN_TOKEN });
});
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function connect(opts: DarkroomClientOptions = {}): DarkroomClient {
  return new DarkroomClient({ baseUrl: sys.url, apiKey: STATIONS.alpha.key, ...opts });
}

/** A fetch that records `METHOD /path` of every request before passing it on. */
function recording(inner: typeof fetch = fetch) {
  const requests: string[] = [];
  const wrapped: typeof fetch = (input, init) => {
    const url = new URL(String(input));
    requests.push(`${init?.method ?? 'GET'} ${url.pathname}${url.search}`);
    return inner(input, init);
  };
  return { requests, fetch: wrapped };
}

const pipelineAdmin = (name: string, action: 'pause' | 'resume') =>
  fetch(`${sys.url}/v1/admin/pipelines/${name}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

/** Jobs ever created (waiting + active + completed + failed), over every pipeline. */
async function totalJobs(): Promise<number> {
  const { pipelines } = await admin.queue();
  return pipelines.reduce((n, p) => n + p.waiting.total + p.active + p.completed + p.failed, 0);
}

/** The error a call rejects with (a call that resolves fails the test). */
async function rejection<E = DarkroomError>(p: Promise<unknown>): Promise<E> {
  return p.then(
    () => expect.unreachable('the call should have failed'),
    (err: unknown) => err as E,
  );
}

const editToWebp = {
  operations: [
    { op: 'resize' as const, width: 512 },
    { op: 'format' as const, type: 'webp' as const },
  ],
};

describe('submit, wait, download', () => {
  it('submits a file path, waits over SSE, downloads to a file written whole', async () => {
    const { requests, fetch: f } = recording();
    const c = connect({ fetch: f });
    const job = await c.submit({ image: PHOTO, pipeline: 'edit', params: editToWebp });
    expect(job).toMatchObject({ status: 'queued', pipeline: 'edit', priority: 'normal' });
    const updates: JobStatusBody[] = [];
    const done = await c.waitFor(job.id, { onUpdate: (u) => updates.push(u), timeoutMs: 30_000 });
    expect(done).toMatchObject({ id: job.id, status: 'completed', result: { contentType: 'image/webp', width: 512 } });
    expect(updates.at(-1)).toEqual(done);
    expect(requests.filter((r) => r.endsWith('/events'))).toHaveLength(1);
    expect(requests.filter((r) => r === `GET /v1/jobs/${job.id}`)).toHaveLength(0); // no polling

    const out = path.join(dir, 'downloads', 'out.webp');
    fs.mkdirSync(path.dirname(out));
    const saved = await c.download(job.id, out);
    expect(saved).toMatchObject({ notModified: false, path: out, bytes: done.result!.bytes, sha256: done.result!.sha256 });
    const meta = await sharp(out).metadata();
    expect(meta).toMatchObject({ format: 'webp', width: 512, height: done.result!.height });
    expect(fs.readdirSync(path.dirname(out))).toEqual(['out.webp']); // no temporary file left

    // A matching ETag: nothing is written.
    const before = fs.statSync(out).mtimeMs;
    const again = await c.download(job.id, out, { ifNoneMatch: saved.etag! });
    expect(again.notModified).toBe(true);
    expect(fs.statSync(out).mtimeMs).toBe(before);
  });

  it('submits bytes, a Uint8Array and a stream; reads the result into memory and into a Writable', async () => {
    const png = fixture('with-alpha.png');
    const params = { operations: [{ op: 'grayscale' as const }] };
    const jobs = await Promise.all([
      client.submit({ image: png, pipeline: 'edit', params }),
      client.submit({ image: new Uint8Array(png), pipeline: 'edit', params }),
      client.submit({ image: fs.createReadStream(fixturePath('with-alpha.png')), pipeline: 'edit', params }),
    ]);
    const finals = await Promise.all(jobs.map((j) => client.waitFor(j.id)));
    for (const f of finals) expect(f).toMatchObject({ status: 'completed', result: { contentType: 'image/png' } });
    expect(new Set(finals.map((f) => f.result!.sha256)).size).toBe(1);

    const bytes = await client.result(jobs[0]!.id);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(finals[0]!.result!.sha256);
    expect((await sharp(bytes).metadata()).format).toBe('png');

    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on('data', (c: Buffer) => chunks.push(c));
    const streamed = await client.download(jobs[1]!.id, sink);
    expect(streamed.bytes).toBe(bytes.length);
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
  });

  it('sends the progress of a running job to onUpdate as it happens', async () => {
    const job = await client.submit({ pipeline: 'synthetic', params: { steps: 6, stepMs: 150 } });
    const updates: JobStatusBody[] = [];
    const done = await client.waitFor(job.id, { onUpdate: (u) => updates.push(u) });
    expect(done.status).toBe('completed');
    const percents = updates.filter((u) => u.status === 'active' && u.progress).map((u) => u.progress!.percent);
    expect(percents.length).toBeGreaterThanOrEqual(2);
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
  });

  it('holds the answer with wait until the job is final', async () => {
    const job = await client.submit({ pipeline: 'synthetic', params: { steps: 2, stepMs: 10 }, wait: 20 });
    expect(job).toMatchObject({ status: 'completed', result: { contentType: 'image/png' } });
  });

  it('reads many statuses, 100 ids per request', async () => {
    const { requests, fetch: f } = recording();
    const c = connect({ fetch: f });
    const a = await c.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
    const b = await c.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
    const unknown = Array.from({ length: 149 }, (_, i) => `synthetic_${String(i).padStart(24, 'z')}`);
    const found = await c.statuses([a.id, ...unknown, b.id, a.id]);
    expect(found.map((j) => j.id).sort()).toEqual([a.id, b.id].sort());
    expect(requests.filter((r) => r.startsWith('GET /v1/jobs?ids='))).toHaveLength(2);
  });
});

describe('waiting without SSE', () => {
  const proxies: [string, () => Response][] = [
    ['a 404 page', () => new Response('<h1>Not Found</h1>', { status: 404, headers: { 'content-type': 'text/html' } })],
    ['a 200 that is not an event stream', () => new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } })],
  ];

  it.each(proxies)('falls back to polling where a proxy answers the event stream with %s', async (_, answer) => {
    const { requests, fetch: f } = recording((input, init) =>
      String(input).endsWith('/events') ? Promise.resolve(answer()) : fetch(input, init),
    );
    const c = connect({ fetch: f });
    const job = await c.submit({ pipeline: 'synthetic', params: { steps: 8, stepMs: 150 } });
    const updates: JobStatusBody[] = [];
    const done = await c.waitFor(job.id, { onUpdate: (u) => updates.push(u), pollIntervalMs: 100 });
    expect(done).toMatchObject({ id: job.id, status: 'completed' });
    expect(requests.filter((r) => r.endsWith('/events'))).toHaveLength(1);
    expect(requests.filter((r) => r === `GET /v1/jobs/${job.id}`).length).toBeGreaterThan(2);
    expect(updates.some((u) => u.status === 'active' && u.progress)).toBe(true);
    expect(updates.at(-1)).toEqual(done);
  });

  it('reconnects when the event stream drops', async () => {
    let dropped = 0;
    const { requests, fetch: f } = recording(async (input, init) => {
      const res = await fetch(input, init);
      if (!String(input).endsWith('/events') || dropped > 0) return res;
      dropped++;
      // Pass the first chunk on, then cut the connection.
      const reader = res.body!.getReader();
      const cut = new ReadableStream<Uint8Array>({
        async pull(ctl) {
          const { value } = await reader.read();
          if (value) ctl.enqueue(value);
          await reader.cancel();
          ctl.error(new TypeError('terminated'));
        },
      });
      return new Response(cut, { status: res.status, headers: res.headers });
    });
    const c = connect({ fetch: f });
    const job = await c.submit({ pipeline: 'synthetic', params: { steps: 10, stepMs: 200 } });
    const done = await c.waitFor(job.id);
    expect(done).toMatchObject({ id: job.id, status: 'completed' });
    expect(dropped).toBe(1);
    expect(requests.filter((r) => r.endsWith('/events'))).toHaveLength(2);
  });

  it('gives up after timeoutMs with the last state seen; the job goes on', async () => {
    await pipelineAdmin('synthetic', 'pause');
    try {
      const job = await client.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
      const err = await rejection(client.waitFor(job.id, { timeoutMs: 400 }));
      expect(err).toBeInstanceOf(DarkroomTimeoutError);
      expect(err).toMatchObject({ jobId: job.id, timeoutMs: 400, last: { status: 'queued' } });
      expect((await client.cancel(job.id)).status).toBe('cancelled');
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
  });
});

describe('cancel, queue, pipelines', () => {
  it('cancels a queued job at once and an active one on its worker', async () => {
    await pipelineAdmin('synthetic', 'pause');
    let queued: JobStatusBody;
    try {
      queued = await client.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
      expect(await client.cancel(queued.id)).toMatchObject({ id: queued.id, status: 'cancelled' });
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
    expect(await client.waitFor(queued.id)).toMatchObject({ status: 'cancelled' });
    await expect(client.cancel(queued.id)).rejects.toMatchObject({ status: 409, code: 'conflict' });

    const long = await client.submit({ pipeline: 'synthetic', params: { steps: 100, stepMs: 100 } });
    await waitFor(async () => (await client.status(long.id)).status === 'active', { what: 'the job to start' });
    expect(await client.cancel(long.id)).toMatchObject({ status: 'active', cancelRequested: true });
    expect(await client.waitFor(long.id, { timeoutMs: 10_000 })).toMatchObject({ status: 'cancelled' });
  });

  it('reads the queue and the pipelines', async () => {
    const queue = await client.queue();
    expect(queue.pipelines.map((p) => p.name)).toEqual(expect.arrayContaining(['edit', 'synthetic']));
    expect(queue.limits.station).toMatchObject({ name: 'alpha' });
    const edit = queue.pipelines.find((p) => p.name === 'edit')!;
    expect(edit.workers.length).toBeGreaterThanOrEqual(1);

    const { pipelines } = await client.pipelines();
    expect(pipelines.find((p) => p.name === 'edit')).toMatchObject({ acceptsImage: true, params: { type: 'object' } });
    expect(pipelines.find((p) => p.name === 'synthetic')).toMatchObject({ acceptsImage: false });
  });
});

describe('listing and retrying jobs', () => {
  it('lists the station’s own jobs page by page, filtered, and retries a cancelled one', async () => {
    const beta = connect({ apiKey: STATIONS.beta.key });
    await pipelineAdmin('synthetic', 'pause');
    const mine: JobStatusBody[] = [];
    try {
      for (let i = 0; i < 5; i++)
        mine.push(await beta.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0, width: 12, height: 9 } }));
      const first = await beta.listJobs({ limit: 2 });
      expect(first.jobs.map((j) => j.id)).toEqual([mine[4]!.id, mine[3]!.id]);
      expect(first.nextCursor).toEqual(expect.any(String));
      const second = await beta.listJobs({ limit: 2, cursor: first.nextCursor! });
      expect(second.jobs.map((j) => j.id)).toEqual([mine[2]!.id, mine[1]!.id]);
      const all: string[] = [];
      for await (const j of beta.eachJob({
        status: ['queued', 'active'],
        pipeline: 'synthetic',
        since: new Date(Date.now() - 60_000),
        limit: 2,
      }))
        all.push(j.id);
      expect(all).toEqual(mine.map((j) => j.id).reverse());
      // Another station's listing has none of them.
      const alphaIds = new Set((await client.listJobs({ limit: 100 })).jobs.map((j) => j.id));
      expect(mine.some((j) => alphaIds.has(j.id))).toBe(false);
      await expect(beta.listJobs({ pipeline: 'nope' })).rejects.toMatchObject({ status: 400, code: 'invalid_request' });

      expect(await beta.cancel(mine[0]!.id)).toMatchObject({ status: 'cancelled' });
      await expect(beta.retryJob(mine[1]!.id)).rejects.toMatchObject({ status: 409, code: 'conflict' });
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
    const again = await beta.retryJob(mine[0]!.id);
    expect(again).toMatchObject({ pipeline: 'synthetic', retryOf: mine[0]!.id });
    expect(await beta.waitFor(again.id, { timeoutMs: 20_000 })).toMatchObject({ status: 'completed', result: { width: 12, height: 9 } });
    expect((await beta.status(mine[0]!.id)).retriedBy).toBe(again.id);
    await expect(beta.retryJob(mine[0]!.id)).rejects.toMatchObject({ status: 409, code: 'conflict' });
    expect((await beta.listJobs({ status: 'completed', limit: 1 })).jobs.map((j) => j.id)).toEqual([again.id]);
  });
});

describe('imageUrl and the job limits', () => {
  it('submits by imageUrl: the server fetches the image and the job runs from it; a 404 is a 422 coded unreachable', async () => {
    const images = await serveFixtures();
    try {
      const params = {
        operations: [
          { op: 'resize' as const, width: 320 },
          { op: 'format' as const, type: 'webp' as const },
        ],
      };
      const job = await client.submit({ pipeline: 'edit', imageUrl: `${images.url}/flowers.jpeg`, params });
      const done = await client.waitFor(job.id, { timeoutMs: 30_000 });
      expect(done).toMatchObject({ status: 'completed', result: { width: 320, height: 180, contentType: 'image/webp' } });
      expect(await sharp(await client.result(job.id)).metadata()).toMatchObject({ format: 'webp', width: 320, height: 180 });

      const before = await totalJobs();
      const err = await rejection(client.submit({ pipeline: 'edit', imageUrl: `${images.url}/missing.jpeg`, params }));
      expect(err).toBeInstanceOf(DarkroomError);
      expect(err).toMatchObject({ status: 422, code: 'invalid_image' });
      expect(err.errors).toEqual([{ path: 'imageUrl', code: 'unreachable', message: expect.any(String) }]);
      expect(await totalJobs()).toBe(before);
    } finally {
      await images.close();
    }
  });

  it('sends timeoutSeconds and ttlSeconds, as JSON and as multipart fields', async () => {
    // The test system keeps the operator's defaults: 300 s to run, 3600 s in the queue.
    const tooLong = await rejection(client.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, ttlSeconds: 3601 }));
    expect(tooLong).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(tooLong.errors.map((e) => e.path)).toEqual(['ttlSeconds']);
    const withImage = await rejection(client.submit({ pipeline: 'edit', image: PHOTO, params: editToWebp, timeoutSeconds: 301 }));
    expect(withImage).toMatchObject({ status: 400 });
    expect(withImage.errors.map((e) => e.path)).toEqual(['timeoutSeconds']);

    // A job's own limit is the one it runs under: 5 s of work stopped after 1 s.
    const slow = await client.submit({ pipeline: 'synthetic', params: { steps: 50, stepMs: 100 }, timeoutSeconds: 1, ttlSeconds: 60 });
    expect(await client.waitFor(slow.id, { timeoutMs: 30_000 })).toMatchObject({ status: 'failed', error: { code: 'timeout' } });
    const fine = await client.submit({ pipeline: 'edit', image: fixturePath('with-alpha.png'), params: editToWebp, timeoutSeconds: 60 });
    expect(await client.waitFor(fine.id, { timeoutMs: 30_000 })).toMatchObject({ status: 'completed' });
  });
});

describe('typed errors', () => {
  it('carries the problem code; a 4xx is never retried', async () => {
    const { requests, fetch: f } = recording();
    const c = connect({ fetch: f });
    const err = await rejection(c.submit({ image: randomBytes(4096), pipeline: 'edit', params: { operations: [] } }));
    expect(err).toBeInstanceOf(DarkroomError);
    expect(err).toMatchObject({ status: 415, code: 'unsupported_media_type', attempt: 1 });
    expect((err as DarkroomError).requestId).toBeTruthy();
    expect(requests).toEqual(['POST /v1/jobs']);

    const invalid = await rejection(c.submit({ image: PHOTO, pipeline: 'edit', params: { operations: [{ op: 'resize', width: 0 }] } }));
    expect(invalid).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(invalid.errors.map((e) => e.path)).toContain('params.operations.0.width');
    expect(invalid.message).toContain('params.operations.0.width');

    await expect(c.status('edit_aaaaaaaaaaaaaaaaaaaaaaaa')).rejects.toMatchObject({ status: 404, code: 'not_found' });
    await expect(c.submit({ pipeline: 'teleport' })).rejects.toMatchObject({ status: 404, code: 'not_found' });
    await expect(connect({ apiKey: 'wrong' }).queue()).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('retries a network error with backoff, then throws DarkroomNetworkError', async () => {
    const retries: RetryEvent[] = [];
    const c = new DarkroomClient({
      baseUrl: `http://127.0.0.1:${await freePort()}`,
      apiKey: 'k',
      retry: { attempts: 3, baseDelayMs: 5 },
      onRetry: (e) => retries.push(e),
    });
    const err = await rejection(c.queue());
    expect(err).toBeInstanceOf(DarkroomNetworkError);
    expect(err).toMatchObject({ code: 'ECONNREFUSED', attempts: 3 });
    expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
  });
});

describe('safe retries', () => {
  it('a submit whose answer was lost is retried with the same Idempotency-Key: one job', async () => {
    const keys: string[] = [];
    let lost = false;
    const lossy: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (init?.method !== 'POST') return res;
      keys.push(new Headers(init.headers).get('idempotency-key')!);
      if (lost) return res;
      lost = true;
      await res.arrayBuffer(); // the server has answered and queued the job; the station never hears of it
      throw new TypeError('fetch failed');
    };
    const before = await totalJobs();
    const job = await connect({ fetch: lossy, retry: { baseDelayMs: 10 } }).submit({ image: PHOTO, pipeline: 'edit', params: editToWebp });
    expect(keys).toHaveLength(2);
    expect(keys[1]).toBe(keys[0]);
    expect(job.deduplicated).toBe(true);
    expect(await totalJobs()).toBe(before + 1);
    expect((await client.waitFor(job.id)).status).toBe('completed');
  });

  it('honours Retry-After on 429, then gets through', async () => {
    await client.waitFor((await client.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } })).id); // run-time history
    await pipelineAdmin('synthetic', 'pause');
    try {
      const station = { apiKey: LIMITED.key };
      const first = await connect(station).submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
      // Without retries the 429 is thrown, with its Retry-After.
      const refused = await rejection(
        connect({ ...station, retry: { attempts: 1 } }).submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } }),
      );
      expect(refused).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(refused.retryAfterMs).toBeGreaterThanOrEqual(1000);

      // With retries: the client waits the Retry-After; meanwhile the station's slot frees.
      const posts: number[] = [];
      const retries: (RetryEvent & { at: number })[] = [];
      const c = connect({
        ...station,
        retry: { maxRetryAfterMs: 10_000 },
        fetch: (input, init) => {
          if (init?.method === 'POST') posts.push(Date.now());
          return fetch(input, init);
        },
        onRetry: (e) => {
          retries.push({ ...e, at: Date.now() });
          void connect(station).cancel(first.id);
        },
      });
      const job = await c.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
      expect(job.status).toBe('queued');
      expect(retries).toHaveLength(1);
      expect(retries[0]!.error).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(retries[0]!.delayMs).toBe((retries[0]!.error as DarkroomError).retryAfterMs);
      expect(posts).toHaveLength(2);
      expect(posts[1]! - retries[0]!.at).toBeGreaterThanOrEqual(retries[0]!.delayMs - 5);
      await connect(station).cancel(job.id);
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
  });
});

describe('the station script of the README', () => {
  it('submits a photo, waits and saves the result, in ten lines of code', async () => {
    const script = path.join(REPO_ROOT, 'packages/client/examples/station.ts');
    const code = fs
      .readFileSync(script, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.trim().startsWith('//'));
    expect(code.length).toBeLessThanOrEqual(10);

    const out = path.join(dir, 'station-out.webp');
    // The workspace's own condition resolves the package to its sources, so the test needs no build first.
    const run = spawn(process.execPath, ['--conditions=@darkroom/source', '--import', 'tsx', script, PHOTO, out], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DARKROOM_URL: sys.url, DARKROOM_API_KEY: STATIONS.alpha.key },
    });
    let output = '';
    run.stdout.on('data', (d: Buffer) => {
      output += d;
    });
    run.stderr.on('data', (d: Buffer) => {
      output += d;
    });
    const exitCode = await new Promise<number | null>((resolve) => run.once('exit', resolve));
    expect(exitCode, output).toBe(0);
    expect(output).toMatch(/^completed/m);
    expect(output).toContain(`saved ${out}`);
    expect(await sharp(out).metadata()).toMatchObject({ format: 'webp', width: 512 });
  });
});

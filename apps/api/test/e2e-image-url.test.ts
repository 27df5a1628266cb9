import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fixture, freePort, listFiles, type System, startSystem } from '@darkroom/testing';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, totalJobs, waitForFinal } from './helpers.ts';

/*
 * A submit's `imageUrl`, through the real api and worker: the api fetches the image from a real
 * HTTP server this test runs, judges it like an upload, and the job runs from it. Every refusal
 * answers with its reason and leaves nothing: no job, no file, no request where none was due.
 * One system lets private addresses through (the test's server is on loopback); a second keeps
 * the default guard.
 */

const MAX_BYTES = 512 * 1024;
const TIMEOUT_MS = 1500;
const landscape = fixture('Landscape_1.jpg'); // 140 KB: past the memory threshold, under the limit
const big = fixture('2569067123_aca715a2ee_o.jpg'); // 829 KB: past the limit
const params = {
  operations: [
    { op: 'resize', width: 200 },
    { op: 'format', type: 'webp', quality: 70 },
  ],
};
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let open: System;
let guarded: System;
let images: http.Server;
let base: string;
/** Requests the image server got, by path and query. */
const hits = new Map<string, number>();
const hitsOf = (p: string) => hits.get(p) ?? 0;

function route(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  switch (url.pathname) {
    case '/landscape.jpg':
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': landscape.length });
      return void res.end(landscape);
    case '/big-declared.jpg':
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': big.length });
      return void res.end(big);
    case '/big-chunked.jpg': {
      // No Content-Length: the body is cut off once it grows past the limit.
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      for (let at = 0; at < big.length; at += 64 * 1024) res.write(big.subarray(at, at + 64 * 1024));
      return void res.end();
    }
    case '/page.html':
      res.writeHead(200, { 'Content-Type': 'image/jpeg' }); // the declared type is not believed
      return void res.end(`<!doctype html><html><body>${'<p>not an image</p>'.repeat(200)}</body></html>`);
    case '/truncated.png':
      res.writeHead(200, { 'Content-Type': 'image/png' });
      return void res.end(fixture('truncated.png'));
    case '/never':
      return; // headers never come
    case '/stalls': {
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': landscape.length });
      return void res.write(landscape.subarray(0, 1000)); // and the rest never comes
    }
    case '/moved':
      res.writeHead(302, { Location: '/landscape.jpg?via=moved' });
      return void res.end();
    case '/to-file':
      res.writeHead(302, { Location: 'file:///etc/passwd' });
      return void res.end();
    case '/loop':
      res.writeHead(302, { Location: `/loop?n=${Number(url.searchParams.get('n') ?? 0) + 1}` });
      return void res.end();
    default:
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      return void res.end('no such image');
  }
}

beforeAll(async () => {
  images = http.createServer((req, res) => {
    hits.set(req.url ?? '', hitsOf(req.url ?? '') + 1);
    route(req, res);
  });
  await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  const env = {
    DARKROOM_MAX_UPLOAD_BYTES: String(MAX_BYTES),
    DARKROOM_UPLOAD_MEMORY_BYTES: String(64 * 1024),
    DARKROOM_INPUT_URL_TIMEOUT_MS: String(TIMEOUT_MS),
  };
  [open, guarded] = await Promise.all([
    startSystem({ workers: 1, env: { ...env, DARKROOM_INPUT_URL_ALLOW_PRIVATE: 'true' } }),
    startSystem({ workers: 0, env }),
  ]);
});

afterAll(async () => {
  images?.closeAllConnections();
  images?.close();
  await Promise.all([open?.stop(), guarded?.stop()]);
});

interface Problem {
  status: number;
  code: string;
  detail: string;
  errors?: { path: string; message: string; code?: string }[];
}

async function problemOf(res: Response): Promise<Problem> {
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  return (await res.json()) as Problem;
}

describe('a submit with imageUrl', () => {
  it('in JSON: fetched once, stored as served, and the job completes from it', async () => {
    const res = await submit(open, { pipeline: 'edit', params, imageUrl: `${base}/landscape.jpg?run=json` });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(hitsOf('/landscape.jpg?run=json')).toBe(1);
    expect(sha(fs.readFileSync(path.join(open.dataDir, 'inputs', id)))).toBe(sha(landscape));
    // The job keeps where its input came from, without the query (it may carry a signature).
    const redis = new Redis(open.redis.url);
    const data = JSON.parse((await redis.hget(`${open.prefix}:edit:${id}`, 'data')) ?? '{}') as { input?: { sourceUrl?: string } };
    await redis.quit();
    expect(data.input?.sourceUrl).toBe(`${base}/landscape.jpg`);

    const done = await waitForFinal(open, id);
    expect(done.status).toBe('completed');
    const out = await open.fetch(`/v1/jobs/${id}/result`);
    expect(out.status).toBe(200);
    const meta = await sharp(Buffer.from(await out.arrayBuffer())).metadata();
    const source = await sharp(landscape).metadata();
    expect(meta.format).toBe('webp');
    expect(meta.width).toBe(200);
    expect(meta.height).toBe(Math.round((200 * source.height!) / source.width!));
  });

  it('in multipart, as a text field, through a redirect', async () => {
    const res = await submit(open, multipart({ pipeline: 'edit', params: JSON.stringify(params), imageUrl: `${base}/moved` }));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(hitsOf('/moved')).toBe(1);
    expect(hitsOf('/landscape.jpg?via=moved')).toBe(1);
    expect(sha(fs.readFileSync(path.join(open.dataDir, 'inputs', id)))).toBe(sha(landscape));
    const done = await waitForFinal(open, id);
    expect(done.status).toBe('completed');
  });
});

describe('a fetch that fails', () => {
  it('answers 422 with the reason at imageUrl, and leaves no job and no file', async () => {
    const closedPort = await freePort();
    const before = { jobs: await totalJobs(open), files: listFiles(open.dataDir) };
    const cases: [string, string, string, RegExp][] = [
      ['Content-Length over the limit', `${base}/big-declared.jpg`, 'too_big', new RegExp(`limit of ${MAX_BYTES} bytes`)],
      ['a body that grows past the limit', `${base}/big-chunked.jpg`, 'too_big', new RegExp(`limit of ${MAX_BYTES} bytes`)],
      ['an HTML page', `${base}/page.html`, 'not_an_image', /not in an accepted format|format/],
      ['an image cut short', `${base}/truncated.png`, 'not_an_image', /incomplete|truncated|end/i],
      ['a 404', `${base}/gone.jpg`, 'unreachable', /^the server answered 404$/],
      ['a closed port', `http://127.0.0.1:${closedPort}/x.jpg`, 'unreachable', /ECONNREFUSED/],
      ['no answer in time', `${base}/never`, 'unreachable', new RegExp(`within ${TIMEOUT_MS} ms`)],
      ['a body that stops coming', `${base}/stalls`, 'unreachable', new RegExp(`within ${TIMEOUT_MS} ms`)],
      ['too many redirects', `${base}/loop`, 'unreachable', /^more than 3 redirects$/],
      ['a redirect out of http(s)', `${base}/to-file`, 'refused', /^a redirect's target must use http or https$/],
    ];
    for (const [what, imageUrl, code, message] of cases) {
      const started = Date.now();
      const res = await submit(open, { pipeline: 'edit', params, imageUrl });
      expect(res.status, what).toBe(422);
      const body = await problemOf(res);
      expect(body.code, what).toBe('invalid_image');
      expect(body.errors, what).toHaveLength(1);
      expect(body.errors![0], what).toMatchObject({ path: 'imageUrl', code });
      expect(body.errors![0]!.message, what).toMatch(message);
      expect(JSON.stringify(body), what).not.toContain('passwd');
      // The time bound holds for the slow ones.
      expect(Date.now() - started, what).toBeLessThan(TIMEOUT_MS + 3000);
    }
    expect(hitsOf('/loop?n=3')).toBe(1);
    expect(hitsOf('/loop?n=4')).toBe(0);
    expect(await totalJobs(open)).toBe(before.jobs);
    expect(listFiles(open.dataDir)).toEqual(before.files);
  });

  it('with the default guard, refuses loopback by address and by name without a request', async () => {
    const port = (images.address() as AddressInfo).port;
    const before = { jobs: await totalJobs(guarded), files: listFiles(guarded.dataDir), hits: hitsOf('/landscape.jpg?guarded=1') };
    for (const host of ['127.0.0.1', 'localhost', '[::ffff:127.0.0.1]']) {
      const res = await submit(guarded, { pipeline: 'edit', params, imageUrl: `http://${host}:${port}/landscape.jpg?guarded=1` });
      expect(res.status, host).toBe(422);
      const body = await problemOf(res);
      expect(body.errors, host).toEqual([
        {
          path: 'imageUrl',
          code: 'refused',
          message: 'the host resolves to a loopback, private, link-local or reserved address, which is not allowed',
        },
      ]);
      // Nothing about what the name resolved to.
      if (host === 'localhost') expect(JSON.stringify(body)).not.toMatch(/127\.0\.0\.1|::1/);
    }
    expect(hitsOf('/landscape.jpg?guarded=1')).toBe(before.hits);
    expect(await totalJobs(guarded)).toBe(before.jobs);
    expect(listFiles(guarded.dataDir)).toEqual(before.files);
  });
});

describe('checks before the fetch', () => {
  it('answers field errors, unknown pipelines and priorities first, without a request', async () => {
    const url = `${base}/landscape.jpg?early=1`;
    const before = { jobs: await totalJobs(open), files: listFiles(open.dataDir) };
    const cases: [string, () => Promise<Response>, number, string | undefined][] = [
      [
        'an image and imageUrl (JSON)',
        () => submit(open, { pipeline: 'edit', params, imageUrl: url, imageBase64: landscape.toString('base64') }),
        400,
        'imageUrl',
      ],
      [
        'an image and imageUrl (multipart)',
        () => submit(open, multipart({ pipeline: 'edit', params: JSON.stringify(params), imageUrl: url }, { data: landscape })),
        400,
        'imageUrl',
      ],
      ['a pipeline that takes no image', () => submit(open, { pipeline: 'synthetic', imageUrl: url }), 400, 'imageUrl'],
      ['not http(s)', () => submit(open, { pipeline: 'edit', params, imageUrl: 'ftp://127.0.0.1/x.jpg' }), 400, 'imageUrl'],
      ['credentials', () => submit(open, { pipeline: 'edit', params, imageUrl: `http://u:p@127.0.0.1/x.jpg` }), 400, 'imageUrl'],
      ['an unknown pipeline', () => submit(open, { pipeline: 'teleport', imageUrl: url }), 404, undefined],
      ['bad params', () => submit(open, { pipeline: 'edit', params: { operations: [{ op: 'explode' }] }, imageUrl: url }), 400, undefined],
      ['a bad priority', () => submit(open, { pipeline: 'edit', params, priority: 'urgent', imageUrl: url }), 400, 'priority'],
    ];
    for (const [what, send, status, pathOf] of cases) {
      const res = await send();
      expect(res.status, what).toBe(status);
      const body = await problemOf(res);
      if (pathOf)
        expect(
          body.errors?.map((e) => e.path),
          what,
        ).toContain(pathOf);
    }
    expect(hitsOf('/landscape.jpg?early=1')).toBe(0);
    expect(await totalJobs(open)).toBe(before.jobs);
    expect(listFiles(open.dataDir)).toEqual(before.files);
  });
});

describe('Idempotency-Key with imageUrl', () => {
  it('answers a repeat with the original job without fetching again; another URL is 409', async () => {
    const url = `${base}/landscape.jpg?idem=1`;
    const headers = { 'Idempotency-Key': 'image-url-repeat-1' };
    const first = await submit(open, { pipeline: 'edit', params, imageUrl: url }, { headers });
    expect(first.status).toBe(202);
    const a = (await first.json()) as { id: string };
    const jobs = await totalJobs(open);

    const again = await submit(open, { pipeline: 'edit', params, imageUrl: url }, { headers });
    expect(again.status).toBe(200);
    const b = (await again.json()) as { id: string; deduplicated?: boolean };
    expect(b).toMatchObject({ id: a.id, deduplicated: true });
    expect(hitsOf('/landscape.jpg?idem=1')).toBe(1);

    const other = await submit(open, { pipeline: 'edit', params, imageUrl: `${base}/landscape.jpg?idem=2` }, { headers });
    expect(other.status).toBe(409);
    expect((await problemOf(other)).code).toBe('conflict');
    expect(hitsOf('/landscape.jpg?idem=2')).toBe(0);
    expect(await totalJobs(open)).toBe(jobs);
  });

  it('is not taken by a fetch that failed: the same key then works with another URL', async () => {
    const headers = { 'Idempotency-Key': 'image-url-failed-1' };
    const failed = await submit(open, { pipeline: 'edit', params, imageUrl: `${base}/gone.jpg` }, { headers });
    expect(failed.status).toBe(422);
    const ok = await submit(open, { pipeline: 'edit', params, imageUrl: `${base}/landscape.jpg?idem=3` }, { headers });
    expect(ok.status).toBe(202);
  });
});

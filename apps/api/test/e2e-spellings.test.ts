import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, totalJobs, waitForFinal } from './helpers.ts';

/*
 * The plain spelling of a route of the table (`/v1/jobs`, `/v1/jobs/{id}`) is answered by the
 * dispatcher, every other spelling by Express; both run the same steps and handlers from the
 * table. Both must answer alike: same status, body, and headers, and the same refusals. A
 * trailing slash (or a percent-encoded id) is the way to reach Express.
 */

const METERED = { name: 'metered', key: 'metered-station-key-0123456789', requestsPerMinute: 1000 };
let sys: System;
let done: JobStatusBody;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-spellings-'));
  const file = path.join(dir, 'stations.json');
  fs.writeFileSync(file, JSON.stringify([METERED]));
  sys = await startSystem({ env: { DARKROOM_STATIONS_FILE: file } });
  const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
  done = await waitForFinal(sys, ((await res.json()) as JobStatusBody).id);
});
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The headers whose values do not vary per request. */
function stableHeaders(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of res.headers) {
    if (['date', 'x-request-id', 'content-length', 'keep-alive', 'connection', 'ratelimit', 'location'].includes(k)) continue;
    out[k] = v;
  }
  return out;
}

describe('GET /v1/jobs/{id}: plain and odd spellings answer alike', () => {
  const cases: [string, Record<string, string> | null, 'alpha' | 'beta' | null][] = [
    ['own job', null, 'alpha'],
    ['another station’s job', null, 'beta'],
    ['no credential', null, null],
    ['admin credential', { authorization: `Bearer ${ADMIN_TOKEN}` }, null],
  ];
  for (const [name, headers, station] of cases) {
    it(name, async () => {
      const init = { station, ...(headers ? { headers } : {}) };
      const plain = await sys.fetch(`/v1/jobs/${done.id}`, init);
      const express = await sys.fetch(`/v1/jobs/${done.id}/`, init);
      expect(plain.status).toBe(express.status);
      expect(stableHeaders(plain)).toEqual(stableHeaders(express));
      expect(plain.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(await plain.json()).toEqual(await express.json());
    });
  }

  it('answers an unknown id 404 on both, and HEAD without a body', async () => {
    const unknown = 'synthetic_zzzzzzzzzzzzzzzzzzzzzzzz';
    const plain = await sys.fetch(`/v1/jobs/${unknown}`);
    const express = await sys.fetch(`/v1/jobs/${unknown}/`);
    expect([plain.status, express.status]).toEqual([404, 404]);
    expect(plain.headers.get('content-type')).toBe(express.headers.get('content-type'));
    expect(await plain.json()).toEqual(await express.json());
    const head = await sys.fetch(`/v1/jobs/${done.id}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('keeps the caller’s X-Request-Id when well formed', async () => {
    const res = await sys.fetch(`/v1/jobs/${done.id}`, { headers: { 'x-request-id': 'station-7.req_42' } });
    expect(res.headers.get('x-request-id')).toBe('station-7.req_42');
    const bad = await sys.fetch(`/v1/jobs/${done.id}`, { headers: { 'x-request-id': 'no spaces allowed' } });
    expect(bad.headers.get('x-request-id')).not.toBe('no spaces allowed');
  });
});

describe('POST /v1/jobs: plain and odd spellings answer alike', () => {
  const post = (path: string, body: string | Buffer, headers: Record<string, string>, station: 'alpha' | null = 'alpha') =>
    sys.fetch(path, { method: 'POST', body, headers, station });

  const refusals: [string, string | Buffer, Record<string, string>, 'alpha' | null, number][] = [
    ['invalid JSON', '{"pipeline":', { 'content-type': 'application/json' }, 'alpha', 400],
    ['a JSON array', '[1,2]', { 'content-type': 'application/json' }, 'alpha', 400],
    ['unknown pipeline', '{"pipeline":"nope"}', { 'content-type': 'application/json' }, 'alpha', 404],
    ['bad params', '{"pipeline":"synthetic","params":{"steps":-1}}', { 'content-type': 'application/json' }, 'alpha', 400],
    ['a charset JSON does not use', '{"pipeline":"synthetic"}', { 'content-type': 'application/json; charset=latin1' }, 'alpha', 415],
    [
      'an unknown encoding',
      '{"pipeline":"synthetic"}',
      { 'content-type': 'application/json', 'content-encoding': 'x-bogus' },
      'alpha',
      415,
    ],
    ['no credential', '{"pipeline":"synthetic"}', { 'content-type': 'application/json' }, null, 401],
    ['text/plain', 'hello', { 'content-type': 'text/plain' }, 'alpha', 415],
    ['a bad wait', '{"pipeline":"synthetic"}', { 'content-type': 'application/json' }, 'alpha', 400],
  ];
  for (const [name, body, headers, station, status] of refusals) {
    it(`refuses ${name} with ${status}, the same on both, creating nothing`, async () => {
      const before = await totalJobs(sys);
      const q = name === 'a bad wait' ? '?wait=abc' : '';
      const plain = await post(`/v1/jobs${q}`, body, headers, station);
      const express = await post(`/v1/jobs/${q}`, body, headers, station);
      expect([plain.status, express.status]).toEqual([status, status]);
      expect(plain.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(stableHeaders(plain)).toEqual(stableHeaders(express));
      expect(await plain.json()).toEqual(await express.json());
      expect(await totalJobs(sys)).toBe(before);
    });
  }

  it('refuses a body over the limit with 413, declared or not', async () => {
    const big = JSON.stringify({ pipeline: 'synthetic', pad: 'x'.repeat(40 * 1024 * 1024) });
    const declared = await post('/v1/jobs', big, { 'content-type': 'application/json' });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { code: string }).code).toBe('payload_too_large');
    // Chunked: no Content-Length, so the limit is found while reading.
    const chunked = await sys.fetch('/v1/jobs', {
      method: 'POST',
      station: 'alpha',
      headers: { 'content-type': 'application/json' },
      body: new Blob([big]).stream(),
      duplex: 'half',
    } as RequestInit & { station: 'alpha'; duplex: 'half' });
    expect(chunked.status).toBe(413);
  });

  it('accepts the same submit on both, gzip included, with the same body shape', async () => {
    const json = JSON.stringify({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, priority: 'low' });
    const plain = await post('/v1/jobs', json, { 'content-type': 'application/json' });
    const express = await post('/v1/jobs/', json, { 'content-type': 'application/json' });
    const gzip = await post('/v1/jobs', zlib.gzipSync(json), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    const utf8 = await post('/v1/jobs', json, { 'content-type': 'application/json; charset=UTF-8' });
    for (const res of [plain, express, gzip, utf8]) {
      expect(res.status).toBe(202);
      expect(res.headers.get('location')).toMatch(/^\/v1\/jobs\/synthetic_/);
    }
    const bodies = (await Promise.all([plain, express, gzip, utf8].map((r) => r.json()))) as JobStatusBody[];
    expect(new Set(bodies.map((b) => b.id)).size).toBe(4);
    const shape = (b: JobStatusBody) => ({ ...b, id: '', createdAt: '', links: {}, position: 0, estimatedWaitSeconds: 0 });
    for (const b of bodies) {
      expect(b).toMatchObject({ pipeline: 'synthetic', priority: 'low', status: expect.stringMatching(/queued|active|completed/) });
      if (b.status === 'queued') expect(b.position).toBeGreaterThanOrEqual(1);
    }
    expect(shape(bodies[0]!)).toEqual(shape(bodies[1]!));
    expect(stableHeaders(plain)).toEqual(stableHeaders(express));
    for (const b of bodies) expect((await waitForFinal(sys, b.id)).status).toBe('completed');
  });

  it('counts the station’s requests per minute on both', async () => {
    const metered = { authorization: `Bearer ${METERED.key}` };
    const id = (
      (await (
        await post('/v1/jobs', '{"pipeline":"synthetic"}', { 'content-type': 'application/json', ...metered }, null)
      ).json()) as JobStatusBody
    ).id;
    const plain = await sys.fetch(`/v1/jobs/${id}`, { station: null, headers: metered });
    const express = await sys.fetch(`/v1/jobs/${id}/`, { station: null, headers: metered });
    expect([plain.status, express.status]).toEqual([200, 200]);
    const remaining = (r: Response) => Number(/remaining=(\d+)/.exec(r.headers.get('ratelimit') ?? '')?.[1]);
    expect(plain.headers.get('ratelimit-policy')).toBe('1000;w=60');
    expect(remaining(express)).toBe(remaining(plain) - 1);
  });
});

describe('every other route of the table: plain and odd spellings answer alike', () => {
  const cases: [string, string, Record<string, string>, 'alpha' | null][] = [
    ['GET', '/v1/pipelines', {}, 'alpha'],
    ['GET', '/v1/pipelines', {}, null],
    ['GET', '/v1/queue', {}, 'alpha'],
    ['GET', '/v1/queue', { authorization: `Bearer ${ADMIN_TOKEN}` }, null],
    ['GET', '/v1/jobs?ids=synthetic_zzzzzzzzzzzzzzzzzzzzzzzz', {}, 'alpha'],
    ['DELETE', '/v1/jobs/synthetic_zzzzzzzzzzzzzzzzzzzzzzzz', {}, 'alpha'],
    ['GET', '/v1/jobs/synthetic_zzzzzzzzzzzzzzzzzzzzzzzz/result', {}, 'alpha'],
    ['POST', '/v1/admin/pipelines/nope/pause', { authorization: `Bearer ${ADMIN_TOKEN}` }, null],
    ['POST', '/v1/admin/pipelines/synthetic/resume', {}, 'alpha'],
    ['GET', '/healthz', {}, null],
    ['GET', '/openapi.json', {}, null],
  ];
  for (const [method, path, headers, station] of cases) {
    it(`${method} ${path} (${station ?? (headers.authorization ? 'admin' : 'no credential')})`, async () => {
      const [p, q] = path.split('?');
      const odd = `${p}/${q ? `?${q}` : ''}`;
      const plain = await sys.fetch(path, { method, headers, station });
      const express = await sys.fetch(odd, { method, headers, station });
      expect(plain.status).toBe(express.status);
      expect(stableHeaders(plain)).toEqual(stableHeaders(express));
      const [a, b] = [await plain.text(), await express.text()];
      // The queue's figures move with time (throughput per minute); its shape and limits do not.
      if (path === '/v1/queue')
        expect((JSON.parse(a) as { limits: unknown }).limits).toEqual((JSON.parse(b) as { limits: unknown }).limits);
      else expect(a).toBe(b);
    });
  }
});

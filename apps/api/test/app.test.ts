import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  BudgetExceeded,
  createJobSystem,
  FsBlobStore,
  IdempotencyConflict,
  ImageTooLarge,
  InvalidImage,
  InvalidSubmit,
  JobExpired,
  JobNotFound,
  JobStateConflict,
  NoResult,
  PriorityNotAllowed,
  QueueFull,
  ReplicasUnavailable,
  ResultNotReady,
  StationBusy,
  StoreUnavailable,
  UnknownPipeline,
  UnsupportedImage,
} from '@darkroom/jobs';
import { loadConfig } from '@darkroom/runtime';
import { ADMIN_TOKEN, fixture, type RedisHandle, STATIONS, startRedis, uniquePrefix } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.ts';
import { loadStations } from '../src/auth/stations.ts';
import { toHttpError } from '../src/http/error-handler.ts';
import { DOMAIN_ERRORS, PROBLEMS } from '../src/http/error-table.ts';

/*
 * createApp in process, against a real Redis and data directory (no api process, no worker):
 * the HTTP answers a station gets, and the one table that turns domain errors into them.
 */

let redis: RedisHandle;
let conn: Redis;
let base: string;
let server: http.Server;
let dataDir: string;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-app-'));
  const config = loadConfig({
    REDIS_URL: redis.url,
    DARKROOM_REDIS_PREFIX: uniquePrefix(),
    DARKROOM_DATA_DIR: dataDir,
    DARKROOM_API_KEYS: `${STATIONS.alpha.name}:${STATIONS.alpha.key},${STATIONS.beta.name}:${STATIONS.beta.key}`,
    DARKROOM_ADMIN_TOKEN: ADMIN_TOKEN,
    DARKROOM_LOG_LEVEL: 'silent',
  });
  const blobs = new FsBlobStore(dataDir);
  await blobs.ensureReady();
  const deps = createJobSystem({ config, logger: pino({ level: 'silent' }), redis: conn, blobs });
  const { listener } = createApp(deps, loadStations(config));
  server = http.createServer(listener).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closers.push(
    () => new Promise((r) => server.close(r)),
    () => deps.close(),
  );
});
afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  conn?.disconnect();
  await redis?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const call = (pathname: string, init: RequestInit & { key?: string } = {}) =>
  fetch(base + pathname, { ...init, headers: { authorization: `Bearer ${init.key ?? STATIONS.alpha.key}`, ...(init.headers as object) } });
const post = (body: unknown, key?: string) =>
  call('/v1/jobs', {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
    ...(key ? { key } : {}),
  });

describe('createApp', () => {
  it('queues, shows and cancels a job; a second cancel is a 409 problem', async () => {
    const res = await post({ pipeline: 'synthetic', params: { steps: 3 } });
    expect(res.status).toBe(202);
    const job = (await res.json()) as { id: string; status: string; position: number };
    expect(res.headers.get('location')).toBe(`/v1/jobs/${job.id}`);
    expect([job.status, job.position]).toEqual(['queued', 1]);
    expect((await call(`/v1/jobs/${job.id}`)).status).toBe(200);
    expect((await call(`/v1/jobs/${job.id}`, { key: STATIONS.beta.key })).status).toBe(404);
    const cancelled = await call(`/v1/jobs/${job.id}`, { method: 'DELETE' });
    expect([cancelled.status, ((await cancelled.json()) as { status: string }).status]).toEqual([200, 'cancelled']);
    const again = await call(`/v1/jobs/${job.id}`, { method: 'DELETE' });
    expect(again.status).toBe(409);
    expect(again.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await again.json()).toMatchObject({ status: 409, code: 'conflict', detail: 'the job is already cancelled' });
    const result = await call(`/v1/jobs/${job.id}/result`);
    expect([result.status, ((await result.json()) as { code: string }).code]).toEqual([409, 'no_result']);
  });

  it('answers bad input with the table’s problem and leaves no job or file', async () => {
    const before = fs.readdirSync(path.join(dataDir, 'inputs')).length;
    const cases: [unknown, number, string][] = [
      [
        { pipeline: 'edit', params: { operations: [] }, imageBase64: fixture('check.svg').toString('base64') },
        415,
        'unsupported_media_type',
      ],
      [{ pipeline: 'edit', params: { operations: [] }, imageBase64: fixture('truncated.png').toString('base64') }, 422, 'invalid_image'],
      [{ pipeline: 'edit', imageBase64: fixture('with-alpha.png').toString('base64') }, 400, 'invalid_request'],
      [{ pipeline: 'nope' }, 404, 'not_found'],
    ];
    for (const [body, status, code] of cases) {
      const res = await post(body);
      const problem = (await res.json()) as { status: number; code: string; detail: string };
      expect([res.status, problem.status, problem.code], JSON.stringify(body).slice(0, 80)).toEqual([status, status, code]);
      expect(problem.detail).not.toMatch(/Error|\n\s+at |\/(tmp|var|work|home)\//);
    }
    expect(fs.readdirSync(path.join(dataDir, 'inputs')).length).toBe(before);
    expect(fs.readdirSync(path.join(dataDir, 'tmp'))).toEqual([]);
  });
});

describe('the error table', () => {
  const rows: [Error, number, string, string | null][] = [
    [new InvalidSubmit('the request is invalid', [{ path: 'pipeline', message: 'required' }]), 400, 'invalid_request', null],
    [new PriorityNotAllowed('priority critical is above this station’s highest'), 403, 'forbidden', null],
    [new UnknownPipeline('sepia'), 404, 'not_found', null],
    [new JobNotFound(), 404, 'not_found', null],
    [new IdempotencyConflict('still being processed', { retryAfterSeconds: 1 }), 409, 'conflict', '1'],
    [new JobStateConflict('the job is already completed'), 409, 'conflict', null],
    [new ResultNotReady('the job is queued', { retryAfterSeconds: 1 }), 409, 'not_ready', '1'],
    [new NoResult('the job is failed; it has no result'), 409, 'no_result', null],
    [new JobExpired(), 410, 'expired', null],
    [new ImageTooLarge(1024), 413, 'payload_too_large', null],
    [new UnsupportedImage('SVG is not accepted'), 415, 'unsupported_media_type', null],
    [new InvalidImage('the image is incomplete'), 422, 'invalid_image', null],
    [new QueueFull('the edit queue is full', { retryAfterSeconds: 7 }), 429, 'queue_full', '7'],
    [new StationBusy('over its limit', { retryAfterSeconds: 3 }), 429, 'rate_limited', '3'],
    [new BudgetExceeded('used its GPU seconds for today', { retryAfterSeconds: 3600 }), 429, 'budget_exceeded', '3600'],
    [new StoreUnavailable(), 503, 'unavailable', '5'],
    [new ReplicasUnavailable(), 503, 'unavailable', '2'],
  ];

  it('has a row for every named error, and each answers its status, code, detail and Retry-After', () => {
    expect(new Set(rows.map(([e]) => e.constructor))).toEqual(new Set(DOMAIN_ERRORS.map(([cls]) => cls)));
    for (const [err, status, code, retryAfter] of rows) {
      const p = toHttpError(err);
      expect([p.status, p.code, p.message], err.constructor.name).toEqual([status, code, err.message]);
      expect(p.headers['Retry-After'] ?? null, err.constructor.name).toBe(retryAfter);
    }
    expect(toHttpError(rows[0]![0]).body().errors).toEqual([{ path: 'pipeline', message: 'required' }]);
  });

  it('is the only place an error status is chosen: no other api or domain source names one', () => {
    const roots = [new URL('../src/', import.meta.url), new URL('../../../packages/jobs/src/', import.meta.url)];
    const files = roots.flatMap((root) =>
      fs.readdirSync(root, { recursive: true, encoding: 'utf8' }).map((f) => path.join(root.pathname, f)),
    );
    const naming = /new HttpError\(\s*\d|\b(status|statusCode)\s*[:=]\s*[45]\d\d\b|writeHead\(\s*[45]\d\d\b/;
    const offenders = files.filter(
      (f) => f.endsWith('.ts') && !f.endsWith('http/error-table.ts') && naming.test(fs.readFileSync(f, 'utf8')),
    );
    expect(files.length).toBeGreaterThan(30);
    expect(offenders).toEqual([]);
    expect(Object.values(PROBLEMS).every(([status]) => status >= 400)).toBe(true);
  });

  it('answers anything it does not name as a 500 that says nothing of the error', () => {
    const p = toHttpError(new TypeError('boom at /var/lib/darkroom/secret.ts:12'));
    expect([p.status, p.code, p.message]).toEqual([500, 'internal', 'an internal error occurred; it has been logged']);
  });
});

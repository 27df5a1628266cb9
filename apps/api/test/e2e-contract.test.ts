import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, fixture, type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, readSse, submit, totalJobs, waitForFinal } from './helpers.ts';

/*
 * The station contract beyond submit/poll: cancel, live events, sync wait, idempotency, station
 * limits and pause/resume — against the real api and worker processes.
 */

const LIMITED = { name: 'limited', key: 'limited-key-0123456789abcdef' };
const CHATTY = { name: 'chatty', key: 'chatty-key-0123456789abcdef' };
let sys: System;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-'));
  const file = path.join(dir, 'stations.json');
  fs.writeFileSync(
    file,
    JSON.stringify([
      { ...LIMITED, maxPending: 2 },
      { ...CHATTY, requestsPerMinute: 3 },
    ]),
  );
  sys = await startSystem({ env: { DARKROOM_STATIONS_FILE: file } });
});
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const asStation = (key: string) => ({ station: null, headers: { authorization: `Bearer ${key}` } });
const synthetic = (params: object) => ({ pipeline: 'synthetic', params });
const body = async (res: Response) => (await res.json()) as JobStatusBody;
const status = async (id: string) => body(await sys.fetch(`/v1/jobs/${id}`));
const admin = (p: string, method = 'POST') => fetch(`${sys.url}${p}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

describe('cancel', () => {
  it('removes a queued job at once: 200 cancelled, it never runs, a second cancel is 409', async () => {
    await admin('/v1/admin/pipelines/synthetic/pause');
    try {
      const { id } = await body(await submit(sys, synthetic({ steps: 1, stepMs: 0 })));
      const res = await sys.fetch(`/v1/jobs/${id}`, { method: 'DELETE' });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ id, status: 'cancelled' });
      expect(await status(id)).toMatchObject({ status: 'cancelled', attempts: 0 });
      const result = await sys.fetch(`/v1/jobs/${id}/result`);
      expect(result.status).toBe(409);
      expect(((await result.json()) as { code: string }).code).toBe('no_result');
      const again = await sys.fetch(`/v1/jobs/${id}`, { method: 'DELETE' });
      expect(again.status).toBe(409);
      expect(((await again.json()) as { code: string }).code).toBe('conflict');
      expect((await sys.fetch(`/v1/jobs/${id}`, { method: 'DELETE', station: 'beta' })).status).toBe(404);
    } finally {
      await admin('/v1/admin/pipelines/synthetic/resume');
    }
  });

  it('aborts an active job on its worker: 202, then cancelled (not failed, not retried)', async () => {
    const { id } = await body(await submit(sys, synthetic({ steps: 100, stepMs: 100 })));
    await waitFor(async () => (await status(id)).status === 'active', { what: 'job to start' });
    const res = await sys.fetch(`/v1/jobs/${id}`, { method: 'DELETE' });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ id, status: 'active', cancelRequested: true });
    const final = await waitForFinal(sys, id, 'alpha', 10_000);
    expect(final.status).toBe('cancelled');
    expect(final.attempts).toBe(1);
    expect(final.error).toBeUndefined();
    // The pipeline stopped: 100 steps of 100 ms did not all run.
    expect(final.durationMs).toBeLessThan(10_000);
    const next = await waitForFinal(sys, (await body(await submit(sys, synthetic({ steps: 1, stepMs: 0 })))).id);
    expect(next.status).toBe('completed');
  });
});

describe('live events', () => {
  it('streams the current state, progress, and the final state, then closes', async () => {
    const { id } = await body(await submit(sys, synthetic({ steps: 5, stepMs: 150 })));
    const res = await sys.fetch(`/v1/jobs/${id}/events`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = await readSse(res);
    const bodies = events.map((e) => e.data as JobStatusBody);
    expect(events[0]!.event).toBe('status');
    expect(['queued', 'active']).toContain(bodies[0]!.status);
    const progress = events.filter((e) => e.event === 'progress').map((e) => (e.data as JobStatusBody).progress!.percent);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(events.at(-1)).toMatchObject({ event: 'status', data: { id, status: 'completed' } });
    expect(bodies.every((b) => b.id === id)).toBe(true);

    // Reconnecting after the end: the current state first, and the stream ends.
    const again = await readSse(await sys.fetch(`/v1/jobs/${id}/events`));
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ event: 'status', data: { status: 'completed' } });
    expect((await sys.fetch(`/v1/jobs/${id}/events`, { station: 'beta' })).status).toBe(404);
  });

  it('serves many watchers from one subscription: Redis sees no new connections', async () => {
    const { Redis } = await import('ioredis');
    const probe = new Redis(sys.redis.url);
    try {
      const clients = async () =>
        String(await probe.client('LIST'))
          .trim()
          .split('\n').length;
      await admin('/v1/admin/pipelines/synthetic/pause');
      const { id } = await body(await submit(sys, synthetic({ steps: 2, stepMs: 50 })));
      // The first watcher of a pipeline opens its subscription (one connection) ...
      const first = readSse(await sys.fetch(`/v1/jobs/${id}/events`));
      await new Promise((r) => setTimeout(r, 300));
      const before = await clients();
      // ... and a hundred more share it.
      const streams = await Promise.all(Array.from({ length: 100 }, () => sys.fetch(`/v1/jobs/${id}/events`)));
      const reads = [first, ...streams.map((res) => readSse(res))];
      await new Promise((r) => setTimeout(r, 300));
      expect(await clients()).toBe(before);
      await admin('/v1/admin/pipelines/synthetic/resume');
      const all = await Promise.all(reads);
      for (const events of all) expect(events.at(-1)).toMatchObject({ event: 'status', data: { id, status: 'completed' } });
    } finally {
      probe.disconnect();
    }
  });
});

describe('sync wait', () => {
  it('answers 202 with the current body when the job is not final in time', async () => {
    const res = await submit(sys, synthetic({ steps: 30, stepMs: 100 }), { query: '?wait=0.5' });
    expect(res.status).toBe(202);
    const b = await body(res);
    expect(['queued', 'active']).toContain(b.status);
    await sys.fetch(`/v1/jobs/${b.id}`, { method: 'DELETE' });
    await waitForFinal(sys, b.id);
  });
});

describe('Idempotency-Key', () => {
  const key = () => `k-${Math.random().toString(36).slice(2)}`;

  it('gives the original job back for the same request, however encoded', async () => {
    const k = key();
    const image = fixture('with-alpha.png');
    const first = await submit(
      sys,
      multipart({ pipeline: 'edit', params: '{"operations":[{"op":"flip"},{"op":"resize","width":32,"fit":"inside"}]}' }, { data: image }),
      {
        headers: { 'idempotency-key': k },
      },
    );
    expect(first.status).toBe(202);
    const original = await body(first);
    // The same request as JSON, keys in another order, priority spelled out as the default.
    const replay = await submit(
      sys,
      {
        priority: 'normal',
        imageBase64: image.toString('base64'),
        params: { operations: [{ op: 'flip' }, { width: 32, fit: 'inside', op: 'resize' }] },
        pipeline: 'edit',
      },
      { headers: { 'idempotency-key': k } },
    );
    expect(replay.status).toBe(200);
    expect(replay.headers.get('location')).toBe(`/v1/jobs/${original.id}`);
    expect(await replay.json()).toMatchObject({ id: original.id, deduplicated: true });

    const different = await submit(
      sys,
      { pipeline: 'edit', imageBase64: image.toString('base64'), params: { operations: [{ op: 'flop' }] } },
      { headers: { 'idempotency-key': k } },
    );
    expect(different.status).toBe(409);
    expect(((await different.json()) as { code: string }).code).toBe('conflict');
    // Another station's identical key is its own.
    expect((await submit(sys, synthetic({}), { station: 'beta', headers: { 'idempotency-key': k } })).status).toBe(202);
  });

  it('creates exactly one job for identical requests racing', async () => {
    const k = key();
    const before = await totalJobs(sys);
    const responses = await Promise.all(
      Array.from({ length: 8 }, () => submit(sys, synthetic({ steps: 1, stepMs: 0, seed: 7 }), { headers: { 'idempotency-key': k } })),
    );
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 202]);
    const ids = new Set(await Promise.all(responses.map(async (r) => (await body(r)).id)));
    expect(ids.size).toBe(1);
    expect(await totalJobs(sys)).toBe(before + 1);
  });

  it('does not let an answered error take the key', async () => {
    const k = key();
    const bad = await submit(sys, synthetic({ steps: 0 }), { headers: { 'idempotency-key': k } });
    expect(bad.status).toBe(400);
    const good = await submit(sys, synthetic({ steps: 2 }), { headers: { 'idempotency-key': k } });
    expect(good.status).toBe(202);
    expect((await submit(sys, synthetic({}), { headers: { 'idempotency-key': 'x'.repeat(256) } })).status).toBe(400);
  });
});

describe('station limits', () => {
  it('refuses a station over its pending limit with 429 rate_limited and Retry-After, others unaffected', async () => {
    await admin('/v1/admin/pipelines/synthetic/pause');
    try {
      const opts = asStation(LIMITED.key);
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const res = await sys.fetch('/v1/jobs', {
          ...opts,
          method: 'POST',
          body: JSON.stringify(synthetic({})),
          headers: { ...opts.headers, 'content-type': 'application/json' },
        });
        expect(res.status).toBe(202);
        ids.push((await body(res)).id);
      }
      const over = await sys.fetch('/v1/jobs', {
        ...opts,
        method: 'POST',
        body: JSON.stringify(synthetic({})),
        headers: { ...opts.headers, 'content-type': 'application/json' },
      });
      expect(over.status).toBe(429);
      expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(((await over.json()) as { code: string }).code).toBe('rate_limited');
      const queue = (await (await sys.fetch('/v1/queue', opts)).json()) as {
        limits: { station: { name: string; maxPending: number; pending: number } };
      };
      expect(queue.limits.station).toMatchObject({ name: 'limited', maxPending: 2, pending: 2 });
      expect((await submit(sys, synthetic({}))).status).toBe(202); // alpha is not limited
      // A slot frees when one of its jobs ends.
      expect((await sys.fetch(`/v1/jobs/${ids[0]}`, { ...opts, method: 'DELETE' })).status).toBe(200);
      const after = await sys.fetch('/v1/jobs', {
        ...opts,
        method: 'POST',
        body: JSON.stringify(synthetic({})),
        headers: { ...opts.headers, 'content-type': 'application/json' },
      });
      expect(after.status).toBe(202);
    } finally {
      await admin('/v1/admin/pipelines/synthetic/resume');
    }
  });

  it('limits a station’s requests per minute', async () => {
    const opts = asStation(CHATTY.key);
    const codes: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 5; i++) {
      const res = await sys.fetch('/v1/jobs?ids=synthetic_zzzzzzzzzzzzzzzzzzzzzzzz', opts);
      codes.push(res.status);
      if (res.status === 429) refused = res;
    }
    expect(codes).toEqual([200, 200, 200, 429, 429]);
    expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await refused!.json()) as { code: string }).code).toBe('rate_limited');
  });
});

describe('pause and resume', () => {
  it('holds a pipeline’s jobs while paused, visible in /v1/queue, and needs the admin credential', async () => {
    expect((await fetch(`${sys.url}/v1/admin/pipelines/synthetic/pause`, { method: 'POST' })).status).toBe(401);
    const asStationRes = await sys.fetch('/v1/admin/pipelines/synthetic/pause', { method: 'POST' });
    expect(asStationRes.status).toBe(403);
    expect((await admin('/v1/admin/pipelines/teleport/pause')).status).toBe(404);

    for (let i = 0; i < 2; i++) {
      const res = await admin('/v1/admin/pipelines/synthetic/pause');
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ name: 'synthetic', paused: true });
    }
    const { id } = await body(await submit(sys, synthetic({ steps: 1, stepMs: 0 })));
    await new Promise((r) => setTimeout(r, 800));
    expect((await status(id)).status).toBe('queued');
    const queue = (await (await sys.fetch('/v1/queue')).json()) as { pipelines: { name: string; paused: boolean }[] };
    expect(queue.pipelines.find((p) => p.name === 'synthetic')!.paused).toBe(true);
    expect(queue.pipelines.find((p) => p.name === 'edit')!.paused).toBe(false);
    const board = (await (await admin('/admin/queues/api/queues', 'GET')).json()) as { queues: { name: string; isPaused: boolean }[] };
    expect(board.queues.find((q) => q.name === 'synthetic')!.isPaused).toBe(true);
    expect(board.queues.find((q) => q.name === 'edit')!.isPaused).toBe(false);

    const resumed = await admin('/v1/admin/pipelines/synthetic/resume');
    expect(await resumed.json()).toMatchObject({ name: 'synthetic', paused: false });
    expect((await waitForFinal(sys, id)).status).toBe('completed');
  });
});

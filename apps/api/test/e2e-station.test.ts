import type { JobStatusBody, QueueBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, fixture, type System, startSystem, waitFor } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, waitForFinal } from './helpers.ts';

let sys: System;
beforeAll(async () => {
  sys = await startSystem();
});
afterAll(async () => {
  await sys?.stop();
});

describe('a station submits, polls and downloads', () => {
  it('turns a PNG into a resized WebP through the queue and a worker process', async () => {
    const res = await submit(
      sys,
      multipart(
        {
          pipeline: 'edit',
          params: JSON.stringify({
            operations: [
              { op: 'resize', width: 128 },
              { op: 'format', type: 'webp', quality: 80 },
            ],
          }),
        },
        { data: fixture('with-alpha.png'), filename: 'photo.png', type: 'image/png' },
      ),
    );
    expect(res.status).toBe(202);
    const body = (await res.json()) as JobStatusBody;
    expect(res.headers.get('location')).toBe(`/v1/jobs/${body.id}`);
    expect(body).toMatchObject({ status: 'queued', pipeline: 'edit', priority: 'normal', attempts: 0 });
    expect(body.position).toBeGreaterThanOrEqual(1);
    expect(body.links).toEqual({ self: `/v1/jobs/${body.id}`, result: `/v1/jobs/${body.id}/result`, events: `/v1/jobs/${body.id}/events` });
    expect(Date.parse(body.createdAt)).not.toBeNaN();

    const final = await waitForFinal(sys, body.id);
    expect(final.status).toBe('completed');
    expect(final.attempts).toBe(1);
    expect(final.durationMs).toBeGreaterThanOrEqual(0);
    expect(final.result).toMatchObject({ url: `/v1/jobs/${body.id}/result`, contentType: 'image/webp', width: 128, height: 96 });

    const img = await sys.fetch(`/v1/jobs/${body.id}/result`);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/webp');
    expect(img.headers.get('cache-control')).toBe('private, immutable');
    expect(img.headers.get('etag')).toBe(`"${final.result!.sha256}"`);
    const bytes = Buffer.from(await img.arrayBuffer());
    expect(bytes.length).toBe(final.result!.bytes);
    const meta = await sharp(bytes).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 128, 96]);

    const again = await sys.fetch(`/v1/jobs/${body.id}/result`, { headers: { 'if-none-match': `"${final.result!.sha256}"` } });
    expect(again.status).toBe(304);
  });

  it('accepts JSON with imageBase64 and turns EXIF-rotated photos upright', async () => {
    const res = await submit(sys, {
      pipeline: 'edit',
      params: { operations: [{ op: 'resize', width: 300 }] },
      imageBase64: fixture('Landscape_6.jpg').toString('base64'),
      priority: 'high',
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobStatusBody;
    const final = await waitForFinal(sys, id);
    expect(final).toMatchObject({ status: 'completed', priority: 'high' });
    const out = Buffer.from(await (await sys.fetch(`/v1/jobs/${id}/result`)).arrayBuffer());
    const meta = await sharp(out).metadata();
    // Stored 450×600 with orientation 6: upright it is the 600×450 landscape, scaled to 300×225.
    expect([meta.format, meta.width, meta.height, meta.exif]).toEqual(['jpeg', 300, 225, undefined]);
  });

  it('answers ?wait with the final body once the job is done', async () => {
    const res = await submit(
      sys,
      { pipeline: 'synthetic', params: { steps: 3, stepMs: 20, width: 64, height: 32 } },
      { query: '?wait=20' },
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as JobStatusBody;
    expect(body.status).toBe('completed');
    expect(body.result).toMatchObject({ contentType: 'image/png', width: 64, height: 32 });
  });

  it('shows progress while a job is active', async () => {
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 20, stepMs: 100 } });
    const { id } = (await res.json()) as JobStatusBody;
    let seen: JobStatusBody | undefined;
    for (let i = 0; i < 100 && !seen; i++) {
      const b = (await (await sys.fetch(`/v1/jobs/${id}`)).json()) as JobStatusBody;
      if (b.status === 'active' && b.progress && b.progress.percent > 0) seen = b;
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(seen?.progress?.message).toMatch(/^step \d+\/20$/);
    expect(seen?.startedAt).toBeDefined();
    expect(seen?.position).toBeUndefined();
    const pending = await sys.fetch(`/v1/jobs/${id}/result`);
    expect(pending.status).toBe(409);
    expect(((await pending.json()) as { code: string }).code).toBe('not_ready');
    await waitForFinal(sys, id);
  });

  it('counts a running job among its worker’s active jobs in /v1/queue', async () => {
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 200, stepMs: 100 } });
    const { id } = (await res.json()) as JobStatusBody;
    const busy = await waitFor(
      async () => {
        const q = (await (await sys.fetch('/v1/queue')).json()) as QueueBody;
        return q.pipelines.flatMap((p) => p.workers).find((w) => w.activeJobs > 0);
      },
      { timeoutMs: 15_000, intervalMs: 200, what: 'a worker with an active job' },
    );
    expect(busy.activeJobs).toBe(1);
    expect((await sys.fetch(`/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(202);
    expect((await waitForFinal(sys, id)).status).toBe('cancelled');
  });

  it('lists several jobs at once and leaves out unknown ids', async () => {
    const a = (await (await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } })).json()) as JobStatusBody;
    const b = (await (await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } })).json()) as JobStatusBody;
    const res = await sys.fetch(`/v1/jobs?ids=${a.id},${b.id},synthetic_00000000000000000000000000,nonsense`);
    expect(res.status).toBe(200);
    const { jobs } = (await res.json()) as { jobs: JobStatusBody[] };
    expect(jobs.map((j) => j.id).sort()).toEqual([a.id, b.id].sort());
    const many = Array.from({ length: 101 }, (_, i) => `edit_${String(i).padStart(24, '0')}`).join(',');
    expect((await sys.fetch(`/v1/jobs?ids=${many}`)).status).toBe(400);
  });
});

describe('station isolation and credentials', () => {
  it('answers another station’s job exactly like an unknown one', async () => {
    const { id } = (await (await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } })).json()) as JobStatusBody;
    await waitForFinal(sys, id);
    for (const path of [`/v1/jobs/${id}`, `/v1/jobs/${id}/result`]) {
      const theirs = await sys.fetch(path, { station: 'beta' });
      const unknown = await sys.fetch(path.replace(id, 'synthetic_zzzzzzzzzzzzzzzzzzzzzzzz'), { station: 'beta' });
      expect(theirs.status).toBe(404);
      expect(await theirs.json()).toEqual(await unknown.json());
    }
    const list = (await (await sys.fetch(`/v1/jobs?ids=${id}`, { station: 'beta' })).json()) as { jobs: unknown[] };
    expect(list.jobs).toEqual([]);
    // X-API-Key works as well as Bearer.
    const own = await sys.fetch(`/v1/jobs/${id}`, { station: null, headers: { 'x-api-key': 'alpha-key-0123456789abcdef' } });
    expect(own.status).toBe(200);
  });

  it('answers 401 with WWW-Authenticate: Bearer without a valid key', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-key' }, { 'x-api-key': 'nope' }];
    for (const headers of attempts) {
      const res = await sys.fetch('/v1/pipelines', { station: null, headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await res.json()).toMatchObject({ status: 401, code: 'unauthorized' });
    }
  });

  it('keeps the dashboard behind the admin credential', async () => {
    const none = await fetch(`${sys.url}/admin/queues`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm="darkroom-admin"/);
    const station = await sys.fetch('/admin/queues');
    expect(station.status).toBe(403);
    const basic = await fetch(`${sys.url}/admin/queues`, {
      headers: { authorization: `Basic ${Buffer.from(`ops:${ADMIN_TOKEN}`).toString('base64')}` },
    });
    expect(basic.status).toBe(200);
    expect(await basic.text()).toMatch(/<html/i);
    const api = await fetch(`${sys.url}/admin/queues/api/queues?activeQueue=edit&status=completed&page=1`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(api.status).toBe(200);
    const board = (await api.json()) as { queues: { name: string; jobs: { data: { input?: { key: string; sha256: string } } }[] }[] };
    expect(board.queues.map((q) => q.name).sort()).toEqual(['comfyui', 'edit', 'onnx', 'synthetic', 'upscale']);
    const edit = board.queues.find((q) => q.name === 'edit')!;
    expect(edit.jobs.length).toBeGreaterThan(0);
    for (const j of edit.jobs) {
      expect(j.data.input?.key).toBe('[redacted]');
      expect(j.data.input?.sha256).toMatch(/^[0-9a-f]{64}$/);
    }
    expect((await fetch(`${sys.url}/v1/admin/pipelines/edit/pause`, { method: 'POST' })).status).toBe(401);
  });

  it('serves health, readiness, pipelines and the queue', async () => {
    expect((await fetch(`${sys.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${sys.url}/readyz`)).status).toBe(200);
    const { pipelines } = (await (await sys.fetch('/v1/pipelines')).json()) as {
      pipelines: { name: string; acceptsImage: boolean; params: { properties: Record<string, unknown> } }[];
    };
    expect(pipelines.map((p) => [p.name, p.acceptsImage])).toEqual([
      ['edit', true],
      ['synthetic', false],
      ['upscale', true],
      ['comfyui', true],
      ['onnx', true],
    ]);
    expect(Object.keys(pipelines[0]!.params.properties)).toEqual(['operations']);
    expect(Object.keys(pipelines[1]!.params.properties)).toEqual(['steps', 'stepMs', 'width', 'height', 'seed', 'model', 'loadMs']);
    const queue = (await (await sys.fetch('/v1/queue')).json()) as {
      pipelines: { name: string; workers: { name: string }[]; completed: number; avgProcessingMs: number | null }[];
      limits: { maxUploadBytes: number; station: { name: string; maxPriority: string } };
    };
    const edit = queue.pipelines.find((p) => p.name === 'edit')!;
    expect(edit.workers.map((w) => w.name)).toEqual(['w1']);
    expect(edit.completed).toBeGreaterThan(0);
    expect(edit.avgProcessingMs).not.toBeNull();
    expect(queue.limits).toMatchObject({
      maxUploadBytes: 20 * 1024 * 1024,
      maxImageEdge: 8192,
      maxImagePixels: 50_000_000,
      maxQueueSize: 1000,
    });
    expect(queue.limits.station).toMatchObject({ name: 'alpha', maxPriority: 'critical' });
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody, Problem } from '@darkroom/contracts';
import { ADMIN_TOKEN, listFiles, type System, startSystem, waitFor } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebhookReceiver, submit, type WebhookDelivery, waitForFinal } from './helpers.ts';

/*
 * POST /v1/jobs/{id}/retry, end to end (api, Redis, and later a worker): a failed or cancelled
 * job is queued again as it was first submitted, linked both ways, through a submit's checks.
 * No worker at first, so jobs wait (and those with a short time-to-live expire: failed).
 */

const GAMMA_KEY = 'gamma-key-0123456789abcdef';
let sys: System;
let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;
let deliveries: WebhookDelivery[] = [];
let stationsFile: string;
let image: Buffer;

beforeAll(async () => {
  // A third station with a pending limit of 2, beside alpha and beta.
  stationsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-')), 'stations.json');
  fs.writeFileSync(stationsFile, JSON.stringify([{ name: 'gamma', key: GAMMA_KEY, maxPending: 2 }]));
  receiver = await startWebhookReceiver();
  deliveries = receiver.deliveries;
  sys = await startSystem({
    workers: 0,
    env: {
      DARKROOM_MAINTENANCE_INTERVAL_MS: '200',
      DARKROOM_STATIONS_FILE: stationsFile,
      DARKROOM_WEBHOOK_SECRET: 'retry-webhook-secret-0123456789',
      DARKROOM_WEBHOOK_ALLOW_PRIVATE: 'true',
    },
  });
  image = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#336699' } })
    .composite([{ input: { create: { width: 16, height: 16, channels: 3, background: '#ff8800' } }, left: 5, top: 9 }])
    .png()
    .toBuffer();
});
afterAll(async () => {
  await sys?.stop();
  await receiver?.close();
  fs.rmSync(path.dirname(stationsFile), { recursive: true, force: true });
});

type Who = 'alpha' | 'beta' | 'gamma' | 'admin';
const init = (who: Who): Parameters<System['fetch']>[1] =>
  who === 'alpha' || who === 'beta'
    ? { station: who }
    : { station: null, headers: { authorization: `Bearer ${who === 'gamma' ? GAMMA_KEY : ADMIN_TOKEN}` } };

const edit = (width: number, height: number, extra: object = {}) => ({
  pipeline: 'edit',
  params: {
    operations: [
      { op: 'resize', width, height, fit: 'fill' },
      { op: 'format', type: 'webp' },
    ],
  },
  imageBase64: image.toString('base64'),
  ...extra,
});
const synthetic = (width: number, height: number, extra: object = {}) => ({
  pipeline: 'synthetic',
  params: { steps: 1, stepMs: 1, width, height, seed: 7 },
  ...extra,
});

async function queue(body: object, who: Who = 'alpha'): Promise<JobStatusBody> {
  const res =
    who === 'gamma'
      ? await sys.fetch('/v1/jobs', {
          ...init('gamma'),
          method: 'POST',
          body: JSON.stringify(body),
          headers: { ...init('gamma')!.headers, 'content-type': 'application/json' },
        })
      : await submit(sys, body, { station: who as 'alpha' | 'beta' });
  expect(res.status, await res.clone().text()).toBe(202);
  return (await res.json()) as JobStatusBody;
}

const retry = (id: string, who: Who = 'alpha') => sys.fetch(`/v1/jobs/${id}/retry`, { ...init(who), method: 'POST' });
const get = async (id: string, who: Who = 'alpha') => (await (await sys.fetch(`/v1/jobs/${id}`, init(who))).json()) as JobStatusBody;
const cancel = async (id: string, who: Who = 'alpha') => {
  const res = await sys.fetch(`/v1/jobs/${id}`, { ...init(who), method: 'DELETE' });
  expect([200, 202]).toContain(res.status);
};
const until = (id: string, status: string, who: Who = 'alpha') =>
  waitFor(async () => (await get(id, who)).status === status, { what: `job ${id} ${status}`, timeoutMs: 20_000 });
const listed = async (who: Who) =>
  (
    (await (await sys.fetch(`/v1/jobs?limit=100${who === 'admin' ? '&station=alpha' : ''}`, init(who))).json()) as { jobs: JobStatusBody[] }
  ).jobs.map((j) => j.id);

async function expectConflict(res: Response, detail: RegExp): Promise<void> {
  expect(res.status).toBe(409);
  expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
  const p = (await res.json()) as Problem;
  expect(p.code).toBe('conflict');
  expect(p.detail).toMatch(detail);
}

async function resultOf(id: string): Promise<{ width: number; height: number; format: string; bytes: Buffer }> {
  const res = await sys.fetch(`/v1/jobs/${id}/result`);
  expect(res.status).toBe(200);
  const bytes = Buffer.from(await res.arrayBuffer());
  const meta = await sharp(bytes).metadata();
  return { width: meta.width!, height: meta.height!, format: meta.format!, bytes };
}

let failedEdit: JobStatusBody;
let failedSynthetic: JobStatusBody;
let cancelledEdit: JobStatusBody;

describe('POST /v1/jobs/{id}/retry', () => {
  it('refuses a queued job, another station, the admin and unknown ids, and leaves nothing behind', async () => {
    failedEdit = await queue(edit(32, 24, { ttlSeconds: 2, priority: 'high' }));
    failedSynthetic = await queue(synthetic(40, 30, { ttlSeconds: 2 }));
    cancelledEdit = await queue(edit(20, 10));
    await cancel(cancelledEdit.id);
    const waiting = await queue(synthetic(8, 8));
    const before = await listed('alpha');
    const inputs = listFiles(path.join(sys.dataDir, 'inputs'));

    await expectConflict(await retry(waiting.id), /queued; only a failed or cancelled job can be retried/);
    await until(failedEdit.id, 'failed');
    await until(failedSynthetic.id, 'failed');
    expect(await get(failedEdit.id)).toMatchObject({ status: 'failed', error: { code: 'expired' } });

    const other = await retry(failedEdit.id, 'beta');
    expect(other.status).toBe(404);
    expect(((await other.json()) as Problem).code).toBe('not_found');
    expect((await retry('edit_00000000000000000000')).status).toBe(404);
    expect((await retry('nonsense')).status).toBe(404);
    // Only a station retries (the new job is its own), as only a station submits.
    expect((await retry(failedEdit.id, 'admin')).status).toBe(401);
    expect((await sys.fetch(`/v1/jobs/${failedEdit.id}/retry`, { method: 'POST', station: null })).status).toBe(401);

    expect(await listed('alpha')).toEqual(before);
    expect(listFiles(path.join(sys.dataDir, 'inputs'))).toEqual(inputs);
    expect((await get(failedEdit.id)).retriedBy).toBeUndefined();
    await cancel(waiting.id);
  });

  it('goes through the pending limit: refused at it (429), leaving no job, file or link; accepted once there is room', async () => {
    const old = await queue(edit(16, 16, { ttlSeconds: 1 }), 'gamma');
    await until(old.id, 'failed', 'gamma');
    const holding = [await queue(synthetic(8, 8), 'gamma'), await queue(synthetic(8, 8), 'gamma')];
    const jobs = await listed('gamma');
    const inputs = listFiles(path.join(sys.dataDir, 'inputs'));

    const refused = await retry(old.id, 'gamma');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(((await refused.json()) as Problem).code).toBe('rate_limited');
    expect(await listed('gamma')).toEqual(jobs);
    expect(listFiles(path.join(sys.dataDir, 'inputs'))).toEqual(inputs);
    expect((await get(old.id, 'gamma')).retriedBy).toBeUndefined();

    // Room again: the same retry is accepted (the refused one held no link).
    await cancel(holding[0]!.id, 'gamma');
    const accepted = await retry(old.id, 'gamma');
    expect(accepted.status).toBe(202);
    const body = (await accepted.json()) as JobStatusBody;
    expect(body).toMatchObject({ status: 'queued', pipeline: 'edit', retryOf: old.id });
    expect((await get(old.id, 'gamma')).retriedBy).toBe(body.id);
    expect(listFiles(path.join(sys.dataDir, 'inputs'))).toEqual([...inputs, body.id].sort());
    await cancel(body.id, 'gamma');
    await cancel(holding[1]!.id, 'gamma');
  });

  it('queues a failed job again with the same request and input: it completes, linked both ways', async () => {
    await sys.addWorker();
    const res = await retry(failedEdit.id);
    expect(res.status).toBe(202);
    const body = (await res.json()) as JobStatusBody;
    expect(res.headers.get('location')).toBe(`/v1/jobs/${body.id}`);
    expect(body.id).not.toBe(failedEdit.id);
    expect(body).toMatchObject({ pipeline: 'edit', priority: 'high', retryOf: failedEdit.id, links: { self: `/v1/jobs/${body.id}` } });
    expect(['queued', 'active']).toContain(body.status);
    expect((await get(failedEdit.id)).retriedBy).toBe(body.id);
    expect((await get(failedEdit.id)).status).toBe('failed');

    const final = await waitForFinal(sys, body.id);
    expect(final).toMatchObject({
      status: 'completed',
      retryOf: failedEdit.id,
      result: { width: 32, height: 24, contentType: 'image/webp' },
    });
    expect(final.retriedBy).toBeUndefined();
    const out = await resultOf(body.id);
    expect(out).toMatchObject({ width: 32, height: 24, format: 'webp' });
    // The same request submitted afresh gives the very same image: same input, same params.
    const fresh = await waitForFinal(sys, (await queue(edit(32, 24))).id);
    expect(fresh.result!.sha256).toBe(final.result!.sha256);

    // Once only; and a completed job is not retried.
    await expectConflict(await retry(failedEdit.id), new RegExp(`already retried as ${body.id}`));
    await expectConflict(await retry(body.id), /completed; only a failed or cancelled job can be retried/);
    expect((await get(failedEdit.id)).retriedBy).toBe(body.id);

    const syn = (await (await retry(failedSynthetic.id)).json()) as JobStatusBody;
    expect(syn.retryOf).toBe(failedSynthetic.id);
    expect(await waitForFinal(sys, syn.id)).toMatchObject({ status: 'completed', result: { width: 40, height: 30 } });
    expect(await resultOf(syn.id)).toMatchObject({ width: 40, height: 30, format: 'png' });
  });

  it('queues a cancelled job again; an active job is refused until it ends', async () => {
    const again = (await (await retry(cancelledEdit.id)).json()) as JobStatusBody;
    expect(again.retryOf).toBe(cancelledEdit.id);
    expect(await waitForFinal(sys, again.id)).toMatchObject({ status: 'completed', result: { width: 20, height: 10 } });
    expect(await resultOf(again.id)).toMatchObject({ width: 20, height: 10, format: 'webp' });
    expect((await get(cancelledEdit.id)).retriedBy).toBe(again.id);

    const long = await queue(synthetic(24, 12, { params: { steps: 40, stepMs: 100, width: 24, height: 12 } }));
    await until(long.id, 'active');
    await expectConflict(await retry(long.id), /active; only a failed or cancelled job can be retried/);
    await cancel(long.id);
    await until(long.id, 'cancelled');
    const res = await retry(long.id);
    expect(res.status).toBe(202);
    const retried = (await res.json()) as JobStatusBody;
    await until(retried.id, 'active');
    await cancel(retried.id);
    // A retry of a retry: the chain goes on, one link each.
    await until(retried.id, 'cancelled');
    const third = (await (await retry(retried.id)).json()) as JobStatusBody;
    expect(third.retryOf).toBe(retried.id);
    expect(await get(retried.id)).toMatchObject({ retryOf: long.id, retriedBy: third.id });
    await cancel(third.id);
  });

  it('lets one of two concurrent retries of a job win; the other answers 409 naming it', async () => {
    const job = await queue(synthetic(8, 8, { params: { steps: 50, stepMs: 100, width: 8, height: 8 } }));
    await cancel(job.id);
    await until(job.id, 'cancelled');
    const before = await listed('alpha');
    const answers = await Promise.all([retry(job.id), retry(job.id), retry(job.id)]);
    const won = answers.filter((r) => r.status === 202);
    expect(won).toHaveLength(1);
    const winner = (await won[0]!.json()) as JobStatusBody;
    for (const r of answers.filter((a) => a.status !== 202)) await expectConflict(r, new RegExp(`already retried as ${winner.id}`));
    expect((await get(job.id)).retriedBy).toBe(winner.id);
    // Exactly one new job.
    expect((await listed('alpha')).filter((id) => !before.includes(id))).toEqual([winner.id]);
    await cancel(winner.id);
  });

  it('keeps the webhook, its events and the execution limit', async () => {
    const url = receiver.url;
    // Runs past its own 1 s limit: failed as timeout, and so does its retry.
    const slow = await queue(
      synthetic(8, 8, { params: { steps: 40, stepMs: 100 }, timeoutSeconds: 1, webhookUrl: url, webhookEvents: ['failed'] }),
    );
    const first = await waitForFinal(sys, slow.id);
    expect(first).toMatchObject({ status: 'failed', error: { code: 'timeout' } });
    const again = (await (await retry(slow.id)).json()) as JobStatusBody;
    expect(await waitForFinal(sys, again.id)).toMatchObject({ status: 'failed', error: { code: 'timeout' }, retryOf: slow.id });
    await waitFor(() => [slow.id, again.id].every((id) => deliveries.some((d) => d.body.id === id)), { what: 'both jobs’ webhooks' });
    expect(deliveries.find((d) => d.body.id === again.id)).toMatchObject({
      event: 'job.failed',
      body: { status: 'failed', retryOf: slow.id },
    });
    expect(deliveries.filter((d) => d.body.id === slow.id).map((d) => d.event)).toEqual(['job.failed']);
    // Only the events asked for: no `started`, no other final event.
    expect(deliveries.filter((d) => d.body.id === again.id).map((d) => d.event)).toEqual(['job.failed']);
  });
});

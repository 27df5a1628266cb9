import type { JobStatusBody, QueueBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebhookReceiver, submit, type WebhookDelivery } from './helpers.ts';

/*
 * An operator's purge of a pipeline, end to end (api and Redis, no worker, so every job waits):
 * each queued job ends cancelled as a station's cancel would end it, visible to its own
 * station, counted out of its pending jobs, with its webhook delivered.
 */

const SECRET = 'purge-webhook-secret-0123456789';
let sys: System;
let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;
let deliveries: WebhookDelivery[] = [];

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  deliveries = receiver.deliveries;
  sys = await startSystem({ workers: 0, env: { DARKROOM_WEBHOOK_SECRET: SECRET, DARKROOM_WEBHOOK_ALLOW_PRIVATE: 'true' } });
});
afterAll(async () => {
  await sys?.stop();
  await receiver?.close();
});

const admin = { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;
const job = { pipeline: 'synthetic', params: { steps: 1, stepMs: 1 } };

async function queue(station: 'alpha' | 'beta', extra: object = {}): Promise<JobStatusBody> {
  const res = await submit(sys, { ...job, ...extra }, { station });
  expect(res.status).toBe(202);
  return (await res.json()) as JobStatusBody;
}

const purge = (name: string, init: RequestInit & { station?: 'alpha' | null } = admin) =>
  sys.fetch(`/v1/admin/pipelines/${name}/purge`, { ...init, method: 'POST' });

describe('POST /v1/admin/pipelines/{name}/purge', () => {
  it('cancels every queued job of the pipeline, each seen cancelled by its station, with its webhook', async () => {
    const url = receiver.url;
    const alpha = [await queue('alpha', { webhookUrl: url }), await queue('alpha'), await queue('alpha', { priority: 'high' })];
    const beta = [await queue('beta'), await queue('beta')];
    const other = await submit(sys, { pipeline: 'edit', params: { operations: [] }, imageBase64: await tinyPng() }, { station: 'alpha' });
    expect(other.status).toBe(202);

    const res = await purge('synthetic');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ pipeline: 'synthetic', cancelled: 5 });

    for (const [station, jobs] of [
      ['alpha', alpha],
      ['beta', beta],
    ] as const) {
      for (const j of jobs) {
        const s = (await (await sys.fetch(`/v1/jobs/${j.id}`, { station })).json()) as JobStatusBody;
        expect(s.status).toBe('cancelled');
      }
    }
    await waitFor(() => deliveries.some((d) => d.body.id === alpha[0]!.id), { what: 'the webhook' });
    expect(deliveries.find((d) => d.body.id === alpha[0]!.id)).toMatchObject({ event: 'job.cancelled', body: { status: 'cancelled' } });
    // Nothing left waiting, and the stations' pending counts are free again; the other pipeline's job stands.
    const body = (await (await sys.fetch('/v1/queue', { station: 'beta' })).json()) as QueueBody;
    expect(body.pipelines.find((p) => p.name === 'synthetic')!.waiting.total).toBe(0);
    expect(body.pipelines.find((p) => p.name === 'edit')!.waiting.total).toBe(1);
    expect(body.limits.station!.pending).toBe(0);
    expect(await (await purge('synthetic')).json()).toEqual({ pipeline: 'synthetic', cancelled: 0 });
  });

  it('needs the admin credential, and names an unknown pipeline', async () => {
    expect((await purge('synthetic', { station: 'alpha' })).status).toBe(403);
    const unknown = await purge('nope');
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toMatch(/problem\+json/);
  });
});

async function tinyPng(): Promise<string> {
  const { default: sharp } = await import('sharp');
  return (
    await sharp({ create: { width: 4, height: 4, channels: 3, background: '#336699' } })
      .png()
      .toBuffer()
  ).toString('base64');
}

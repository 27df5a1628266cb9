import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { verifyWebhookSignature, WEBHOOK_SIGNATURE_HEADER } from '@darkroom/client';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, type System, startSystem, waitFor } from '@darkroom/testing';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

const SECRET = 'global-webhook-secret-0123456789';
const OWN = { name: 'signer', key: 'signer-key-0123456789abcdef', webhookSecret: 'signer-own-secret-0123456789' };

interface Delivery {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  status: number;
}

/** A receiver on loopback: answers by path (`/fail-once/…` fails its first try, `/hang` never answers). */
async function startReceiver() {
  const deliveries: Delivery[] = [];
  const seen = new Map<string, number>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const url = req.url ?? '/';
      if (url.startsWith('/hang')) return; // never answers
      const n = (seen.get(url) ?? 0) + 1;
      seen.set(url, n);
      const status = url.startsWith('/fail-once') && n === 1 ? 500 : 204;
      deliveries.push({ path: url, headers: req.headers, body, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    deliveries,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

let sys: System;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let dir: string;

beforeAll(async () => {
  receiver = await startReceiver();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-'));
  const file = path.join(dir, 'stations.json');
  fs.writeFileSync(file, JSON.stringify([OWN]));
  sys = await startSystem({
    env: {
      DARKROOM_WEBHOOK_SECRET: SECRET,
      DARKROOM_WEBHOOK_ALLOW_PRIVATE: 'true',
      DARKROOM_WEBHOOK_BACKOFF_MS: '200',
      DARKROOM_WEBHOOK_TIMEOUT_MS: '2000',
      DARKROOM_JOB_TIMEOUT_SECONDS: '2',
      DARKROOM_STATIONS_FILE: file,
    },
  });
});
afterAll(async () => {
  await sys?.stop();
  await receiver?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const ok = (d: Delivery) => d.status < 300;
const forPath = (p: string) => receiver.deliveries.filter((d) => d.path === p);

describe('webhooks', () => {
  it('POSTs the signed final status once the job completes, retrying a 5xx with the same delivery id', async () => {
    const hook = `${receiver.base}/fail-once/a`;
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 2, stepMs: 10 }, webhookUrl: hook });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobStatusBody;
    const final = await waitForFinal(sys, id);
    await waitFor(() => forPath('/fail-once/a').some(ok), { what: 'a successful delivery' });
    const tries = forPath('/fail-once/a');
    expect(tries.map((d) => d.status)).toEqual([500, 204]);
    expect(tries[0]!.headers['darkroom-delivery']).toBe(tries[1]!.headers['darkroom-delivery']);
    expect(tries[0]!.headers['webhook-id']).toBe(tries[0]!.headers['darkroom-delivery']);
    expect(tries[1]!.headers['webhook-id']).toBe(tries[0]!.headers['darkroom-delivery']);
    const d = tries[1]!;
    expect(d.headers['content-type']).toMatch(/^application\/json/);
    expect(d.headers['darkroom-event']).toBe('job.completed');
    expect(verifyWebhookSignature(SECRET, String(d.headers[WEBHOOK_SIGNATURE_HEADER.toLowerCase()]), d.body)).toBe(true);
    expect(verifyWebhookSignature('another-secret-0123456789', String(d.headers['darkroom-signature']), d.body)).toBe(false);
    // Standard Webhooks: the receiver's secret is whsec_ + base64 of the station secret's bytes.
    const sw = new Webhook(`whsec_${Buffer.from(SECRET).toString('base64')}`);
    expect(sw.verify(d.body, d.headers as Record<string, string>)).toMatchObject({ id, status: 'completed' });
    const sent = JSON.parse(d.body) as JobStatusBody;
    expect(sent).toMatchObject({ id, status: 'completed', result: { sha256: final.result!.sha256 } });
  });

  it('announces failures and cancellations, signed with the station’s own secret where it has one', async () => {
    const failing = (await (
      await submit(sys, { pipeline: 'synthetic', params: { steps: 100, stepMs: 100 }, webhookUrl: `${receiver.base}/failed` })
    ).json()) as JobStatusBody;
    await sys.fetch(`/v1/admin/pipelines/synthetic/pause`, {
      method: 'POST',
      station: null,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const own = await sys.fetch('/v1/jobs', {
      method: 'POST',
      station: null,
      headers: { authorization: `Bearer ${OWN.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ pipeline: 'synthetic', webhookUrl: `${receiver.base}/cancelled` }),
    });
    const queued = (await own.json()) as JobStatusBody;
    const cancel = await sys.fetch(`/v1/jobs/${queued.id}`, {
      method: 'DELETE',
      station: null,
      headers: { authorization: `Bearer ${OWN.key}` },
    });
    expect(cancel.status).toBe(200);
    await sys.fetch(`/v1/admin/pipelines/synthetic/resume`, {
      method: 'POST',
      station: null,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });

    await waitFor(() => forPath('/cancelled').length > 0, { what: 'the cancel webhook' });
    const c = forPath('/cancelled')[0]!;
    expect(c.headers['darkroom-event']).toBe('job.cancelled');
    expect(verifyWebhookSignature(OWN.webhookSecret, String(c.headers['darkroom-signature']), c.body)).toBe(true);
    const own64 = `whsec_${Buffer.from(OWN.webhookSecret).toString('base64')}`;
    expect(new Webhook(own64).verify(c.body, c.headers as Record<string, string>)).toMatchObject({ id: queued.id });
    expect(JSON.parse(c.body)).toMatchObject({ id: queued.id, status: 'cancelled' });

    expect((await waitForFinal(sys, failing.id)).error?.code).toBe('timeout');
    await waitFor(() => forPath('/failed').length > 0, { what: 'the failure webhook' });
    const f = forPath('/failed')[0]!;
    expect(f.headers['darkroom-event']).toBe('job.failed');
    expect(JSON.parse(f.body)).toMatchObject({ id: failing.id, status: 'failed', error: { code: 'timeout' } });
  });

  it('never delays the job: a receiver that never answers does not hold it', async () => {
    const { id } = (await (
      await submit(
        sys,
        { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, webhookUrl: `${receiver.base}/hang` },
        { query: '?wait=10' },
      )
    ).json()) as JobStatusBody;
    expect((await waitForFinal(sys, id)).status).toBe('completed');
  });
});

describe('webhook targets', () => {
  it('refuses loopback and private targets at submit unless the operator allows them', async () => {
    const strict = await startSystem({ workers: 0, env: { DARKROOM_WEBHOOK_SECRET: SECRET } });
    try {
      for (const url of [
        'http://127.0.0.1:9/x',
        'http://localhost/x',
        'http://10.1.2.3/x',
        'http://[::1]/x',
        'http://169.254.169.254/latest',
        'http://192.168.1.1/',
      ]) {
        const res = await submit(strict, { pipeline: 'synthetic', webhookUrl: url });
        expect(res.status, url).toBe(400);
        const problem = (await res.json()) as { errors: { path: string }[] };
        expect(problem.errors.map((e) => e.path)).toEqual(['webhookUrl']);
      }
    } finally {
      await strict.stop();
    }
  });
});

describe('webhook events', () => {
  const standard = new Webhook(`whsec_${Buffer.from(SECRET).toString('base64')}`);
  const submitted = async (body: FormData | object) => {
    const res = await submit(sys, body);
    expect(res.status).toBe(202);
    return ((await res.json()) as JobStatusBody).id;
  };

  it('delivers job.started when a worker takes the job, then job.completed, both verifiable', async () => {
    const hook = `${receiver.base}/events/started`;
    const id = await submitted({
      pipeline: 'synthetic',
      params: { steps: 3, stepMs: 50 },
      webhookUrl: hook,
      webhookEvents: ['started', 'completed'],
    });
    await waitForFinal(sys, id);
    await waitFor(() => forPath('/events/started').length >= 2, { what: 'two deliveries' });
    const byEvent = new Map(forPath('/events/started').map((d) => [d.headers['darkroom-event'], d]));
    expect([...byEvent.keys()].sort()).toEqual(['job.completed', 'job.started']);
    const started = byEvent.get('job.started')!;
    const completed = byEvent.get('job.completed')!;
    expect(standard.verify(started.body, started.headers as Record<string, string>)).toMatchObject({ id, status: 'active' });
    expect(standard.verify(completed.body, completed.headers as Record<string, string>)).toMatchObject({ id, status: 'completed' });
    expect(JSON.parse(started.body).startedAt).toEqual(expect.any(String));
    expect(started.headers['webhook-id']).not.toBe(completed.headers['webhook-id']);
    await new Promise((r) => setTimeout(r, 300));
    expect(forPath('/events/started')).toHaveLength(2); // each once
  });

  it('delivers no final state the job did not ask for', async () => {
    // Multipart, as a comma-separated list: only a failure is wanted, and the job completes.
    const form = new FormData();
    form.set('pipeline', 'synthetic');
    form.set('params', JSON.stringify({ steps: 1, stepMs: 10 }));
    form.set('webhookUrl', `${receiver.base}/events/failed-only`);
    form.set('webhookEvents', 'failed');
    const quiet = await submitted(form);
    expect((await waitForFinal(sys, quiet)).status).toBe('completed');
    // A job queued after it with the default events: once its delivery arrives, the first job's would have too.
    const control = await submitted({
      pipeline: 'synthetic',
      params: { steps: 1, stepMs: 10 },
      webhookUrl: `${receiver.base}/events/control`,
    });
    await waitForFinal(sys, control);
    await waitFor(() => forPath('/events/control').some(ok), { what: 'the control delivery' });
    expect(forPath('/events/control').map((d) => d.headers['darkroom-event'])).toEqual(['job.completed']);
    expect(forPath('/events/failed-only')).toEqual([]);
  });

  it('refuses unknown events, an empty list and events without a webhookUrl, naming the field', async () => {
    const cases: [object, { path: string }[]][] = [
      [{ webhookUrl: `${receiver.base}/x`, webhookEvents: ['completed', 'finished'] }, [{ path: 'webhookEvents.1' }]],
      [{ webhookUrl: `${receiver.base}/x`, webhookEvents: [] }, [{ path: 'webhookEvents' }]],
      [{ webhookUrl: `${receiver.base}/x`, webhookEvents: 'started' }, []],
      [{ webhookEvents: ['started'] }, [{ path: 'webhookEvents' }]],
    ];
    for (const [fields, errors] of cases) {
      const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 1 }, ...fields });
      if (errors.length === 0) {
        expect(res.status, JSON.stringify(fields)).toBe(202);
        continue;
      }
      expect(res.status, JSON.stringify(fields)).toBe(400);
      const body = (await res.json()) as { code: string; errors: { path: string; message: string }[] };
      expect(body.code).toBe('invalid_request');
      expect(body.errors).toEqual(errors.map((e) => expect.objectContaining(e)));
    }
  });
});

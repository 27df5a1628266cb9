import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, STATIONS, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

/* Station isolation on every route, the admin boundary, security headers, and secrets kept out of logs. */

const WEBHOOK_SECRET = 'operator-webhook-secret-0123456789';
const OWN = { name: 'gamma', key: 'gamma-station-key-0123456789', webhookSecret: 'gamma-own-secret-0123456789' };
let sys: System;
let dir: string;
let alphaJob: JobStatusBody;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-'));
  const file = path.join(dir, 'stations.json');
  fs.writeFileSync(file, JSON.stringify([OWN]));
  sys = await startSystem({
    env: {
      DARKROOM_STATIONS_FILE: file,
      DARKROOM_WEBHOOK_SECRET: WEBHOOK_SECRET,
      DARKROOM_WEBHOOK_ALLOW_PRIVATE: 'true',
      DARKROOM_LOG_LEVEL: 'debug',
    },
  });
  const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 }, webhookUrl: 'http://127.0.0.1:9/hook' });
  alphaJob = await waitForFinal(sys, ((await res.json()) as JobStatusBody).id);
});
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('station isolation', () => {
  it('answers another station’s job as 404 on every route, exactly like an unknown id', async () => {
    const unknown = 'synthetic_zzzzzzzzzzzzzzzzzzzzzzzz';
    const routes: [string, string][] = [
      ['GET', '/v1/jobs/{id}'],
      ['GET', '/v1/jobs/{id}/result'],
      ['GET', '/v1/jobs/{id}/events'],
      ['DELETE', '/v1/jobs/{id}'],
    ];
    for (const [method, route] of routes) {
      const theirs = await sys.fetch(route.replace('{id}', alphaJob.id), { method, station: 'beta' });
      const none = await sys.fetch(route.replace('{id}', unknown), { method, station: 'beta' });
      expect([method, route, theirs.status]).toEqual([method, route, 404]);
      expect(await theirs.json()).toEqual(await none.json());
    }
    const list = (await (await sys.fetch(`/v1/jobs?ids=${alphaJob.id}`, { station: 'beta' })).json()) as { jobs: unknown[] };
    expect(list.jobs).toEqual([]);
    // Its owner still sees it, and the admin credential sees every station's jobs.
    expect((await sys.fetch(`/v1/jobs/${alphaJob.id}`)).status).toBe(200);
    expect(
      (await sys.fetch(`/v1/jobs/${alphaJob.id}`, { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status,
    ).toBe(200);
  });
});

describe('admin boundary', () => {
  const adminRoutes: [string, string][] = [
    ['GET', '/admin/queues'],
    ['GET', '/admin/queues/api/queues'],
    ['POST', '/v1/admin/pipelines/edit/pause'],
    ['POST', '/v1/admin/pipelines/edit/resume'],
  ];
  it('refuses every admin route without the admin credential, and a station key with 403', async () => {
    for (const [method, route] of adminRoutes) {
      const none = await fetch(sys.url + route, { method });
      expect([route, none.status]).toEqual([route, 401]);
      expect(none.headers.get('www-authenticate')).toBe(
        route.startsWith('/admin') ? 'Basic realm="darkroom-admin", charset="UTF-8"' : 'Bearer',
      );
      const wrong = await fetch(sys.url + route, {
        method,
        headers: { authorization: `Basic ${Buffer.from('ops:wrong').toString('base64')}` },
      });
      expect([route, wrong.status]).toEqual([route, 401]);
      const station = await sys.fetch(route, { method });
      expect([route, station.status]).toEqual([route, 403]);
      const admin = await fetch(sys.url + route, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect([route, admin.status]).toEqual([route, 200]);
    }
  });
});

describe('headers and limits', () => {
  it('sends security headers', async () => {
    const res = await sys.fetch('/v1/queue');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('x-powered-by')).toBeNull();
  });

  it('refuses oversized headers with a 4xx, never a 5xx', async () => {
    const res = await fetch(`${sys.url}/v1/queue`, {
      headers: { authorization: `Bearer ${STATIONS.alpha.key}`, 'x-filler': 'x'.repeat(64 * 1024) },
    }).catch(() => undefined);
    // Node answers 431 and closes; a client may also see the connection closed. Never a 5xx.
    if (res) expect(res.status).toBe(431);
    expect((await sys.fetch('/healthz')).status).toBe(200);
  });
});

describe('secrets', () => {
  it('never writes keys, tokens or webhook secrets to the logs', async () => {
    // Some traffic with every kind of credential, including wrong ones.
    await sys.fetch('/v1/queue', { station: null, headers: { 'x-api-key': OWN.key } });
    await fetch(`${sys.url}/admin/queues`, { headers: { authorization: `Basic ${Buffer.from(`ops:${ADMIN_TOKEN}`).toString('base64')}` } });
    await fetch(`${sys.url}/v1/queue`, { headers: { authorization: 'Bearer not-a-key-but-secret-looking' } });
    const logs = [sys.api, ...sys.workers].map((p) => p.output()).join('\n');
    expect(logs.length).toBeGreaterThan(1000);
    for (const secret of [
      STATIONS.alpha.key,
      STATIONS.beta.key,
      OWN.key,
      OWN.webhookSecret,
      ADMIN_TOKEN,
      WEBHOOK_SECRET,
      'not-a-key-but-secret-looking',
    ]) {
      expect(logs.includes(secret), `a secret appears in the logs: ${secret.slice(0, 6)}…`).toBe(false);
    }
  });
});

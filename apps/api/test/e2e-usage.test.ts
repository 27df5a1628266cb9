import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody, UsageBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, STATIONS, type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, totalJobs, waitForFinal } from './helpers.ts';

/*
 * GPU time per station: what jobs that ran add to GET /v1/usage and to the worker's counters,
 * who sees which rows, and a station's daily budget.
 */

const GAMMA = { name: 'gamma', key: 'gamma-key-0123456789abcdef' };
let sys: System;
let stationsFile: string;

beforeAll(async () => {
  stationsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-')), 'stations.json');
  // gamma's budget is spent by its first job.
  fs.writeFileSync(stationsFile, JSON.stringify([{ name: GAMMA.name, key: GAMMA.key, gpuSecondsPerDay: 0.05 }]));
  sys = await startSystem({ env: { DARKROOM_STATIONS_FILE: stationsFile } });
});
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(path.dirname(stationsFile), { recursive: true, force: true });
});

const DAY_MS = 86_400_000;
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
// From yesterday: a run that crosses UTC midnight still finds every job.
const range = () => `from=${day(Date.now() - DAY_MS)}&to=${day(Date.now())}`;

async function usage(query: string, as: 'alpha' | 'beta' | 'admin' | 'gamma' = 'alpha'): Promise<Response> {
  const token = as === 'admin' ? ADMIN_TOKEN : as === 'gamma' ? GAMMA.key : STATIONS[as].key;
  return fetch(`${sys.url}/v1/usage${query ? `?${query}` : ''}`, { headers: { authorization: `Bearer ${token}` } });
}
const usageBody = async (query: string, as: 'alpha' | 'beta' | 'admin' | 'gamma' = 'alpha') => {
  const res = await usage(query, as);
  expect(res.status).toBe(200);
  return (await res.json()) as UsageBody;
};

async function runJobs(station: 'alpha' | 'beta', n: number, stepMs: number, steps: number): Promise<JobStatusBody[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps, stepMs, width: 8, height: 8, seed: i } }, { station });
    expect(res.status).toBe(202);
    ids.push(((await res.json()) as JobStatusBody).id);
  }
  return Promise.all(ids.map((id) => waitForFinal(sys, id, station)));
}

function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
async function workerCounter(name: string, station: string): Promise<number> {
  const url = /"metrics":"([^"]+)"/.exec(sys.workers[0]!.output())![1]!;
  const metrics = parseMetrics(await (await fetch(url)).text());
  let sum = 0;
  for (const [k, v] of metrics)
    if (k.startsWith(`${name}{`) && k.includes(`station="${station}"`) && k.includes('pipeline="synthetic"')) sum += v;
  return sum;
}

describe('GET /v1/usage', () => {
  let alphaJobs: JobStatusBody[];

  it('sums the device time of the jobs that ran, per station, pipeline and model', async () => {
    const empty = await usageBody('');
    const today = day(Date.now());
    expect(empty).toEqual({
      from: today,
      to: today,
      days: [],
      totals: { jobs: 0, deviceSeconds: 0, queuedSeconds: 0, modelLoadSeconds: 0 },
    });

    const device0 = await workerCounter('darkroom_device_seconds_total', 'alpha');
    alphaJobs = await runJobs('alpha', 3, 100, 4); // 0.4 s of compute each
    await runJobs('beta', 2, 50, 2);
    expect(alphaJobs.every((j) => j.status === 'completed')).toBe(true);

    // Recorded once BullMQ stored each result: shortly after the jobs are seen final.
    const body = await waitFor(
      async () => {
        const b = await usageBody(range());
        return b.totals.jobs === 3 ? b : undefined;
      },
      { what: 'three jobs in alpha’s usage' },
    );
    expect(body.days.map((r) => [r.station, r.pipeline, r.model])).toEqual(body.days.map(() => ['alpha', 'synthetic', '']));
    const sum = body.days.reduce((n, r) => n + r.jobs, 0);
    expect(sum).toBe(3);
    // At least the pipeline's own compute (3 × 0.4 s), and not more than that plus a generous allowance.
    expect(body.totals.deviceSeconds).toBeGreaterThanOrEqual(1.2);
    expect(body.totals.deviceSeconds).toBeLessThan(1.2 + 3 * 1.0);
    // Device time is within each job's run (start to finish).
    const runs = alphaJobs.reduce((n, j) => n + (j.durationMs ?? 0), 0) / 1000;
    expect(body.totals.deviceSeconds).toBeLessThanOrEqual(runs + 0.01);
    expect(body.totals.queuedSeconds).toBeGreaterThanOrEqual(0);
    expect(body.totals.modelLoadSeconds).toBe(0);
    expect(body.totals.deviceSeconds).toBeCloseTo(
      body.days.reduce((n, r) => n + r.deviceSeconds, 0),
      3,
    );

    // The worker's counter rose by the same device time.
    const device1 = await workerCounter('darkroom_device_seconds_total', 'alpha');
    expect(device1 - device0).toBeCloseTo(body.totals.deviceSeconds, 1);
  });

  it('shows a station only its own rows, and the admin every station’s', async () => {
    const beta = await waitFor(
      async () => {
        const b = await usageBody(range(), 'beta');
        return b.totals.jobs === 2 ? b : undefined;
      },
      { what: 'two jobs in beta’s usage' },
    );
    expect(new Set(beta.days.map((r) => r.station))).toEqual(new Set(['beta']));
    expect(beta.totals.deviceSeconds).toBeGreaterThanOrEqual(2 * 0.1);

    const alpha = await usageBody(range(), 'alpha');
    expect(new Set(alpha.days.map((r) => r.station))).toEqual(new Set(['alpha']));

    const all = await usageBody(range(), 'admin');
    expect(new Set(all.days.map((r) => r.station))).toEqual(new Set(['alpha', 'beta']));
    expect(all.totals.jobs).toBe(alpha.totals.jobs + beta.totals.jobs);
    expect(all.totals.deviceSeconds).toBeCloseTo(alpha.totals.deviceSeconds + beta.totals.deviceSeconds, 2);
  });

  it('counts the queued and model-load time on the worker’s counters too', async () => {
    expect(await workerCounter('darkroom_queued_seconds_total', 'alpha')).toBeGreaterThan(0);
    const text = await (await fetch(/"metrics":"([^"]+)"/.exec(sys.workers[0]!.output())![1]!)).text();
    expect(text).toMatch(/^darkroom_model_load_seconds_total\{[^}]*station="alpha"[^}]*\} 0$/m);
    expect(await workerCounter('darkroom_device_seconds_total', 'beta')).toBeGreaterThan(0.2);
  });

  it.each([
    ['from=2026-13-01', 'from'],
    ['from=2026-02-30', 'from'],
    ['to=yesterday', 'to'],
    ['from=2026-1-01', 'from'],
    ['from=2026-12-02&to=2026-12-01', 'from'],
    ['from=2024-01-01&to=2025-12-31', 'to'],
    ['from=2026-01-01&from=2026-01-02', 'from'],
  ])('answers %s with 400 naming %s', async (query, field) => {
    const res = await usage(query);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = (await res.json()) as { code: string; errors: { path: string }[] };
    expect(problem.code).toBe('invalid_request');
    expect(problem.errors.map((e) => e.path)).toEqual([field]);
  });

  it('takes exactly 366 days, and wants a credential', async () => {
    const res = await usage('from=2024-01-01&to=2024-12-31');
    expect(res.status).toBe(200);
    expect(((await res.json()) as UsageBody).days).toEqual([]);
    const anonymous = await fetch(`${sys.url}/v1/usage`);
    expect(anonymous.status).toBe(401);
  });
});

describe('gpuSecondsPerDay', () => {
  const gammaSubmit = () =>
    fetch(`${sys.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${GAMMA.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ pipeline: 'synthetic', params: { steps: 2, stepMs: 50, width: 8, height: 8 } }),
    });

  it('refuses a station past its day’s GPU seconds with 429 budget_exceeded until UTC midnight; others go on', async () => {
    const first = await gammaSubmit();
    expect(first.status).toBe(202);
    const { id } = (await first.json()) as JobStatusBody;
    const done = await fetch(`${sys.url}/v1/jobs/${id}?wait=30`, { headers: { authorization: `Bearer ${GAMMA.key}` } });
    expect(done.status).toBe(200);
    await waitFor(async () => (await usageBody(range(), 'gamma')).totals.jobs === 1, { what: 'gamma’s job in its usage' });

    const before = await totalJobs(sys);
    const refused = await gammaSubmit();
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = (await refused.json()) as { code: string; detail: string };
    expect(problem.code).toBe('budget_exceeded');
    expect(problem.detail).not.toMatch(/\n\s+at |Redis|ERR /);
    const now = Date.now();
    const toMidnight = Math.ceil((Math.floor(now / DAY_MS + 1) * DAY_MS - now) / 1000);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(Math.abs(retryAfter - toMidnight)).toBeLessThanOrEqual(5);
    expect(await totalJobs(sys)).toBe(before); // nothing was queued for it

    // A station without a budget is not held back.
    const alpha = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
    expect(alpha.status).toBe(202);
  });
});

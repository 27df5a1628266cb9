import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, fixture, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, waitForFinal } from './helpers.ts';

/* Prometheus metrics from the api and from each worker, and that they move when jobs run. */

const TOKEN = 'metrics-token-0123456789';
let sys: System;
beforeAll(async () => {
  sys = await startSystem({ env: { DARKROOM_METRICS_TOKEN: TOKEN, DARKROOM_WORKER_CONCURRENCY: '2' } });
});
afterAll(async () => {
  await sys?.stop();
});

/** Parses the Prometheus text format into `name{labels}` → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
const value = (m: Map<string, number>, key: string) => m.get(key) ?? 0;

async function scrapeApi() {
  const res = await fetch(`${sys.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parse(await res.text());
}
async function scrapeWorker() {
  const url = /"metrics":"([^"]+)"/.exec(sys.workers[0]!.output())![1]!;
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return parse(await res.text());
}

describe('metrics', () => {
  it('needs the metrics token when one is set', async () => {
    const res = await fetch(`${sys.url}/metrics`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect((await fetch(`${sys.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
  });

  it('moves the api’s and the worker’s figures as jobs run', async () => {
    const api0 = await scrapeApi();
    const worker0 = await scrapeWorker();
    expect(value(worker0, 'darkroom_worker_slots{pipeline="synthetic"}')).toBe(2);

    // Queue depth while paused.
    await fetch(`${sys.url}/v1/admin/pipelines/synthetic/pause`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const ids: string[] = [];
    for (const priority of ['high', 'low', 'low']) {
      ids.push(
        ((await (await submit(sys, { pipeline: 'synthetic', priority, params: { steps: 2, stepMs: 20 } })).json()) as JobStatusBody).id,
      );
    }
    const paused = await scrapeApi();
    expect(value(paused, 'darkroom_queue_waiting_jobs{pipeline="synthetic",priority="high"}')).toBe(1);
    expect(value(paused, 'darkroom_queue_waiting_jobs{pipeline="synthetic",priority="low"}')).toBe(2);
    expect(value(paused, 'darkroom_queue_paused{pipeline="synthetic"}')).toBe(1);
    expect(value(paused, 'darkroom_workers_live{pipeline="synthetic"}')).toBe(1);
    await fetch(`${sys.url}/v1/admin/pipelines/synthetic/resume`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    for (const id of ids) await waitForFinal(sys, id);

    // A refused submit, counted by reason.
    expect(
      (await submit(sys, multipart({ pipeline: 'edit', params: '{"operations":[]}' }, { data: fixture('truncated.jpg') }))).status,
    ).toBe(422);

    const api1 = await scrapeApi();
    const sub = (m: Map<string, number>, p: string) => value(m, `darkroom_jobs_submitted_total{pipeline="synthetic",priority="${p}"}`);
    expect(sub(api1, 'low') - sub(api0, 'low')).toBe(2);
    expect(sub(api1, 'high') - sub(api0, 'high')).toBe(1);
    expect(
      value(api1, 'darkroom_jobs_rejected_total{reason="invalid_image"}') -
        value(api0, 'darkroom_jobs_rejected_total{reason="invalid_image"}'),
    ).toBe(1);
    expect(value(api1, 'darkroom_http_request_duration_seconds_count{method="POST",route="/v1/jobs",status="202"}')).toBeGreaterThanOrEqual(
      3,
    );
    expect(
      value(api1, 'darkroom_http_request_duration_seconds_count{method="GET",route="/v1/jobs/:id/events",status="200"}'),
    ).toBeGreaterThan(0);
    expect(value(api1, 'darkroom_queue_waiting_jobs{pipeline="synthetic",priority="low"}')).toBe(0);
    expect([...api1.keys()].some((k) => k.includes('synthetic_'))).toBe(false); // no job ids in labels

    const worker1 = await scrapeWorker();
    const done = (m: Map<string, number>) => value(m, 'darkroom_jobs_finished_total{pipeline="synthetic",outcome="completed"}');
    expect(done(worker1) - done(worker0)).toBe(3);
    const runs = (m: Map<string, number>) => value(m, 'darkroom_job_run_seconds_count{pipeline="synthetic",outcome="completed"}');
    expect(runs(worker1) - runs(worker0)).toBe(3);
    expect(
      value(worker1, 'darkroom_job_queue_wait_seconds_count{pipeline="synthetic"}') -
        value(worker0, 'darkroom_job_queue_wait_seconds_count{pipeline="synthetic"}'),
    ).toBe(3);
    expect(value(worker1, 'darkroom_worker_busy_slots{pipeline="synthetic"}')).toBe(0);
    expect(value(worker1, 'darkroom_process_cpu_seconds_total')).toBeGreaterThan(0);

    const health = await fetch(`${/"metrics":"([^"]+)\/metrics"/.exec(sys.workers[0]!.output())![1]}/healthz`);
    expect(health.status).toBe(200);
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, STATIONS, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

/*
 * Fair turns end to end: stations of a stations file with weights, the api and one worker
 * process with one device slot, `synthetic` jobs. What a station sees: its job is not pushed
 * back by another station's flood, and turns follow the weights.
 */

let sys: System;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-fair-'));
  const file = path.join(dir, 'stations.json');
  fs.writeFileSync(
    file,
    JSON.stringify([
      { name: 'alpha', key: STATIONS.alpha.key, weight: 3, maxPending: 500 },
      { name: 'beta', key: STATIONS.beta.key, weight: 1, maxPending: 500 },
    ]),
  );
  sys = await startSystem({
    env: { DARKROOM_API_KEYS: '', DARKROOM_STATIONS_FILE: file },
    workerEnv: { DARKROOM_WORKER_PIPELINES: 'synthetic', DARKROOM_WORKER_CONCURRENCY: '1', DARKROOM_WORKER_OVERLAP: '0' },
  });
});
afterAll(async () => {
  await sys?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const admin = { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;
const job = { pipeline: 'synthetic', params: { steps: 1, stepMs: 20, width: 8, height: 8 } };

async function queue(station: 'alpha' | 'beta'): Promise<JobStatusBody> {
  const res = await submit(sys, job, { station });
  expect(res.status).toBe(202);
  return (await res.json()) as JobStatusBody;
}

const startedAt = (j: JobStatusBody) => Date.parse(j.startedAt!);

describe('fair turns', () => {
  it("a flood does not push another station's job back", async () => {
    const flood: JobStatusBody[] = [];
    for (let i = 0; i < 60; i++) flood.push(await queue('alpha'));
    const single = await queue('beta');
    // Once answered, the job is in the queue. Its createdAt is taken before it is written, and a
    // flood job the worker takes in between would look as if it had started after it.
    const queuedAt = Date.now();
    expect(single.position).toBeLessThanOrEqual(2);
    const done = await waitForFinal(sys, single.id, 'beta');
    const finals = await Promise.all(flood.map((j) => waitForFinal(sys, j.id)));
    // Flood jobs that started after the single job was queued but before it: at most the one next in line.
    const ahead = finals.filter((j) => startedAt(j) > queuedAt && startedAt(j) < startedAt(done));
    expect(ahead.length).toBeLessThanOrEqual(1);
    // And the flood itself ran first in, first out.
    const order = [...finals].sort((a, b) => startedAt(a) - startedAt(b)).map((j) => j.id);
    expect(order).toEqual(flood.map((j) => j.id));
  });

  it('honours weights: alpha (3) takes three turns to beta’s (1)', async () => {
    expect((await sys.fetch('/v1/admin/pipelines/synthetic/pause', { ...admin, method: 'POST' })).status).toBe(200);
    const alpha: JobStatusBody[] = [];
    const beta: JobStatusBody[] = [];
    for (let i = 0; i < 24; i++) alpha.push(await queue('alpha'));
    for (let i = 0; i < 24; i++) beta.push(await queue('beta'));
    // A station sees where its job really is: beta's first job is second or third, not 25th.
    expect(beta[0]!.position).toBeLessThanOrEqual(3);
    expect((await sys.fetch('/v1/admin/pipelines/synthetic/resume', { ...admin, method: 'POST' })).status).toBe(200);
    const finals = [
      ...(await Promise.all(alpha.map((j) => waitForFinal(sys, j.id, 'alpha')))),
      ...(await Promise.all(beta.map((j) => waitForFinal(sys, j.id, 'beta')))),
    ];
    const first16 = finals.sort((a, b) => startedAt(a) - startedAt(b)).slice(0, 16);
    const fromAlpha = first16.filter((j) => alpha.some((a) => a.id === j.id)).length;
    expect(fromAlpha).toBeGreaterThanOrEqual(11);
    expect(fromAlpha).toBeLessThanOrEqual(13);
  });
});

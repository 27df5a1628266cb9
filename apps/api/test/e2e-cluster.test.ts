import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import {
  fixture,
  freePort,
  type ProcessHandle,
  type RedisClusterHandle,
  STATIONS,
  type System,
  startApi,
  startRedisCluster,
  startWorker,
  uniquePrefix,
  waitFor,
} from '@darkroom/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from './helpers.ts';

/*
 * Darkroom on a real Redis Cluster of three masters: the api and a worker reach it only through
 * DARKROOM_REDIS_CLUSTER_NODES (REDIS_URL points where nothing listens). The prefix becomes a
 * hash tag, so every key lands in one slot and every multi-key script runs there.
 */

let cluster: RedisClusterHandle;
let procs: ProcessHandle[] = [];
let dataDir: string;
let prefix: string;
let sys: System;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-cluster-data-'));
  prefix = uniquePrefix('cl');
  const port = await freePort();
  const env: Record<string, string> = {
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    DARKROOM_REDIS_CLUSTER_NODES: cluster.nodes,
    DARKROOM_REDIS_PREFIX: prefix,
    DARKROOM_DATA_DIR: dataDir,
    DARKROOM_API_KEYS: `${STATIONS.alpha.name}:${STATIONS.alpha.key}`,
    DARKROOM_ADMIN_TOKEN: 'admin-token-0123456789abcdef',
    DARKROOM_WORKER_PIPELINES: 'edit,synthetic',
    DARKROOM_WORKER_METRICS_PORT: '0',
  };
  procs.push(await startApi({ ...env, PORT: String(port) }));
  procs.push(await startWorker({ ...env, DARKROOM_WORKER_NAME: 'cl1' }));
  const url = `http://127.0.0.1:${port}`;
  sys = {
    url,
    fetch: (pathname: string, init: RequestInit & { station?: 'alpha' | 'beta' | null } = {}) => {
      const { station: _s, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${STATIONS.alpha.key}`);
      return fetch(url + pathname, { ...rest, headers, signal: rest.signal ?? AbortSignal.timeout(30_000) });
    },
  } as unknown as System;
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  procs = [];
  await cluster?.stop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('on a Redis Cluster', () => {
  it('submits, runs and serves the result of a job', async () => {
    const res = await submit(sys, {
      pipeline: 'edit',
      params: { operations: [{ op: 'resize', width: 64 }] },
      imageBase64: fixture('with-alpha.png').toString('base64'),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobStatusBody;
    // The station SDK follows the job's live events: the api's event stream reads the cluster too.
    const final = await waitForFinal(sys, id);
    expect(final.status).toBe('completed');
    const img = await sys.fetch(`/v1/jobs/${id}/result`);
    expect(img.status).toBe(200);
    expect(Buffer.from(await img.arrayBuffer()).length).toBe(final.result!.bytes);
  });

  it('answers a repeated Idempotency-Key with the original job', async () => {
    const headers = { 'idempotency-key': 'cluster-order-1' };
    const a = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } }, { headers });
    expect(a.status).toBe(202);
    const b = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } }, { headers });
    expect(b.status).toBe(200);
    const first = (await a.json()) as JobStatusBody;
    expect((await b.json()) as JobStatusBody).toMatchObject({ id: first.id, deduplicated: true });
    const other = await submit(sys, { pipeline: 'synthetic', params: { steps: 2, stepMs: 0 } }, { headers });
    expect(other.status).toBe(409);
  });

  it('cancels a queued job at once and an active one on its worker', async () => {
    const long = { pipeline: 'synthetic', params: { steps: 100, stepMs: 100 } };
    const active = (await (await submit(sys, long)).json()) as JobStatusBody;
    await waitFor(async () => ((await (await sys.fetch(`/v1/jobs/${active.id}`)).json()) as JobStatusBody).status === 'active', {
      timeoutMs: 20_000,
      what: 'the first job to start',
    });
    const queued = (await (await submit(sys, long)).json()) as JobStatusBody;
    expect(queued.status).toBe('queued');
    const ended = await sys.fetch(`/v1/jobs/${queued.id}`, { method: 'DELETE' });
    expect(ended.status).toBe(200);
    expect(((await ended.json()) as JobStatusBody).status).toBe('cancelled');
    const requested = await sys.fetch(`/v1/jobs/${active.id}`, { method: 'DELETE' });
    expect(requested.status).toBe(202);
    expect((await waitForFinal(sys, active.id)).status).toBe('cancelled');
  });

  it('keeps every key under one hash tag, on one node', async () => {
    const counts: number[] = [];
    for (const port of cluster.ports) {
      const node = new Redis(port, '127.0.0.1');
      counts.push((await node.keys(`{${prefix}}:*`)).length);
      expect(await node.keys(`${prefix}:*`)).toEqual([]);
      node.disconnect();
    }
    expect(counts.filter((n) => n > 0)).toHaveLength(1);
  });
});

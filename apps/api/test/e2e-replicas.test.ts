import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DarkroomClient } from '@darkroom/client';
import type { JobStatusBody, QueueBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, STATIONS, type System, sleep, startSystem, waitFor } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSse, type SseEvent } from './helpers.ts';

/*
 * Two api replicas behind a real HAProxy (round-robin, health checks on /readyz), one worker, one
 * Redis, one data directory. Stations only ever talk to HAProxy; each request carries its own
 * X-Request-Id, and the replica whose log names it is the one that answered.
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
  sys = await startSystem({
    apiReplicas: 2,
    env: { DARKROOM_STATIONS_FILE: file, DARKROOM_STATION_MAX_PENDING: 'off' },
    // Successful requests are logged at debug: the logs then name every request's replica.
    apiEnv: { DARKROOM_LOG_LEVEL: 'debug' },
    workerEnv: { DARKROOM_WORKER_CONCURRENCY: '4' },
  });
});
afterAll(async () => {
  await sys?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
/** Sends a request through HAProxy with a fresh request id; answers the response and that id. */
async function send(pathname: string, init: RequestInit & { key?: string | null } = {}): Promise<{ res: Response; rid: string }> {
  const { key = STATIONS.alpha.key, ...rest } = init;
  const rid = `rep-${++seq}-${Date.now()}`;
  const headers = new Headers(rest.headers);
  headers.set('x-request-id', rid);
  if (key) headers.set('authorization', `Bearer ${key}`);
  const res = await fetch(sys.url + pathname, { ...rest, headers, signal: rest.signal ?? AbortSignal.timeout(30_000) });
  return { res, rid };
}
const post = (body: object, opts: { key?: string; query?: string; headers?: Record<string, string> } = {}) =>
  send(`/v1/jobs${opts.query ?? ''}`, {
    method: 'POST',
    key: opts.key,
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...opts.headers },
  });
const admin = (p: string, method = 'POST') => send(p, { method, key: ADMIN_TOKEN });
const synthetic = (params: object) => ({ pipeline: 'synthetic', params });
const json = async <T = JobStatusBody>(res: Response) => (await res.json()) as T;

/** The replica (0 or 1) whose request log names request `rid`. */
async function replicaOf(rid: string): Promise<number> {
  return waitFor(
    () => {
      const i = sys.apis.findIndex((a) => a.output().includes(`"id":"${rid}"`));
      return i >= 0 ? i : undefined;
    },
    { what: `the log line of request ${rid}`, timeoutMs: 5000 },
  );
}
const replicasOf = (rids: string[]) => Promise.all(rids.map(replicaOf));

describe('two api replicas behind HAProxy', () => {
  it('balances round-robin: consecutive requests reach different replicas', async () => {
    const rids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { res, rid } = await send('/v1/pipelines');
      expect(res.status).toBe(200);
      rids.push(rid);
    }
    const seen = await replicasOf(rids);
    expect(new Set(seen)).toEqual(new Set([0, 1]));
    for (let i = 1; i < seen.length; i++) expect(seen[i], `request ${i}`).not.toBe(seen[i - 1]);
    expect(await sys.lb!.serverStates()).toEqual({ api1: 'UP', api2: 'UP' });
  });

  it('replays an Idempotency-Key through the other replica: the original job, 200 deduplicated', async () => {
    const k = `key-${Date.now()}`;
    const first = await post(synthetic({ steps: 2, stepMs: 10 }), { headers: { 'idempotency-key': k } });
    const replay = await post(synthetic({ steps: 2, stepMs: 10 }), { headers: { 'idempotency-key': k } });
    expect(first.res.status).toBe(202);
    expect(replay.res.status).toBe(200);
    const original = await json(first.res);
    expect(await json(replay.res)).toMatchObject({ id: original.id, deduplicated: true });
    expect(replay.res.headers.get('location')).toBe(`/v1/jobs/${original.id}`);
    const [a, b] = await replicasOf([first.rid, replay.rid]);
    expect(a).not.toBe(b);

    // Concurrent first attempts over both replicas still make one job.
    const k2 = `key2-${Date.now()}`;
    const racing = await Promise.all(
      Array.from({ length: 6 }, () => post(synthetic({ steps: 1, stepMs: 0, seed: 9 }), { headers: { 'idempotency-key': k2 } })),
    );
    const bodies = await Promise.all(racing.map((r) => json(r.res)));
    expect(new Set(bodies.map((x) => x.id)).size).toBe(1);
    expect(racing.map((r) => r.res.status).sort()).toEqual([200, 200, 200, 200, 200, 202]);
    expect(new Set(await replicasOf(racing.map((r) => r.rid)))).toEqual(new Set([0, 1]));
  });

  it('counts a station’s pending jobs in Redis: maxPending holds across replicas', async () => {
    expect((await admin('/v1/admin/pipelines/synthetic/pause')).res.status).toBe(200);
    try {
      const ok = [await post(synthetic({}), { key: LIMITED.key }), await post(synthetic({}), { key: LIMITED.key })];
      expect(ok.map((r) => r.res.status)).toEqual([202, 202]);
      const over = [await post(synthetic({}), { key: LIMITED.key }), await post(synthetic({}), { key: LIMITED.key })];
      expect(over.map((r) => r.res.status)).toEqual([429, 429]);
      for (const r of over) expect((await json<{ code: string }>(r.res)).code).toBe('rate_limited');
      expect(new Set(await replicasOf(ok.map((r) => r.rid)))).toEqual(new Set([0, 1]));
      expect(new Set(await replicasOf(over.map((r) => r.rid)))).toEqual(new Set([0, 1]));

      // /v1/queue says the same whichever replica answers (its worker figures are cached for up to 1 s per process).
      await sleep(1100);
      const queues = [await send('/v1/queue', { key: LIMITED.key }), await send('/v1/queue', { key: LIMITED.key })];
      const [q1, q2] = await Promise.all(queues.map((q) => json<QueueBody>(q.res)));
      expect(q1!.limits.station).toMatchObject({ name: 'limited', maxPending: 2, pending: 2 });
      expect(q2).toEqual(q1);
      expect(q1!.pipelines.find((p) => p.name === 'synthetic')!.paused).toBe(true);
      expect(new Set(await replicasOf(queues.map((q) => q.rid)))).toEqual(new Set([0, 1]));

      // A slot freed through one replica is free on the other.
      const firstId = (await json(ok[0]!.res)).id;
      const cancel = await send(`/v1/jobs/${firstId}`, { method: 'DELETE', key: LIMITED.key });
      expect(cancel.res.status).toBe(200);
      const after = await post(synthetic({}), { key: LIMITED.key });
      expect(after.res.status).toBe(202);
      expect(await replicaOf(after.rid)).not.toBe(await replicaOf(cancel.rid));
    } finally {
      await admin('/v1/admin/pipelines/synthetic/resume');
    }
  });

  it('counts requests per minute in Redis: the budget is shared by the replicas', async () => {
    const sent = [];
    for (let i = 0; i < 6; i++) sent.push(await send('/v1/jobs?ids=synthetic_zzzzzzzzzzzzzzzzzzzzzzzz', { key: CHATTY.key }));
    expect(sent.map((s) => s.res.status)).toEqual([200, 200, 200, 429, 429, 429]);
    const where = await replicasOf(sent.map((s) => s.rid));
    // Both replicas answered 200 and both refused: neither kept a budget of its own.
    expect(new Set(where.slice(0, 3))).toEqual(new Set([0, 1]));
    expect(new Set(where.slice(3))).toEqual(new Set([0, 1]));
    const remaining = sent.slice(0, 3).map((s) => /remaining=(\d+)/.exec(s.res.headers.get('ratelimit') ?? '')?.[1]);
    expect(remaining).toEqual(['2', '1', '0']);
  });

  it('holds ?wait on either replica, and a replay with ?wait through the other waits too', async () => {
    const k = `wait-${Date.now()}`;
    const first = await post(synthetic({ steps: 3, stepMs: 100 }), { query: '?wait=20', headers: { 'idempotency-key': k } });
    expect(first.res.status).toBe(200);
    const done = await json(first.res);
    expect(done.status).toBe('completed');
    const replay = await post(synthetic({ steps: 3, stepMs: 100 }), { query: '?wait=20', headers: { 'idempotency-key': k } });
    expect(replay.res.status).toBe(200);
    expect(await json(replay.res)).toMatchObject({ id: done.id, status: 'completed', deduplicated: true });

    // A job still running when the replay arrives: the replay waits for it on the other replica.
    const k2 = `wait2-${Date.now()}`;
    const slow = post(synthetic({ steps: 10, stepMs: 100 }), { query: '?wait=20', headers: { 'idempotency-key': k2 } });
    await sleep(300);
    const slowReplay = await post(synthetic({ steps: 10, stepMs: 100 }), { query: '?wait=20', headers: { 'idempotency-key': k2 } });
    const s = await slow;
    expect([s.res.status, slowReplay.res.status]).toEqual([200, 200]);
    const [a, b] = [await json(s.res), await json(slowReplay.res)];
    expect(b).toMatchObject({ id: a.id, status: 'completed', deduplicated: true });
    expect(a.status).toBe('completed');
    expect(new Set(await replicasOf([first.rid, replay.rid]))).toEqual(new Set([0, 1]));
    expect(new Set(await replicasOf([s.rid, slowReplay.rid]))).toEqual(new Set([0, 1]));
  });

  it('streams the same events whichever replica serves them', async () => {
    const { res } = await post(synthetic({ steps: 2, stepMs: 10 }));
    const { id } = await json(res);
    const client = new DarkroomClient({ baseUrl: sys.url, apiKey: STATIONS.alpha.key });
    expect((await client.waitFor(id, { timeoutMs: 20_000 })).status).toBe('completed');
    const streams = [await send(`/v1/jobs/${id}/events`), await send(`/v1/jobs/${id}/events`)];
    const [e1, e2] = await Promise.all(streams.map((s) => readSse(s.res)));
    expect(e1).toHaveLength(1);
    expect(e1![0]).toMatchObject({ event: 'status', data: { id, status: 'completed' } });
    expect(e2).toEqual(e1);
    expect(new Set(await replicasOf(streams.map((s) => s.rid)))).toEqual(new Set([0, 1]));
    // And a station that does not own the job is refused on both.
    const other = [
      await send(`/v1/jobs/${id}/events`, { key: STATIONS.beta.key }),
      await send(`/v1/jobs/${id}/events`, { key: STATIONS.beta.key }),
    ];
    expect(other.map((o) => o.res.status)).toEqual([404, 404]);
  });

  it('follows a job over SSE on one replica while it runs, submitted and cancelled through the other', async () => {
    const submitted = await post(synthetic({ steps: 100, stepMs: 100 }));
    expect(submitted.res.status).toBe(202);
    const { id } = await json(submitted.res);
    const stream = await send(`/v1/jobs/${id}/events`);
    expect(stream.res.status).toBe(200);
    expect(stream.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    let sawProgress!: () => void;
    const progressed = new Promise<void>((r) => {
      sawProgress = r;
    });
    const events = readSse(stream.res, {
      onEvent: (e: SseEvent) => {
        if (e.event === 'progress') sawProgress();
      },
    });
    // Progress comes from the worker through Redis to the replica holding the stream.
    await progressed;
    const cancel = await send(`/v1/jobs/${id}`, { method: 'DELETE' });
    expect(cancel.res.status).toBe(202);
    expect(await json(cancel.res)).toMatchObject({ id, status: 'active', cancelRequested: true });
    const all = await events;
    expect(all[0]).toMatchObject({ event: 'status', data: { id } });
    expect(all.filter((e) => e.event === 'progress').length).toBeGreaterThanOrEqual(1);
    expect(all.at(-1)).toMatchObject({ event: 'status', data: { id, status: 'cancelled' } });
    const [sub, sse, del] = await replicasOf([submitted.rid, stream.rid, cancel.rid]);
    expect(sse).not.toBe(sub);
    expect(del).toBe(sub);
  });

  it('loses and duplicates no submit when a replica is killed under load', { timeout: 90_000 }, async () => {
    const redis = new Redis(sys.redis.url);
    const jobKeys = async () => {
      const out = new Set<string>();
      const re = new RegExp(`^${sys.prefix}:synthetic:(synthetic_[0-9a-z]+)$`);
      for await (const keys of redis.scanStream({ match: `${sys.prefix}:synthetic:synthetic_*`, count: 1000 })) {
        for (const k of keys as string[]) {
          const m = re.exec(k);
          if (m) out.add(m[1]!);
        }
      }
      return out;
    };
    try {
      const before = await jobKeys();
      const figures = { submits: 0, resolved: 0, failed: 0, deduplicated: 0, retries: 0, networkErrors: 0, status5xx: 0, waitSubmits: 0 };
      const retryTimes: number[] = [];
      const latencies: number[] = [];
      const networkErrorKinds = new Set<string>();
      const countingFetch: typeof fetch = async (input, init) => {
        try {
          const res = await fetch(input, init);
          if (res.status >= 500) figures.status5xx++;
          return res;
        } catch (err) {
          figures.networkErrors++;
          const cause = (err as { cause?: { code?: string } }).cause;
          networkErrorKinds.add(`${(err as Error).name}: ${cause?.code ?? (err as Error).message}`);
          throw err;
        }
      };
      const ids: string[] = [];
      const errors: string[] = [];
      let stopAt = Number.POSITIVE_INFINITY;
      const hardStop = Date.now() + 20_000;
      const station = (i: number) => (i % 2 === 0 ? STATIONS.alpha : STATIONS.beta);
      const runClient = async (i: number) => {
        const client = new DarkroomClient({
          baseUrl: sys.url,
          apiKey: station(i).key,
          fetch: countingFetch,
          retry: { attempts: 8, baseDelayMs: 100, maxDelayMs: 1000 },
          onRetry: () => {
            figures.retries++;
            retryTimes.push(Date.now());
          },
        });
        // Half the clients hold their answers open with ?wait, so some are in flight when the replica dies.
        const wait = i % 2 === 1 ? 5 : undefined;
        while (Date.now() < stopAt && Date.now() < hardStop && figures.submits < 3000) {
          figures.submits++;
          if (wait) figures.waitSubmits++;
          const t0 = Date.now();
          try {
            const job = await client.submit({ pipeline: 'synthetic', params: { steps: 2, stepMs: 20 }, ...(wait ? { wait } : {}) });
            latencies.push(Date.now() - t0);
            figures.resolved++;
            if (job.deduplicated) figures.deduplicated++;
            ids.push(job.id);
          } catch (err) {
            figures.failed++;
            errors.push(String(err));
          }
        }
      };
      const CLIENTS = 6;
      const load = Promise.all(Array.from({ length: CLIENTS }, (_, i) => runClient(i)));
      await sleep(1500);
      const servedBefore = sys.apis.map((a) => (a.output().match(/"url":"\/v1\/jobs(\?wait=5)?"/g) ?? []).length);
      const killedAt = Date.now();
      await sys.killApi(1);
      await sys.lb!.waitForStates('DOWN', ['api2']);
      const markedDownMs = Date.now() - killedAt;
      await sleep(1500);
      stopAt = Date.now();
      await load;

      // Both replicas took submits before the kill.
      expect(servedBefore[0]).toBeGreaterThan(0);
      expect(servedBefore[1]).toBeGreaterThan(0);
      // Every submit resolved to a job, each to its own.
      expect(errors).toEqual([]);
      expect(figures.resolved).toBe(figures.submits);
      expect(new Set(ids).size).toBe(ids.length);
      // Redis holds exactly those jobs: none lost, none created twice.
      const created = [...(await jobKeys())].filter((k) => !before.has(k));
      expect(created.sort()).toEqual([...ids].sort());

      // All complete.
      const watcher = new DarkroomClient({ baseUrl: sys.url, apiKey: STATIONS.alpha.key });
      const watcherBeta = new DarkroomClient({ baseUrl: sys.url, apiKey: STATIONS.beta.key });
      await waitFor(
        async () => {
          const all = [...(await watcher.statuses(ids)), ...(await watcherBeta.statuses(ids))];
          return all.length === ids.length && all.every((j) => j.status === 'completed');
        },
        { timeoutMs: 60_000, intervalMs: 500, what: 'every job to complete' },
      );

      // The killed replica comes back and HAProxy puts it in rotation again.
      const restartAt = Date.now();
      await sys.restartApi(1);
      await sys.lb!.waitForStates('UP', ['api2']);
      const backUpMs = Date.now() - restartAt;
      const lastRetryMs = retryTimes.length ? Math.max(...retryTimes) - killedAt : 0;
      latencies.sort((a, b) => a - b);
      console.log(
        'replica kill under load:',
        JSON.stringify({
          clients: CLIENTS,
          ...figures,
          jobsInRedis: created.length,
          networkErrorKinds: [...networkErrorKinds],
          markedDownMs,
          lastRetryAfterKillMs: lastRetryMs,
          p50LatencyMs: latencies[Math.floor(latencies.length / 2)],
          maxLatencyMs: latencies.at(-1),
          replicaBackUpMs: backUpMs,
        }),
      );
      expect(figures.submits).toBeGreaterThan(20);
    } finally {
      redis.disconnect();
    }
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { priorityRank } from '@darkroom/contracts';
import { loadConfig } from '@darkroom/runtime';
import { type RedisHandle, startRedis, uniquePrefix } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createJobSystem, FsBlobStore, JobService, Maintenance, type Station, validateSubmit } from '../src/index.ts';

/*
 * Fair turns between stations in process, against a real Redis: the prioritized set's order is
 * the order jobs start in, and a status's `position` is a job's place in it.
 */

let redis: RedisHandle;
let conn: Redis;
const logger = pino({ level: 'silent' });
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});
afterAll(async () => {
  conn?.disconnect();
  await redis?.stop();
});

const station = (name: string, weight = 1): Station => ({
  name,
  maxPriority: 'critical',
  defaultPriority: 'normal',
  maxPending: null,
  requestsPerMinute: null,
  webhookSecret: undefined,
  weight,
});

async function setup(env: Record<string, string> = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-fair-'));
  const config = loadConfig({
    REDIS_URL: redis.url,
    DARKROOM_REDIS_PREFIX: uniquePrefix(),
    DARKROOM_DATA_DIR: dataDir,
    DARKROOM_STATION_MAX_PENDING: '0',
    ...env,
  });
  const blobs = new FsBlobStore(dataDir);
  await blobs.ensureReady();
  const deps = createJobSystem({ config, logger, redis: conn, blobs });
  const jobs = new JobService(deps);
  closers.push(
    () => deps.close(),
    async () => fs.rmSync(dataDir, { recursive: true, force: true }),
  );
  const submit = async (s: Station, priority?: string) =>
    (
      await jobs.submit(
        validateSubmit({ errors: [], pipeline: 'synthetic', params: {}, ...(priority ? { priority } : {}) }, s, {
          webhookSecretAvailable: false,
        }),
        s,
        {},
      )
    ).body;
  const queue = deps.queues.get('synthetic')!;
  /** Job ids in the order they will start. */
  const order = () => conn.zrange(queue.toKey('prioritized'), '0', '-1');
  const position = async (id: string, s: Station) => (await jobs.view((await jobs.load(id, { station: s }))!)).position;
  return { config, deps, jobs, submit, order, position };
}

describe('fair turns between stations', () => {
  it('a station that floods the queue delays another station’s job by at most one job', async () => {
    const t = await setup();
    const flood = station('flood');
    const kiosk = station('kiosk');
    const flooded: string[] = [];
    for (let i = 0; i < 300; i++) flooded.push((await t.submit(flood)).id);
    const single = await t.submit(kiosk);
    expect(single.position).toBeLessThanOrEqual(2);
    expect(await t.position(single.id, kiosk)).toBe(single.position);
    // Within the flooding station the order stays first in, first out.
    const order = await t.order();
    expect(order.filter((id) => id !== single.id)).toEqual(flooded);
    expect(order.indexOf(single.id) + 1).toBe(single.position);
    // A second job of the same kiosk takes its next turn, not a place behind the flood.
    const next = await t.submit(kiosk);
    expect(next.position).toBeLessThanOrEqual(4);
    expect(next.position!).toBeGreaterThan(single.position!);
    // Positions are exact for every job: 1 = next.
    const now = await t.order();
    for (const id of [flooded[0]!, flooded[150]!, flooded[299]!]) expect(await t.position(id, flood)).toBe(now.indexOf(id) + 1);
  });

  it('honours weights: a station of weight 3 takes three turns for one of weight 1', async () => {
    const t = await setup();
    const heavy = station('heavy', 3);
    const light = station('light', 1);
    for (let i = 0; i < 60; i++) await t.submit(heavy);
    for (let i = 0; i < 60; i++) await t.submit(light);
    const names = new Map<string, string>();
    for (const id of await t.order()) {
      const job = await t.deps.queues.get('synthetic')!.getJob(id);
      names.set(id, job!.data.station);
    }
    const first40 = [...names.values()].slice(0, 40);
    expect(first40.filter((n) => n === 'heavy').length).toBeGreaterThanOrEqual(29);
    expect(first40.filter((n) => n === 'heavy').length).toBeLessThanOrEqual(31);
  });

  it('keeps priorities first: a flood of high jobs still goes before every normal one', async () => {
    const t = await setup();
    const a = station('a');
    const b = station('b');
    for (let i = 0; i < 50; i++) await t.submit(a, 'high');
    const normal = await t.submit(b);
    expect(normal.position).toBe(51);
    const high = await t.submit(b, 'high');
    expect(high.position).toBeLessThanOrEqual(2);
  });

  it('lets aging lift a job past everything newer in its new class, ahead of the stations’ turns', async () => {
    const t = await setup({ DARKROOM_MAX_WAIT_SECONDS: '3' });
    const a = station('a');
    const b = station('b');
    const old = await t.submit(a, 'low');
    await new Promise((r) => setTimeout(r, 1100)); // one aging step: low → normal
    const newer: string[] = [];
    for (let i = 0; i < 20; i++) newer.push((await t.submit(b)).id);
    expect(await t.position(old.id, a)).toBe(21);
    await new Maintenance(t.deps).tick();
    expect(await t.position(old.id, a)).toBe(1);
    expect((await t.order()).slice(1)).toEqual(newer);
  });

  it('moves tags back before they outgrow their class, keeping the order', async () => {
    const t = await setup();
    const flood = station('flood');
    for (let i = 0; i < 5; i++) await t.submit(flood);
    await t.submit(station('kiosk'));
    const queue = t.deps.queues.get('synthetic')!;
    const key = queue.toKey('prioritized');
    const state = queue.toKey('darkroom-fair');
    // As if two billion turns had been taken in the normal class.
    const far = 2 ** 31;
    for (const id of await t.order()) await conn.zincrby(key, far, id);
    for (const [field, value] of Object.entries(await conn.hgetall(state))) await conn.hset(state, field, Number(value) + far);
    const before = await t.order();
    await new Maintenance(t.deps).tick();
    expect(await t.order()).toEqual(before);
    const scores = (await conn.zrangebyscore(key, '-inf', '+inf', 'WITHSCORES')).filter((_, i) => i % 2 === 1).map(Number);
    const base = priorityRank('normal') * 2 ** 32;
    for (const score of scores) expect(score - base).toBeGreaterThan(2 ** 30);
    for (const score of scores) expect(score - base).toBeLessThan(2 ** 31);
    // Turns go on from there: a new station's job starts with the others that have not had a turn yet.
    expect((await t.submit(station('late'))).position).toBeLessThanOrEqual(3);
  });

  it('is off with DARKROOM_FAIR_SHARE=off: arrival order', async () => {
    const t = await setup({ DARKROOM_FAIR_SHARE: 'off' });
    for (let i = 0; i < 30; i++) await t.submit(station('flood'));
    expect((await t.submit(station('kiosk'))).position).toBe(31);
  });
});

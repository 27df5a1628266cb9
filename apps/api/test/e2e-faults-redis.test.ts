import type { JobStatusBody } from '@darkroom/contracts';
import { type System, sleep, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FINAL, submit } from './helpers.ts';

/*
 * Redis is SIGKILLed and restarted while stations keep submitting. With append-only persistence
 * (fsync on every write) every job answered 202 must survive and complete; while Redis is down
 * the API answers 503 with Retry-After at once — never a hang, never a 500 — and the api and the
 * worker come back by themselves.
 */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({
    redis: { needPrivate: true, appendonly: 'always' },
    env: {
      DARKROOM_WORKER_CONCURRENCY: '4',
      DARKROOM_STATION_MAX_PENDING: 'off',
      // The queue may grow past the default cap while the worker restarts: this test is about Redis.
      DARKROOM_MAX_QUEUE_SIZE: 'off',
      DARKROOM_LOCK_DURATION_MS: '3000',
      DARKROOM_STALLED_INTERVAL_MS: '1000',
    },
  });
});
afterAll(async () => {
  await sys?.stop();
});

it('loses no accepted job when Redis is killed and restarted under submit load', async () => {
  const accepted: string[] = [];
  const answers = new Map<number, number>();
  let slowest503 = 0;
  let hung = 0;
  let stop = false;
  const client = async (n: number) => {
    let i = 0;
    while (!stop) {
      const t0 = Date.now();
      try {
        const res = await submit(sys, {
          pipeline: 'synthetic',
          params: { steps: 1, stepMs: 20, width: 16, height: 16, seed: n * 10_000 + i++ },
        });
        answers.set(res.status, (answers.get(res.status) ?? 0) + 1);
        if (res.status === 202) accepted.push(((await res.json()) as JobStatusBody).id);
        else {
          expect(res.status).toBe(503);
          expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
          slowest503 = Math.max(slowest503, Date.now() - t0);
          await res.body?.cancel();
          await sleep(50);
        }
      } catch {
        hung++; // the 30 s abort of the test client, or a dropped connection
      }
    }
  };
  const clients = Array.from({ length: 8 }, (_, n) => client(n));
  await sleep(1500);
  await sys.redis.kill(true);
  await sleep(2000);
  await sys.redis.restart();
  await sleep(2500);
  stop = true;
  await Promise.all(clients);

  // Every accepted job is still there and completes.
  const deadline = Date.now() + 60_000;
  let final: JobStatusBody[] = [];
  while (Date.now() < deadline) {
    final = [];
    for (let i = 0; i < accepted.length; i += 100) {
      const res = await sys.fetch(`/v1/jobs?ids=${accepted.slice(i, i + 100).join(',')}`);
      final.push(...((await res.json()) as { jobs: JobStatusBody[] }).jobs);
    }
    if (final.length === accepted.length && final.every((j) => FINAL.includes(j.status))) break;
    await sleep(500);
  }
  const completed = final.filter((j) => j.status === 'completed').length;
  const other = [...answers.entries()].filter(([s]) => s !== 202 && s !== 503);
  process.stdout.write(
    `redis-restart: ${accepted.length} accepted (202), ${answers.get(503) ?? 0} answered 503 (slowest ${slowest503} ms), ${other.length} other answers, ${hung} hung or dropped, ${completed} completed, ${accepted.length - completed} lost\n`,
  );
  expect(answers.get(503) ?? 0).toBeGreaterThan(0); // the outage was seen
  expect(other).toEqual([]);
  expect(hung).toBe(0);
  expect(completed).toBe(accepted.length);
  expect(sys.api.proc.exitCode).toBeNull();
  expect(sys.workers[0]!.proc.exitCode).toBeNull();
});

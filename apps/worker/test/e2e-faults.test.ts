import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { listFiles, type ProcessHandle, type System, sleep, startSystem } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINAL, submit } from '../../api/test/helpers.ts';

/*
 * Workers die mid-job (out of memory, driver resets, redeploys). Three workers run 300 jobs
 * while one of them is SIGKILLed and replaced every 400 ms: every accepted job must end
 * completed exactly once, with one result file, and none stuck active.
 */

const JOBS = 300;
/** Long enough that the jobs outlast at least 5 kills, each waiting for its replacement to start (seconds on a busy machine). */
const STEP_MS = 150;
const LOCK_MS = 2000;
let sys: System;

beforeAll(async () => {
  sys = await startSystem({
    workers: 0,
    env: {
      DARKROOM_LOCK_DURATION_MS: String(LOCK_MS),
      DARKROOM_STALLED_INTERVAL_MS: '1000',
      DARKROOM_MAX_STALLED_COUNT: '100',
      DARKROOM_WORKER_CONCURRENCY: '2',
      DARKROOM_STATION_MAX_PENDING: 'off',
      DARKROOM_LOG_LEVEL: 'info',
    },
  });
  for (let i = 0; i < 3; i++) await sys.addWorker();
});
afterAll(async () => {
  await sys?.stop();
});

async function statuses(ids: string[]): Promise<JobStatusBody[]> {
  const out: JobStatusBody[] = [];
  for (let i = 0; i < ids.length; i += 100) {
    const res = await sys.fetch(`/v1/jobs?ids=${ids.slice(i, i + 100).join(',')}`);
    out.push(...((await res.json()) as { jobs: JobStatusBody[] }).jobs);
  }
  return out;
}

describe('workers killed mid-job', () => {
  it('completes every accepted job exactly once while workers are SIGKILLed again and again', async () => {
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i += 20) {
      const batch = await Promise.all(
        Array.from({ length: 20 }, (_, k) =>
          submit(sys, { pipeline: 'synthetic', params: { steps: 3, stepMs: STEP_MS, width: 32, height: 32, seed: i + k } }),
        ),
      );
      for (const res of batch) {
        expect(res.status).toBe(202);
        ids.push(((await res.json()) as JobStatusBody).id);
      }
    }

    const retired: ProcessHandle[] = [];
    let kills = 0;
    let done = false;
    const killer = (async () => {
      while (!done) {
        await sleep(400);
        if (done) break;
        const alive = sys.workers.filter((w) => w.proc.exitCode === null && w.proc.signalCode === null);
        const victim = alive[Math.floor(Math.random() * alive.length)];
        if (!victim) continue;
        await victim.stop('SIGKILL');
        kills++;
        retired.push(victim);
        sys.workers.splice(sys.workers.indexOf(victim), 1);
        await sys.addWorker({ DARKROOM_WORKER_NAME: `w-${kills}` });
      }
    })();

    const deadline = Date.now() + 120_000;
    let last: JobStatusBody[] = [];
    while (Date.now() < deadline) {
      last = await statuses(ids);
      if (last.length === ids.length && last.every((j) => FINAL.includes(j.status))) break;
      await sleep(500);
    }
    done = true;
    await killer;

    const byStatus = last.reduce<Record<string, number>>((acc, j) => {
      acc[j.status] = (acc[j.status] ?? 0) + 1;
      return acc;
    }, {});
    const rerun = last.filter((j) => j.attempts > 1).length;
    const lost = ids.length - (byStatus.completed ?? 0);
    process.stdout.write(
      `faults: ${kills} workers SIGKILLed, ${ids.length} jobs accepted, ${byStatus.completed ?? 0} completed, ${lost} lost, ${rerun} re-run after a kill\n`,
    );
    expect(byStatus).toEqual({ completed: JOBS });
    expect(kills).toBeGreaterThanOrEqual(5);
    expect(rerun).toBeGreaterThan(0); // the kills did land mid-job

    // One result file per job, and it is the one the job's record describes.
    const outputs = listFiles(sys.dataDir).filter((f) => f.startsWith('outputs/'));
    expect(outputs).toHaveLength(JOBS);
    for (const j of last) {
      const file = path.join(sys.dataDir, 'outputs', `${j.id}.png`);
      expect(createHash('sha256').update(fs.readFileSync(file)).digest('hex')).toBe(j.result!.sha256);
    }
    expect(listFiles(sys.dataDir).filter((f) => f.startsWith('tmp/'))).toEqual([]);

    // BullMQ recorded each completion once: no job has two "completed" lines across every worker that ever ran.
    const lines = [...retired, ...sys.workers].flatMap((w) => w.output().split('\n')).filter((l) => l.includes('"msg":"job completed"'));
    const perJob = new Map<string, number>();
    for (const l of lines) {
      const id = /"jobId":"([^"]+)"/.exec(l)?.[1];
      if (id) perJob.set(id, (perJob.get(id) ?? 0) + 1);
    }
    expect([...perJob.values()].filter((n) => n > 1)).toEqual([]);

    // Nothing left active or waiting.
    const redis = new Redis(sys.redis.url);
    try {
      expect(await redis.llen(`${sys.prefix}:synthetic:active`)).toBe(0);
      expect(await redis.zcard(`${sys.prefix}:synthetic:prioritized`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('keeps the event loop free while pipelines run (a stalled loop loses job locks)', async () => {
    const ids = await Promise.all(
      [
        { pipeline: 'synthetic', params: { steps: 2, stepMs: 10, width: 4096, height: 4096 } },
        { pipeline: 'synthetic', params: { steps: 2, stepMs: 10, width: 4096, height: 4096, seed: 3 } },
      ].map(async (b) => ((await (await submit(sys, b)).json()) as JobStatusBody).id),
    );
    for (;;) {
      const s = await statuses(ids);
      if (s.every((j) => FINAL.includes(j.status))) break;
      await sleep(200);
    }
    await sleep(5500); // the next heartbeat carries the stall measured while they ran
    const redis = new Redis(sys.redis.url);
    try {
      const beats = Object.values(await redis.hgetall(`${sys.prefix}:sys:workers`)).map(
        (v) => JSON.parse(v) as { eventLoopDelayMaxMs: number },
      );
      const worst = Math.max(...beats.map((b) => b.eventLoopDelayMaxMs));
      process.stdout.write(`faults: worst worker event-loop stall ${worst} ms (lock renewal every ${LOCK_MS / 2} ms)\n`);
      expect(worst).toBeLessThan(LOCK_MS / 2);
    } finally {
      redis.disconnect();
    }
  });
});

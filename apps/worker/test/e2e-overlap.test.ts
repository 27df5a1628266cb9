import type { JobStatusBody } from '@darkroom/contracts';
import { listFiles, type System, startSystem, waitFor } from '@darkroom/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit, waitForFinal } from '../../api/test/helpers.ts';

/*
 * One device slot, and the finishing of a job (encode, store, record) overlapping the next
 * job's compute. Read from the worker's own log lines, whose order in its output is the order
 * things happened in that process: no two computes at once, the next compute under way before
 * the previous job's finish is done, and a job moved to active only when it can compute (so
 * priorities hold and nothing sits active behind a busy device).
 */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({
    workers: 0,
    env: { DARKROOM_LOG_LEVEL: 'debug', DARKROOM_WORKER_PIPELINES: 'synthetic', DARKROOM_SHUTDOWN_GRACE_SECONDS: '10' },
  });
});
afterAll(async () => {
  await sys?.stop();
});

interface Line {
  msg: string;
  jobId?: string;
}

const linesOf = (output: string): Line[] =>
  output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line)
    .filter((l) => l.jobId);

async function backlog(n: number, params: object): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await submit(sys, { pipeline: 'synthetic', params: { ...params, seed: i } });
    expect(res.status).toBe(202);
    ids.push(((await res.json()) as JobStatusBody).id);
  }
  return ids;
}

describe('one device slot, finishing overlapped', () => {
  it('never computes two jobs at once, and starts the next compute before the previous job is finished', async () => {
    const ids = await backlog(8, { steps: 2, stepMs: 40, width: 512, height: 512 });
    const worker = await sys.addWorker({ DARKROOM_WORKER_NAME: 'overlap' });
    const finals = await Promise.all(ids.map((id) => waitForFinal(sys, id)));
    expect(finals.map((f) => [f.status, f.attempts])).toEqual(ids.map(() => ['completed', 1]));

    const lines = linesOf(worker.output());
    const started = lines.filter((l) => l.msg === 'job started').map((l) => l.jobId);
    expect(started.sort()).toEqual([...ids].sort());
    let computing: string | undefined;
    const computed: string[] = [];
    for (const l of lines) {
      if (l.msg === 'job started') {
        expect(computing, `${l.jobId} started while ${computing} was computing`).toBeUndefined();
        computing = l.jobId;
      } else if (l.msg === 'compute finished: device slot released') {
        expect(l.jobId).toBe(computing);
        computing = undefined;
        computed.push(l.jobId!);
      }
    }
    expect(computed).toHaveLength(ids.length);
    // Every job but the last: the next one's compute started before this one's finish (result
    // stored and recorded) was done.
    const at = (msg: string, id: string) => lines.findIndex((l) => l.msg === msg && l.jobId === id);
    for (let i = 0; i + 1 < computed.length; i++) {
      const next = computed[i + 1]!;
      expect(at('job started', next), `${next} started after ${computed[i]} finished`).toBeLessThan(at('pipeline finished', computed[i]!));
    }
    expect(listFiles(sys.dataDir).filter((f) => f.startsWith('outputs/'))).toHaveLength(ids.length);
    await worker.stop('SIGTERM');
  });

  it('takes a job only when it can compute: a critical job submitted later still goes before the queued ones', async () => {
    const worker = await sys.addWorker({ DARKROOM_WORKER_NAME: 'priorities' });
    const first = await backlog(1, { steps: 10, stepMs: 50 });
    await waitFor(async () => ((await (await sys.fetch(`/v1/jobs/${first[0]}`)).json()) as JobStatusBody).status === 'active', {
      what: 'first job active',
    });
    const normal = await backlog(3, { steps: 1, stepMs: 10 });
    // Nothing was taken ahead of its turn: the queued jobs are queued, not active on the busy worker.
    for (const id of normal) expect(((await (await sys.fetch(`/v1/jobs/${id}`)).json()) as JobStatusBody).status).toBe('queued');
    const urgent = (
      (await (await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 10 }, priority: 'critical' })).json()) as JobStatusBody
    ).id;
    const finals = await Promise.all([...first, ...normal, urgent].map((id) => waitForFinal(sys, id)));
    expect(finals.every((f) => f.status === 'completed')).toBe(true);
    const order = linesOf(worker.output())
      .filter((l) => l.msg === 'job started')
      .map((l) => l.jobId);
    expect(order).toEqual([first[0], urgent, ...normal]);
    await worker.stop('SIGTERM');
  });

  it('on SIGTERM with a backlog finishes what it runs, leaves the rest queued, and nothing is lost or run twice', async () => {
    const ids = await backlog(6, { steps: 4, stepMs: 50 });
    const worker = await sys.addWorker({ DARKROOM_WORKER_NAME: 'leaving' });
    await waitFor(async () => linesOf(worker.output()).some((l) => l.msg === 'compute finished: device slot released'), {
      what: 'a first compute to end',
    });
    const exit = await worker.stop('SIGTERM');
    expect(exit.code).toBe(0);
    const redis = new Redis(sys.redis.url);
    try {
      expect(await redis.llen(`${sys.prefix}:synthetic:active`)).toBe(0);
    } finally {
      redis.disconnect();
    }
    const done = linesOf(worker.output())
      .filter((l) => l.msg === 'job completed')
      .map((l) => l.jobId!);
    expect(done.length).toBeGreaterThan(0);
    for (const id of ids) {
      const s = ((await (await sys.fetch(`/v1/jobs/${id}`)).json()) as JobStatusBody).status;
      expect(s, id).toBe(done.includes(id) ? 'completed' : 'queued');
    }

    const successor = await sys.addWorker({ DARKROOM_WORKER_NAME: 'successor' });
    const finals = await Promise.all(ids.map((id) => waitForFinal(sys, id)));
    expect(finals.map((f) => [f.status, f.attempts])).toEqual(ids.map(() => ['completed', 1]));
    // A job reads completed before its worker's log line is written and read back: wait for the lines.
    const completed = () => [worker, successor].flatMap((w) => linesOf(w.output())).filter((l) => l.msg === 'job completed');
    const completedLines = await waitFor(() => completed().length >= ids.length && completed(), {
      timeoutMs: 10_000,
      what: 'a "job completed" line for every job',
    }).catch(() => completed());
    expect(completedLines.map((l) => l.jobId).sort()).toEqual([...ids].sort());
    for (const id of ids) expect(listFiles(sys.dataDir).filter((f) => f === `outputs/${id}.png`)).toHaveLength(1);
    await successor.stop('SIGTERM');
  });
});

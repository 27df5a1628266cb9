import { apiEquivalentJob, BASE_PREFIX, type Ctx, darkroomQueue, timed } from '../lib/context.ts';
import { Job, type Queue, QueueEvents, Redis, Worker } from '../lib/deps.ts';
import { now, round, type Summary, sleep, summarize } from '../lib/stats.ts';
import { PREFIX, startBareWorker } from '../lib/system.ts';

/*
 * 3. Dispatch latency on an idle worker: one job at a time, the next only after the previous
 * completed and a short pause (so the worker is back in its blocking wait). Measured in this
 * process, for the Darkroom worker and for the baselines alike, so each includes the same
 * event-delivery cost:
 * - add → active: from Queue.add resolving to the `active` event (QueueEvents; the worker's
 *   moveToActive wrote it), sub-millisecond;
 * - add → first progress: to the `progress` event the pipeline reports after its first step
 *   (synthetic, steps 1, stepMs 0: one setTimeout(0) then updateProgress; the bare worker's
 *   processor does exactly the same), so it also covers the worker's own work before the
 *   pipeline starts;
 * - processedOn − timestamp: BullMQ's own stamps (whole ms), as a cross-check.
 */

export interface DispatchFigures {
  samples: number;
  addToActive: Summary;
  addToProgress: Summary;
  /** From calling Queue.add (before its round trip) to the active event. */
  callToActive: Summary;
  processedMinusTimestamp: Summary;
}

const PARAMS = { steps: 1, stepMs: 0, width: 1, height: 1 };

export async function measureDispatch(ctx: Ctx, queue: Queue, samples: number, label: string): Promise<DispatchFigures> {
  const connection = new Redis(ctx.sys.redis.url, { maxRetriesPerRequest: null });
  const events = new QueueEvents(queue.name, { connection, prefix: queue.opts.prefix! });
  await events.waitUntilReady();
  // QueueEvents reads from "now" once its first XREAD is issued: give it a moment.
  await sleep(100);
  const seen = new Map<string, { active?: number; progress?: number; done?: () => void; finished?: boolean }>();
  const entry = (id: string) => {
    let e = seen.get(id);
    if (!e) {
      e = {};
      seen.set(id, e);
    }
    return e;
  };
  events.on('active', ({ jobId }) => {
    entry(jobId).active ??= now();
  });
  events.on('progress', ({ jobId }) => {
    entry(jobId).progress ??= now();
  });
  const finish = ({ jobId }: { jobId: string }) => {
    const e = entry(jobId);
    e.finished = true;
    e.done?.();
  };
  events.on('completed', finish);
  events.on('failed', finish);

  const warm = Math.min(20, Math.ceil(samples / 10));
  const a2a: number[] = [];
  const a2p: number[] = [];
  const c2a: number[] = [];
  const ids: string[] = [];
  await timed(ctx, `3 dispatch ${label}`, async () => {
    for (let i = 0; i < warm + samples; i++) {
      const job = apiEquivalentJob(ctx.config, 'synthetic', PARAMS);
      const e = entry(job.opts.jobId);
      const finished = new Promise<void>((resolve) => {
        e.done = resolve;
      });
      const called = now();
      await queue.add(job.name, job.data as never, job.opts);
      const added = now();
      const ok = await Promise.race([finished.then(() => true), sleep(10_000).then(() => false)]);
      if (!ok) throw new Error(`${label}: job ${job.opts.jobId} did not finish within 10 s`);
      // The progress event is written before the completion; allow its delivery a moment.
      for (let k = 0; k < 20 && (e.active === undefined || e.progress === undefined); k++) await sleep(1);
      if (i >= warm && e.active !== undefined && e.progress !== undefined) {
        a2a.push(e.active - added);
        a2p.push(e.progress - added);
        c2a.push(e.active - called);
        ids.push(job.opts.jobId);
      }
      seen.delete(job.opts.jobId);
      await sleep(5 + Math.random() * 5);
    }
  });
  const stamps: number[] = [];
  for (const id of ids) {
    const j = await Job.fromId(queue, id);
    if (j?.processedOn && j.timestamp) stamps.push(j.processedOn - j.timestamp);
  }
  await events.close();
  connection.disconnect();
  return {
    samples: a2a.length,
    addToActive: summarize(a2a),
    addToProgress: summarize(a2p),
    callToActive: summarize(c2a),
    processedMinusTimestamp: summarize(stamps),
  };
}

export interface DispatchResults {
  darkroom: DispatchFigures;
  /** A bare BullMQ Worker in a process of its own (the ratio's baseline). */
  bare: DispatchFigures;
  /** A bare BullMQ Worker inside the bench process (no second process to wake). */
  bareInProcess: DispatchFigures;
}

export async function dispatch(ctx: Ctx): Promise<DispatchResults> {
  const n = ctx.sizes.dispatchSamples;
  const dq = darkroomQueue(ctx, 'synthetic', PREFIX);
  const darkroom = await measureDispatch(ctx, dq, n, 'darkroom worker');
  await dq.close();

  const bq = darkroomQueue(ctx, 'synthetic', BASE_PREFIX);
  const bareProc = await startBareWorker(ctx.sys.redis.url, BASE_PREFIX, 'synthetic');
  const bare = await measureDispatch(ctx, bq, n, 'bare worker (own process)');
  await bareProc.stop();
  await bq.close();

  const iq = darkroomQueue(ctx, 'synthetic', `${BASE_PREFIX}inproc`);
  const connection = new Redis(ctx.sys.redis.url, { maxRetriesPerRequest: null });
  const w = new Worker(
    'synthetic',
    async (job) => {
      await sleep(0);
      await job.updateProgress({ percent: 100 });
      return { ok: true };
    },
    { connection, prefix: `${BASE_PREFIX}inproc`, concurrency: 1 },
  );
  await w.waitUntilReady();
  const bareInProcess = await measureDispatch(ctx, iq, n, 'bare worker (in bench process)');
  await w.close();
  connection.disconnect();
  await iq.close();
  return { darkroom, bare, bareInProcess };
}

export const r2 = (v: number) => round(v, 3);

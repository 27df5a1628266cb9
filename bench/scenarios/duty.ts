import { apiEquivalentJob, BASE_PREFIX, type Ctx, darkroomQueue, timed } from '../lib/context.ts';
import { Job, type Queue } from '../lib/deps.ts';
import { round, sleep } from '../lib/stats.ts';
import { PREFIX, startBareWorker } from '../lib/system.ts';

/*
 * 4. Worker duty cycle: a backlog of N synthetic jobs of one 100 ms step (the GPU stand-in's
 * defaults otherwise: a 256×256 PNG written as the result), drained by one worker at
 * concurrency 1. duty = N × 100 ms / (last finishedOn − first processedOn). The rest of the
 * wall time is the GPU standing idle: `idlePerJobMs` = wall / N − 100 ms. For a worker that runs
 * one job after the other it splits into the time inside each job beyond its 100 ms (result
 * encoding and storing, progress, bookkeeping) and the gaps between jobs. The Darkroom worker
 * finishes a job (encode, store, record) while the next one computes, so there its in-job time
 * includes that finish and the "gap" is negative: the overlap.
 */

export interface DutyFigures {
  jobs: number;
  wallMs: number;
  duty: number;
  /** Mean per job of (finishedOn − processedOn − 100 ms). */
  inJobOverheadMs: number;
  /** Mean of (next processedOn − previous finishedOn); negative where jobs overlap. */
  gapMs: number;
  /** GPU idle time per job: wall / N − 100 ms. */
  idlePerJobMs: number;
}

const STEP_MS = 100;

async function drain(ctx: Ctx, queue: Queue, n: number, label: string): Promise<DutyFigures> {
  const jobs = Array.from({ length: n }, () => apiEquivalentJob(ctx.config, 'synthetic', { steps: 1, stepMs: STEP_MS }));
  const finished = async () => {
    const counts = await queue.getJobCounts('completed', 'failed');
    return (counts.completed ?? 0) + (counts.failed ?? 0);
  };
  // Jobs of earlier benchmarks may be kept in the completed set: count from here.
  const base = await finished();
  await timed(ctx, `4 duty ${label}`, async () => {
    await Promise.all(jobs.map((j) => queue.add(j.name, j.data as never, j.opts)));
    const deadline = Date.now() + n * STEP_MS * 4 + 30_000;
    for (;;) {
      const done = (await finished()) - base;
      if (done >= n) break;
      if (Date.now() > deadline) throw new Error(`${label}: the backlog did not drain in time (${done} of ${n} finished)`);
      await sleep(50);
    }
  });
  const rows: { start: number; end: number }[] = [];
  for (const j of jobs) {
    const job = await Job.fromId(queue, j.opts.jobId);
    if (!job?.processedOn || !job.finishedOn) throw new Error(`${label}: job ${j.opts.jobId} has no run times`);
    if (job.failedReason) throw new Error(`${label}: job ${j.opts.jobId} failed: ${job.failedReason}`);
    rows.push({ start: job.processedOn, end: job.finishedOn });
  }
  rows.sort((a, b) => a.start - b.start);
  const wallMs = rows[rows.length - 1]!.end - rows[0]!.start;
  let inJob = 0;
  let gaps = 0;
  for (const [i, r] of rows.entries()) {
    inJob += r.end - r.start - STEP_MS;
    if (i > 0) gaps += r.start - rows[i - 1]!.end;
  }
  return {
    jobs: n,
    wallMs,
    duty: round((n * STEP_MS) / wallMs, 4),
    inJobOverheadMs: round(inJob / n, 2),
    gapMs: round(gaps / Math.max(1, n - 1), 2),
    idlePerJobMs: round(wallMs / n - STEP_MS, 2),
  };
}

export async function duty(ctx: Ctx): Promise<{ darkroom: DutyFigures; bare: DutyFigures }> {
  const n = ctx.sizes.dutyJobs;
  const qd = darkroomQueue(ctx, 'synthetic', PREFIX);
  const darkroom = await drain(ctx, qd, n, 'darkroom worker');
  await qd.close();

  const bq = darkroomQueue(ctx, 'synthetic', `${BASE_PREFIX}duty`);
  const bareProc = await startBareWorker(ctx.sys.redis.url, `${BASE_PREFIX}duty`, 'synthetic');
  const bare = await drain(ctx, bq, n, 'bare worker');
  await bareProc.stop();
  await bq.close();
  return { darkroom, bare };
}

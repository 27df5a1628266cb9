import type { JobData, JobResultData, JobStatus, JobStatusBody } from '@darkroom/contracts';
import { parseFailure } from '@darkroom/contracts';
import type { Job } from 'bullmq';

export type BullState = Awaited<ReturnType<Job['getState']>>;

/** `[cancelled] …` in failedReason marks a job stopped on request, reported as its own status. */
export const CANCELLED_REASON = '[cancelled] cancelled on request';

export function statusOf(state: BullState, job: Job<JobData, JobResultData>): JobStatus {
  switch (state) {
    case 'active':
      return 'active';
    case 'completed':
      return 'completed';
    case 'failed':
      return job.failedReason?.startsWith('[cancelled]') ? 'cancelled' : 'failed';
    default:
      return 'queued';
  }
}

/** State known from the job hash alone, so finished jobs need no second round trip. */
export function finishedState(job: Job): BullState | undefined {
  if (!job.finishedOn) return undefined;
  return job.failedReason !== undefined && job.failedReason !== null && job.returnvalue == null ? 'failed' : 'completed';
}

export interface QueueExtras {
  position?: number;
  estimatedWaitSeconds?: number | null;
  /** The job that retried this one (a field of the job's hash, read with it). */
  retriedBy?: string | undefined;
}

/** The field of a job's hash naming its retry, set once (HSETNX). */
export const RETRIED_BY_FIELD = 'retriedBy';

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : undefined);

export function jobLinks(id: string) {
  const self = `/v1/jobs/${id}`;
  return { self, result: `${self}/result`, events: `${self}/events` };
}

export function toStatusBody(job: Job<JobData, JobResultData>, state: BullState, extras: QueueExtras = {}): JobStatusBody {
  const id = job.id!;
  const status = statusOf(state, job);
  const body: JobStatusBody = {
    id,
    status,
    pipeline: job.data.pipeline,
    priority: job.data.priority,
    attempts: Math.max(job.attemptsStarted ?? 0, job.attemptsMade ?? 0),
    createdAt: new Date(job.timestamp).toISOString(),
    links: jobLinks(id),
  };
  if (status === 'queued') {
    if (extras.position !== undefined) body.position = extras.position;
    body.estimatedWaitSeconds = extras.estimatedWaitSeconds ?? null;
  }
  if (status === 'active') {
    const p = job.progress;
    body.progress =
      p && typeof p === 'object' && 'percent' in p
        ? {
            percent: Number((p as { percent: number }).percent),
            ...((p as { message?: string }).message ? { message: String((p as { message?: string }).message) } : {}),
          }
        : { percent: 0 };
  }
  if (job.processedOn) body.startedAt = iso(job.processedOn);
  if (job.data.run && status !== 'queued') {
    body.coldStart = job.data.run.coldStart;
    body.modelLoadMs = job.data.run.modelLoadMs;
  }
  if (job.finishedOn && status !== 'queued' && status !== 'active') {
    body.finishedAt = iso(job.finishedOn);
    if (job.processedOn) body.durationMs = Math.max(0, job.finishedOn - job.processedOn);
  }
  if (status === 'completed' && job.returnvalue) {
    const r = job.returnvalue;
    body.result = {
      url: body.links.result,
      contentType: r.contentType,
      width: r.width,
      height: r.height,
      bytes: r.bytes,
      sha256: r.sha256,
    };
  }
  if (status === 'failed') body.error = parseFailure(job.failedReason);
  if (job.data.retryOf) body.retryOf = job.data.retryOf;
  if (extras.retriedBy) body.retriedBy = extras.retriedBy;
  return body;
}

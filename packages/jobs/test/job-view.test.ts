import type { JobData, JobResultData } from '@darkroom/contracts';
import { formatFailure } from '@darkroom/contracts';
import { CANCELLED_REASON, finishedState, jobLinks, statusOf, toStatusBody } from '@darkroom/jobs';
import type { Job } from 'bullmq';
import { describe, expect, it } from 'vitest';

const ID = 'edit_8ntv3369rr6e6hh0y4efv87d';
const CREATED = Date.UTC(2024, 0, 2, 3, 4, 5, 600);
const STARTED = CREATED + 2_000;
const FINISHED = STARTED + 812;

const RESULT: JobResultData = {
  key: `outputs/${ID}.webp`,
  bytes: 20411,
  sha256: 'ab'.repeat(32),
  format: 'webp',
  contentType: 'image/webp',
  width: 512,
  height: 384,
};

type FakeJob = Job<JobData, JobResultData>;

/** A plain object with the fields toStatusBody reads, standing in for a BullMQ Job. */
function job(fields: Record<string, unknown> = {}): FakeJob {
  return {
    id: ID,
    data: { v: 1, station: 'alpha', pipeline: 'edit', priority: 'high', params: {}, timeoutMs: 300_000 },
    timestamp: CREATED,
    attemptsStarted: 0,
    attemptsMade: 0,
    progress: 0,
    returnvalue: null,
    failedReason: undefined,
    processedOn: undefined,
    finishedOn: undefined,
    ...fields,
  } as unknown as FakeJob;
}

const LINKS = { self: `/v1/jobs/${ID}`, result: `/v1/jobs/${ID}/result`, events: `/v1/jobs/${ID}/events` };

describe('jobLinks', () => {
  it('builds self, result and events paths', () => {
    expect(jobLinks(ID)).toEqual(LINKS);
  });
});

describe('statusOf', () => {
  it.each([
    ['waiting', 'queued'],
    ['prioritized', 'queued'],
    ['delayed', 'queued'],
    ['waiting-children', 'queued'],
    ['active', 'active'],
    ['completed', 'completed'],
  ] as const)('maps %s to %s', (state, status) => {
    expect(statusOf(state, job())).toBe(status);
  });

  it('maps failed to failed, or cancelled for a job stopped on request', () => {
    expect(statusOf('failed', job({ failedReason: formatFailure('timeout', 'late') }))).toBe('failed');
    expect(statusOf('failed', job({ failedReason: CANCELLED_REASON }))).toBe('cancelled');
    expect(statusOf('failed', job({ failedReason: '[cancelled] by the operator' }))).toBe('cancelled');
    expect(statusOf('failed', job({ failedReason: 'not [cancelled]' }))).toBe('failed');
    expect(statusOf('failed', job())).toBe('failed');
  });
});

describe('finishedState', () => {
  it('is undefined for a job that has not finished', () => {
    expect(finishedState(job())).toBeUndefined();
    expect(finishedState(job({ processedOn: STARTED }))).toBeUndefined();
    // an attempt failed and the job waits to retry: failedReason is set but finishedOn is not
    expect(finishedState(job({ processedOn: STARTED, failedReason: '[backend_unavailable] down' }))).toBeUndefined();
  });

  it('is completed for a finished job with a return value', () => {
    expect(finishedState(job({ finishedOn: FINISHED, returnvalue: RESULT }))).toBe('completed');
  });

  it('is completed for a job that succeeded after a failed attempt', () => {
    expect(finishedState(job({ finishedOn: FINISHED, returnvalue: RESULT, failedReason: '[backend_unavailable] down' }))).toBe('completed');
  });

  it('is failed for a finished job with a failure and no return value', () => {
    expect(finishedState(job({ finishedOn: FINISHED, failedReason: '[timeout] late' }))).toBe('failed');
    expect(finishedState(job({ finishedOn: FINISHED, failedReason: CANCELLED_REASON, returnvalue: undefined }))).toBe('failed');
  });
});

describe('toStatusBody', () => {
  it('shows a queued job with its position and wait estimate', () => {
    expect(toStatusBody(job(), 'prioritized', { position: 3, estimatedWaitSeconds: 12 })).toEqual({
      id: ID,
      status: 'queued',
      pipeline: 'edit',
      priority: 'high',
      position: 3,
      estimatedWaitSeconds: 12,
      attempts: 0,
      createdAt: '2024-01-02T03:04:05.600Z',
      links: LINKS,
    });
  });

  it('shows a null estimate when none is known, and no position when none is given', () => {
    const body = toStatusBody(job(), 'waiting');
    expect(body.estimatedWaitSeconds).toBeNull();
    expect('position' in body).toBe(false);
    expect(toStatusBody(job(), 'waiting', { position: 1, estimatedWaitSeconds: null }).estimatedWaitSeconds).toBeNull();
  });

  it('shows a job waiting to retry as queued, with its attempts and start time', () => {
    const body = toStatusBody(
      job({ attemptsStarted: 1, attemptsMade: 1, processedOn: STARTED, failedReason: '[backend_unavailable] x' }),
      'delayed',
      {
        position: 5,
        estimatedWaitSeconds: 3,
      },
    );
    expect(body).toEqual({
      id: ID,
      status: 'queued',
      pipeline: 'edit',
      priority: 'high',
      position: 5,
      estimatedWaitSeconds: 3,
      attempts: 1,
      createdAt: '2024-01-02T03:04:05.600Z',
      startedAt: '2024-01-02T03:04:07.600Z',
      links: LINKS,
    });
  });

  it('shows an active job with its progress and no queue fields', () => {
    const body = toStatusBody(
      job({ attemptsStarted: 1, processedOn: STARTED, progress: { percent: 40, message: 'step 4/10' } }),
      'active',
      {
        position: 9,
        estimatedWaitSeconds: 9,
      },
    );
    expect(body).toEqual({
      id: ID,
      status: 'active',
      pipeline: 'edit',
      priority: 'high',
      progress: { percent: 40, message: 'step 4/10' },
      attempts: 1,
      createdAt: '2024-01-02T03:04:05.600Z',
      startedAt: '2024-01-02T03:04:07.600Z',
      links: LINKS,
    });
  });

  it('shows 0 % for an active job that has not reported, and leaves out an empty message', () => {
    expect(toStatusBody(job({ processedOn: STARTED, progress: 0 }), 'active').progress).toEqual({ percent: 0 });
    expect(toStatusBody(job({ processedOn: STARTED, progress: { percent: 10 } }), 'active').progress).toEqual({ percent: 10 });
    expect(toStatusBody(job({ processedOn: STARTED, progress: { percent: 10, message: '' } }), 'active').progress).toEqual({ percent: 10 });
  });

  it('counts attempts as the larger of started and made', () => {
    expect(toStatusBody(job({ attemptsStarted: 2, attemptsMade: 1 }), 'active').attempts).toBe(2);
    expect(toStatusBody(job({ attemptsStarted: undefined, attemptsMade: 3 }), 'active').attempts).toBe(3);
    expect(toStatusBody(job({ attemptsStarted: undefined, attemptsMade: undefined }), 'waiting').attempts).toBe(0);
  });

  it('shows a completed job with its result and timings, without queue fields', () => {
    const body = toStatusBody(
      job({ attemptsStarted: 1, attemptsMade: 1, processedOn: STARTED, finishedOn: FINISHED, returnvalue: RESULT }),
      'completed',
      { position: 2, estimatedWaitSeconds: 4 },
    );
    expect(body).toEqual({
      id: ID,
      status: 'completed',
      pipeline: 'edit',
      priority: 'high',
      attempts: 1,
      createdAt: '2024-01-02T03:04:05.600Z',
      startedAt: '2024-01-02T03:04:07.600Z',
      finishedAt: '2024-01-02T03:04:08.412Z',
      durationMs: 812,
      result: {
        url: `/v1/jobs/${ID}/result`,
        contentType: 'image/webp',
        width: 512,
        height: 384,
        bytes: 20411,
        sha256: 'ab'.repeat(32),
      },
      links: LINKS,
    });
    expect(JSON.stringify(body)).not.toContain('outputs/');
  });

  it('shows a failed job with its error parsed from failedReason', () => {
    const body = toStatusBody(
      job({
        attemptsStarted: 1,
        attemptsMade: 1,
        processedOn: STARTED,
        finishedOn: FINISHED,
        failedReason: formatFailure('invalid_input', 'the image could not be decoded'),
      }),
      'failed',
    );
    expect(body).toEqual({
      id: ID,
      status: 'failed',
      pipeline: 'edit',
      priority: 'high',
      attempts: 1,
      createdAt: '2024-01-02T03:04:05.600Z',
      startedAt: '2024-01-02T03:04:07.600Z',
      finishedAt: '2024-01-02T03:04:08.412Z',
      durationMs: 812,
      error: { code: 'invalid_input', message: 'the image could not be decoded' },
      links: LINKS,
    });
  });

  it('shows a job that failed before it started (expired) without start or duration', () => {
    const body = toStatusBody(job({ finishedOn: FINISHED, failedReason: formatFailure('expired', 'waited too long') }), 'failed');
    expect(body.status).toBe('failed');
    expect(body.error).toEqual({ code: 'expired', message: 'waited too long' });
    expect(body.finishedAt).toBe('2024-01-02T03:04:08.412Z');
    expect([body.startedAt, body.durationMs]).toEqual([undefined, undefined]);
  });

  it('hides an unclassified failure behind pipeline_error', () => {
    const body = toStatusBody(job({ finishedOn: FINISHED, failedReason: 'TypeError: x is undefined at /srv/app/edit.ts:12' }), 'failed');
    expect(body.error).toEqual({ code: 'pipeline_error', message: 'the pipeline failed' });
  });

  it('shows a job stopped on request as cancelled, without an error', () => {
    const body = toStatusBody(job({ processedOn: STARTED, finishedOn: FINISHED, failedReason: CANCELLED_REASON }), 'failed');
    expect(body.status).toBe('cancelled');
    expect(body.error).toBeUndefined();
    expect(body.result).toBeUndefined();
    expect([body.finishedAt, body.durationMs]).toEqual(['2024-01-02T03:04:08.412Z', 812]);
  });

  it('never reports a negative duration', () => {
    expect(toStatusBody(job({ processedOn: FINISHED + 5, finishedOn: FINISHED, returnvalue: RESULT }), 'completed').durationMs).toBe(0);
  });
});

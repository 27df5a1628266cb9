import { CONTENT_TYPES, FILE_EXTENSIONS, type JobData, type JobResultData } from '@darkroom/contracts';
import {
  BackendUnavailableError,
  type BlobStore,
  blobKeys,
  CANCELLED_REASON,
  type Config,
  coerceError,
  DarkroomJobError,
  formatFailure,
  InvalidInputError,
  JobTimeoutError,
  type Logger,
  recordCompletion,
  sysKeys,
} from '@darkroom/core';
import type { Pipeline } from '@darkroom/pipelines';
import { type Job, UnrecoverableError, WaitingError } from 'bullmq';
import type { Redis } from 'ioredis';
import type { WorkerMetrics } from './metrics.ts';

/** Why a running pipeline was told to stop. */
export type AbortCause = 'timeout' | 'cancel' | 'shutdown';

export class AbortReason extends Error {
  readonly kind: AbortCause;
  constructor(cause: AbortCause) {
    super(`aborted: ${cause}`);
    this.name = 'AbortReason';
    this.kind = cause;
  }
}

export interface ProcessorDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  blobs: BlobStore;
  /** Aborted with AbortReason('shutdown') when the grace period is over. */
  shutdownSignal: AbortSignal;
  metrics: WorkerMetrics;
}

const PROGRESS_MIN_INTERVAL_MS = 50;
/** How often a running job looks for a cancel request it may have missed on the channel. */
const CANCEL_POLL_MS = 1000;

/**
 * Runs one attempt of a job: parses params, runs the pipeline under the job's time limit with an
 * abort signal, writes the output atomically (named by job id, so a re-run replaces it), and
 * returns the output's metadata as the job's return value.
 */
export function createProcessor(pipeline: Pipeline, deps: ProcessorDeps) {
  const { config, blobs, logger } = deps;
  return async (job: Job<JobData, JobResultData>, token?: string, cancelSignal?: AbortSignal): Promise<JobResultData> => {
    const log = logger.child({ jobId: job.id, pipeline: pipeline.spec.name, station: job.data.station });
    const started = Date.now();
    const name = pipeline.spec.name;
    deps.metrics.busy.inc({ pipeline: name });
    if ((job.attemptsStarted ?? 1) <= 1) deps.metrics.waitSeconds.observe({ pipeline: name }, Math.max(0, started - job.timestamp) / 1000);
    const timeoutMs = job.data.timeoutMs || config.limits.jobTimeoutMs;
    const local = new AbortController();
    const timer = setTimeout(() => local.abort(new AbortReason('timeout')), timeoutMs);
    const onCancel = () => local.abort(new AbortReason('cancel'));
    const onShutdown = () => local.abort(new AbortReason('shutdown'));
    cancelSignal?.addEventListener('abort', onCancel, { once: true });
    deps.shutdownSignal.addEventListener('abort', onShutdown, { once: true });
    if (deps.shutdownSignal.aborted) onShutdown();

    const cancelKey = sysKeys(config.prefix).cancelRequested(job.id!);
    const cancelPoll = setInterval(() => {
      void deps.redis.exists(cancelKey).then(
        (n) => n && onCancel(),
        () => {},
      );
    }, CANCEL_POLL_MS);

    let lastProgress = 0;
    const reportProgress = async (percent: number, message?: string) => {
      const now = Date.now();
      if (percent < 100 && now - lastProgress < PROGRESS_MIN_INTERVAL_MS) return;
      lastProgress = now;
      const p = Math.max(0, Math.min(100, Math.round(percent)));
      await job.updateProgress(message ? { percent: p, message } : { percent: p });
    };

    try {
      // Never start a job that waited past its time-to-live (maintenance may not have expired it yet).
      const ttlMs = config.limits.jobTtlMs;
      if ((job.attemptsStarted ?? 1) <= 1 && Date.now() - job.timestamp > ttlMs) {
        throw new DarkroomJobError('expired', `waited past its queue time-to-live of ${Math.round(ttlMs / 1000)} s`, false);
      }
      if (await deps.redis.exists(cancelKey)) onCancel();
      local.signal.throwIfAborted();
      const parsed = pipeline.spec.params.safeParse(job.data.params ?? {});
      if (!parsed.success) throw new InvalidInputError(`params do not match the ${pipeline.spec.name} schema`);
      let input = null;
      if (pipeline.spec.acceptsImage && (job.data.input || !pipeline.spec.imageOptional)) {
        if (!job.data.input) throw new InvalidInputError('the job has no input image');
        if (!(await blobs.exists(job.data.input.key))) throw new InvalidInputError('the input image is no longer stored');
        input = { path: blobs.localPath(job.data.input.key), ref: job.data.input };
      }
      log.info({ attempt: job.attemptsStarted }, 'job started');
      const out = await pipeline.run(input, parsed.data, {
        signal: local.signal,
        reportProgress,
        logger: log,
        limits: { maxImagePixels: config.limits.maxImagePixels },
      });
      local.signal.throwIfAborted();
      const key = blobKeys.output(job.id!, FILE_EXTENSIONS[out.format]);
      let stored: { bytes: number; sha256: string };
      try {
        stored = await blobs.put(key, out.data);
      } catch (err) {
        // Any system call failing here (full, read-only, missing or replaced directory) is the data volume's trouble.
        const e = err as NodeJS.ErrnoException;
        if (e.syscall && e.code) throw new BackendUnavailableError(`the result could not be stored (${e.code})`, { cause: err });
        throw err;
      }
      const durationMs = Date.now() - started;
      await recordCompletion(deps.redis, config.prefix, pipeline.spec.name, durationMs).catch(() => {});
      log.debug({ durationMs, bytes: stored.bytes, width: out.width, height: out.height }, 'pipeline finished');
      deps.metrics.runSeconds.observe({ pipeline: name, outcome: 'completed' }, durationMs / 1000);
      deps.metrics.finished.inc({ pipeline: name, outcome: 'completed' });
      return {
        key,
        bytes: stored.bytes,
        sha256: stored.sha256,
        format: out.format,
        contentType: CONTENT_TYPES[out.format],
        width: out.width,
        height: out.height,
      };
    } catch (thrown) {
      const err = await toBullError(thrown, local.signal, job, token, timeoutMs, log);
      if (!(err instanceof WaitingError)) {
        const final = err instanceof UnrecoverableError || (job.attemptsMade ?? 0) + 1 >= (job.opts.attempts ?? 1);
        const outcome = !final ? 'retry' : err.message.startsWith('[cancelled]') ? 'cancelled' : 'failed';
        deps.metrics.runSeconds.observe({ pipeline: name, outcome }, (Date.now() - started) / 1000);
        deps.metrics.finished.inc({ pipeline: name, outcome });
      }
      throw err;
    } finally {
      clearTimeout(timer);
      clearInterval(cancelPoll);
      deps.metrics.busy.dec({ pipeline: name });
      cancelSignal?.removeEventListener('abort', onCancel);
      deps.shutdownSignal.removeEventListener('abort', onShutdown);
    }
  };
}

/** Maps what a pipeline threw to what BullMQ should do with the job. */
async function toBullError(
  thrown: unknown,
  signal: AbortSignal,
  job: Job<JobData, JobResultData>,
  token: string | undefined,
  timeoutMs: number,
  log: Logger,
): Promise<Error> {
  const reason = signal.aborted ? signal.reason : undefined;
  if (reason instanceof AbortReason) {
    switch (reason.kind) {
      case 'timeout': {
        const e = new JobTimeoutError(timeoutMs);
        log.warn({ timeoutMs }, 'job timed out');
        return new UnrecoverableError(formatFailure(e.code, e.message));
      }
      case 'cancel':
        log.debug('pipeline aborted on cancel');
        return new UnrecoverableError(CANCELLED_REASON);
      case 'shutdown':
        // Hand the job back to the queue, at the front of its priority, without spending an attempt.
        log.warn('worker shutting down: job handed back to the queue');
        await job.moveToWait(token);
        return new WaitingError();
    }
  }
  const err = coerceError(thrown);
  if (err instanceof DarkroomJobError) {
    log.warn({ code: err.code, err: err.message }, err.retryable ? 'job attempt failed' : 'job failed');
    const message = formatFailure(err.code, err.message);
    return err.retryable ? new Error(message) : new UnrecoverableError(message);
  }
  // Unexpected: logged in full here; stations see only a generic message.
  log.error({ err }, 'pipeline error');
  return new Error(formatFailure('pipeline_error', 'the pipeline failed'));
}

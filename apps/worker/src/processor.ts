import {
  BackendUnavailableError,
  BackendUnhealthyError,
  CONTENT_TYPES,
  coerceError,
  DarkroomJobError,
  FILE_EXTENSIONS,
  formatFailure,
  InvalidInputError,
  type JobData,
  type JobResultData,
  JobTimeoutError,
} from '@darkroom/contracts';
import {
  BlobNotFound,
  type BlobStore,
  BlobStoreUnavailable,
  blobKeys,
  CANCELLED_REASON,
  type DeviceSlots,
  type LocalBlob,
  recordCompletion,
  sysKeys,
} from '@darkroom/jobs';
import { finishOutput, type Pipeline, type PipelineResult } from '@darkroom/pipelines';
import type { Config, Logger } from '@darkroom/runtime';
import { type Job, UnrecoverableError, WaitingError } from 'bullmq';
import type { Redis } from 'ioredis';
import type { WorkerMetrics } from './metrics.ts';
import type { AttemptUsage, UsageMeter } from './usage.ts';

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

/** What the processor asks of the worker's cancel subscription (see cancel-watch.ts). */
export interface CancelSource {
  heard(id: string): boolean;
  covers(job: { processedOn?: number | undefined; attemptsStarted?: number | undefined }): boolean;
}

export interface ProcessorDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  blobs: BlobStore;
  /** Aborted with AbortReason('shutdown') when the grace period is over. */
  shutdownSignal: AbortSignal;
  /** Aborted when shutdown begins: a job still waiting for a device slot is handed back unstarted. */
  drainSignal: AbortSignal;
  /** This pipeline's device slots on this worker. */
  slots: DeviceSlots;
  cancels: CancelSource;
  metrics: WorkerMetrics;
  /** Takes each attempt's GPU time for the station's usage. */
  usage?: UsageMeter;
  /** The pipeline threw BackendUnhealthyError: this worker should stop taking its jobs until its probe passes. */
  onUnhealthy?: () => void;
  /** A job's model took this long to load (0: it was loaded already). */
  onModelLoad?: (model: string, ms: number) => void;
}

const PROGRESS_MIN_INTERVAL_MS = 50;
/** How often a job looks for a cancel request it may have missed on the channel (only when it may have). */
const CANCEL_POLL_MS = 1000;
/** The most a finish step waits for the next job to start its compute. */
const HANDOVER_MAX_MS = 200;

/**
 * Runs one attempt of a job in three phases:
 *  1. before the device: checks (time-to-live, cancel, params, input) with the device slot the
 *     worker took the job with, or else waiting for one; a shutdown that begins before the
 *     compute hands the job back unstarted;
 *  2. compute, holding the slot: the pipeline's run, under the job's time limit (which starts here);
 *  3. finish, slot released so the next job's compute can start: the pipeline's finish step (if it
 *     split its work), the output written atomically (named by job id, so a re-run replaces it),
 *     the run recorded. The output's metadata is the job's return value.
 * Cancel aborts any phase; the time limit covers phases 2 and 3.
 */
export function createProcessor(pipeline: Pipeline, deps: ProcessorDeps) {
  const { config, blobs, logger, slots, cancels } = deps;
  const name = pipeline.spec.name;
  return async (job: Job<JobData, JobResultData>, token?: string, cancelSignal?: AbortSignal): Promise<JobResultData> => {
    const log = logger.child({ jobId: job.id, pipeline: name, station: job.data.station });
    const firstAttempt = (job.attemptsStarted ?? 1) <= 1;
    const timeoutMs = job.data.timeoutMs || config.limits.jobTimeoutMs;
    const local = new AbortController();
    const onCancel = () => local.abort(new AbortReason('cancel'));
    const onShutdown = () => local.abort(new AbortReason('shutdown'));
    cancelSignal?.addEventListener('abort', onCancel, { once: true });
    deps.shutdownSignal.addEventListener('abort', onShutdown, { once: true });
    deps.drainSignal.addEventListener('abort', onShutdown, { once: true });
    if (deps.shutdownSignal.aborted || deps.drainSignal.aborted) onShutdown();

    const cancelKey = sysKeys(config.prefix).cancelRequested(job.id!);
    const checkCancelFlag = async () => {
      if (cancels.heard(job.id!)) onCancel();
      else if (!cancels.covers(job) && (await deps.redis.exists(cancelKey))) onCancel();
    };
    const cancelPoll = setInterval(() => void checkCancelFlag().catch(() => {}), CANCEL_POLL_MS);

    let lastProgress = 0;
    // Sent, not awaited: a pipeline must not hold the device for a Redis round trip per step. The
    // updates leave in order on the worker's one connection, ahead of the job's completion.
    const reportProgress = async (percent: number, message?: string) => {
      const now = Date.now();
      if (percent < 100 && now - lastProgress < PROGRESS_MIN_INTERVAL_MS) return;
      lastProgress = now;
      const p = Math.max(0, Math.min(100, Math.round(percent)));
      job.updateProgress(message ? { percent: p, message } : { percent: p }).catch((err: Error) => {
        log.debug({ err: err.message }, 'progress not recorded');
      });
    };

    // Whether this attempt had to load its model first: on the job as soon as known, so a station sees it while it runs.
    // It also counts in the station's usage, as part of the attempt's device time.
    let modelLoadMs = 0;
    let modelLoadReported = false;
    const reportModelLoad = (ms: number) => {
      if (modelLoadReported || !Number.isFinite(ms)) return;
      modelLoadReported = true;
      modelLoadMs = Math.max(0, Math.round(ms));
      job.updateData({ ...job.data, run: { coldStart: modelLoadMs > 0, modelLoadMs } }).catch((err: Error) => {
        log.debug({ err: err.message }, 'model load not recorded');
      });
      if (job.data.model !== undefined) deps.onModelLoad?.(job.data.model, modelLoadMs);
    };

    let started: number | undefined;
    let computeEnded: number | undefined;
    // Device time counts the compute phase only: from taking the slot to the pipeline's run
    // returning or throwing. Waiting for the slot and the finish step (encode, store) are off the device.
    const attemptUsage = (): AttemptUsage | undefined =>
      started === undefined
        ? undefined
        : {
            deviceMs: Math.max(0, (computeEnded ?? Date.now()) - started),
            modelLoadMs,
            queuedMs: firstAttempt ? Math.max(0, (job.processedOn ?? started) - job.timestamp) : 0,
          };
    let timer: NodeJS.Timeout | undefined;
    // The slot the worker took this job with (packages/jobs/src/device-worker.ts); a job that came without one waits below.
    let lease = slots.claim(job.id!);
    if (lease) deps.metrics.busy.inc({ pipeline: name });
    const releaseSlot = () => {
      if (!lease) return;
      lease.release();
      lease = undefined;
      deps.metrics.busy.dec({ pipeline: name });
    };
    let finishing = false;
    let localInput: LocalBlob | undefined;
    try {
      // Never start a job that waited past its time-to-live (maintenance may not have expired it yet).
      const ttlMs = job.data.ttlMs || config.limits.jobTtlMs;
      const expired = () => {
        if (firstAttempt && Date.now() - job.timestamp > ttlMs) {
          throw new DarkroomJobError('expired', `waited past its queue time-to-live of ${Math.round(ttlMs / 1000)} s`, false);
        }
      };
      expired();
      // A cancel that came before this worker could hear it wins before any work.
      await checkCancelFlag();
      local.signal.throwIfAborted();
      const parsed = pipeline.spec.params.safeParse(job.data.params ?? {});
      if (!parsed.success) throw new InvalidInputError(`params do not match the ${name} schema`);
      let input = null;
      if (pipeline.spec.acceptsImage && (job.data.input || !pipeline.spec.imageOptional)) {
        if (!job.data.input) throw new InvalidInputError('the job has no input image');
        try {
          localInput = await blobs.fetch(job.data.input.key);
        } catch (err) {
          if (err instanceof BlobNotFound) throw new InvalidInputError('the input image is no longer stored');
          throw storeTrouble('the input image could not be read', err);
        }
        input = { path: localInput.path, ref: job.data.input };
      }

      if (!lease) {
        deps.metrics.waiting.inc({ pipeline: name });
        try {
          lease = await slots.acquire(local.signal);
        } finally {
          deps.metrics.waiting.dec({ pipeline: name });
        }
        deps.metrics.busy.inc({ pipeline: name });
      }
      deps.drainSignal.removeEventListener('abort', onShutdown);
      lease.started();
      started = Date.now();
      expired();
      if (firstAttempt) deps.metrics.waitSeconds.observe({ pipeline: name }, Math.max(0, started - job.timestamp) / 1000);
      timer = setTimeout(() => local.abort(new AbortReason('timeout')), timeoutMs);
      log.info({ attempt: job.attemptsStarted }, 'job started');

      let result: PipelineResult;
      try {
        result = await pipeline.run(input, parsed.data, {
          signal: local.signal,
          reportProgress,
          logger: log,
          limits: { maxImagePixels: config.limits.maxImagePixels },
          job: { id: job.id!, attempt: job.attemptsStarted ?? 1 },
          reportModelLoad,
        });
      } finally {
        computeEnded = Date.now();
        releaseSlot();
      }
      log.debug({ computeMs: Date.now() - started }, 'compute finished: device slot released');
      local.signal.throwIfAborted();
      finishing = true;
      deps.metrics.finishing.inc({ pipeline: name });
      // Let the next job reach the device before this one's finish step takes the CPU.
      await slots.handedOver(HANDOVER_MAX_MS);
      const out = await finishOutput(result);
      local.signal.throwIfAborted();
      const key = blobKeys.output(job.id!, FILE_EXTENSIONS[out.format]);
      let stored: { bytes: number; sha256: string };
      try {
        stored = await blobs.put(key, out.data);
      } catch (err) {
        throw storeTrouble('the result could not be stored', err);
      }
      // A worker killed between writing and renaming an earlier attempt's result left its temporary file.
      if ((job.attemptsStarted ?? 1) > 1) {
        const removed = await blobs.removeTemps(key).catch(() => 0);
        if (removed > 0) log.info({ removed }, 'removed temporary files of an interrupted attempt');
      }
      const durationMs = Date.now() - started;
      await recordCompletion(deps.redis, config.prefix, name, durationMs).catch(() => {});
      log.debug({ durationMs, bytes: stored.bytes, width: out.width, height: out.height }, 'pipeline finished');
      deps.metrics.runSeconds.observe({ pipeline: name, outcome: 'completed' }, durationMs / 1000);
      deps.metrics.finished.inc({ pipeline: name, outcome: 'completed' });
      const used = attemptUsage();
      if (used) deps.usage?.attempt(job.id!, used);
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
      const err = await toBullError(thrown, local.signal, job, token, timeoutMs, started === undefined, log, deps.onUnhealthy);
      const used = attemptUsage();
      if (used) deps.usage?.attempt(job.id!, used);
      // Handed back to the queue: BullMQ reports no outcome for it, so its device time is recorded here.
      if (used && err instanceof WaitingError) void deps.usage?.record(job, false);
      if (!(err instanceof WaitingError)) {
        const final = err instanceof UnrecoverableError || (job.attemptsMade ?? 0) + 1 >= (job.opts.attempts ?? 1);
        const outcome = !final ? 'retry' : err.message.startsWith('[cancelled]') ? 'cancelled' : 'failed';
        deps.metrics.runSeconds.observe({ pipeline: name, outcome }, started === undefined ? 0 : (Date.now() - started) / 1000);
        deps.metrics.finished.inc({ pipeline: name, outcome });
      }
      throw err;
    } finally {
      void localInput?.release().catch(() => {});
      releaseSlot();
      if (finishing) deps.metrics.finishing.dec({ pipeline: name });
      clearTimeout(timer);
      clearInterval(cancelPoll);
      cancelSignal?.removeEventListener('abort', onCancel);
      deps.shutdownSignal.removeEventListener('abort', onShutdown);
      deps.drainSignal.removeEventListener('abort', onShutdown);
    }
  };
}

/**
 * The blob store's trouble as a retryable failure: any system call failing (full, read-only,
 * missing or replaced directory) or the object store not answering. Anything else as it is.
 */
function storeTrouble(what: string, err: unknown): unknown {
  if (err instanceof BlobStoreUnavailable) return new BackendUnavailableError(`${what} (object store unavailable)`, { cause: err });
  const e = err as NodeJS.ErrnoException;
  if (e.syscall && e.code) return new BackendUnavailableError(`${what} (${e.code})`, { cause: err });
  return err;
}

/** Maps what a pipeline threw to what BullMQ should do with the job. */
async function toBullError(
  thrown: unknown,
  signal: AbortSignal,
  job: Job<JobData, JobResultData>,
  token: string | undefined,
  timeoutMs: number,
  unstarted: boolean,
  log: Logger,
  onUnhealthy?: () => void,
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
        if (unstarted) log.info('worker shutting down: job waiting for a device slot handed back to the queue');
        else log.warn('worker shutting down: job handed back to the queue');
        await job.moveToWait(token);
        return new WaitingError();
    }
  }
  const err = coerceError(thrown);
  if (err instanceof BackendUnhealthyError) {
    // Not the job's fault: back to the queue for a healthy worker, without spending an attempt.
    log.warn({ err: err.message }, 'backend unhealthy: job handed back to the queue');
    onUnhealthy?.();
    await job.moveToWait(token);
    return new WaitingError();
  }
  if (err instanceof DarkroomJobError) {
    log.warn({ code: err.code, err: err.message }, err.retryable ? 'job attempt failed' : 'job failed');
    const message = formatFailure(err.code, err.message);
    return err.retryable ? new Error(message) : new UnrecoverableError(message);
  }
  // Unexpected: logged in full here; stations see only a generic message.
  log.error({ err }, 'pipeline error');
  return new Error(formatFailure('pipeline_error', 'the pipeline failed'));
}

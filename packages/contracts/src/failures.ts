import { FAILURE_CODES, type FailureCode } from './jobs.ts';

/*
 * Errors a pipeline or the worker throws. The worker maps them to BullMQ: `retryable: false`
 * becomes an UnrecoverableError (fail at once), the rest retry with backoff. The failure code
 * travels in the job's failedReason as a "[code] message" prefix, read back by `parseFailure`.
 */
export class DarkroomJobError extends Error {
  readonly code: FailureCode;
  readonly retryable: boolean;
  constructor(code: FailureCode, message: string, retryable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DarkroomJobError';
    this.code = code;
    this.retryable = retryable;
  }
}

/** The input cannot be processed as asked (bad pixels, params that do not fit the image). Never retried. */
export class InvalidInputError extends DarkroomJobError {
  constructor(message: string, options?: ErrorOptions) {
    super('invalid_input', message, false, options);
    this.name = 'InvalidInputError';
  }
}

/** A backend (model server, disk) is unavailable for now; retried, then `backend_unavailable`. */
export class BackendUnavailableError extends DarkroomJobError {
  constructor(message: string, options?: ErrorOptions) {
    super('backend_unavailable', message, true, options);
    this.name = 'BackendUnavailableError';
  }
}

/**
 * This worker's backend is unhealthy (its GPU keeps failing): the job goes back to the queue
 * for another worker without spending an attempt, and this worker stops taking the pipeline's
 * jobs until the backend's health probe passes.
 */
export class BackendUnhealthyError extends DarkroomJobError {
  constructor(message: string, options?: ErrorOptions) {
    super('backend_unavailable', message, true, options);
    this.name = 'BackendUnhealthyError';
  }
}

/** The job ran past its execution limit. Not retried: it would run out of time again. */
export class JobTimeoutError extends DarkroomJobError {
  constructor(limitMs: number) {
    super('timeout', `ran past its execution limit of ${Math.round(limitMs / 1000)} s`, false);
    this.name = 'JobTimeoutError';
  }
}

export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(typeof err === 'string' ? err : JSON.stringify(err));
}

const FAILURE_PREFIX = /^\[([a-z_]+)\] ([\s\S]*)$/;

export function formatFailure(code: FailureCode, message: string): string {
  return `[${code}] ${message}`;
}

export function parseFailure(failedReason: string | undefined): { code: FailureCode; message: string } {
  const m = failedReason ? FAILURE_PREFIX.exec(failedReason) : null;
  // Only a known code counts: any other "[word] …" text is an unexpected error and stays opaque.
  if (m && (FAILURE_CODES as readonly string[]).includes(m[1]!)) return { code: m[1] as FailureCode, message: m[2] ?? '' };
  // Anything else (an unexpected exception, a stalled-job message from BullMQ) stays opaque to stations.
  if (failedReason && /stalled/i.test(failedReason)) {
    return { code: 'worker_lost', message: 'the job was lost by its workers more times than allowed' };
  }
  return { code: 'pipeline_error', message: 'the pipeline failed' };
}

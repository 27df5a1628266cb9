import type { FieldError } from '@darkroom/contracts';

/*
 * Why the job system said no. Domain code throws these and never names an HTTP status: the api
 * answers each with the problem its one error table gives it.
 */

export abstract class JobsError extends Error {
  /** When the same request may succeed again, if that is known (seconds). */
  readonly retryAfterSeconds: number | undefined;

  constructor(message: string, opts: { retryAfterSeconds?: number } = {}) {
    super(message);
    this.name = new.target.name;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}

/** The submit's fields are wrong: every problem at once, each at its dotted path. */
export class InvalidSubmit extends JobsError {
  readonly errors: FieldError[] | undefined;
  constructor(message: string, errors?: FieldError[]) {
    super(message);
    this.errors = errors;
  }
}

export class UnknownPipeline extends JobsError {
  constructor(name: string) {
    super(`unknown pipeline "${name.slice(0, 64)}"; GET /v1/pipelines lists them`);
  }
}

/** A priority above the station's highest; never silently lowered. */
export class PriorityNotAllowed extends JobsError {}

/** The image is larger than the limit on image bytes. */
export class ImageTooLarge extends JobsError {
  constructor(maxBytes: number) {
    super(`the image is larger than the limit of ${maxBytes} bytes`);
  }
}

/** The bytes are not an image format the server accepts (judged by content). */
export class UnsupportedImage extends JobsError {}

/** An accepted format whose header cannot be read, is over a limit, or is visibly incomplete. */
export class InvalidImage extends JobsError {}

/** No such job, or not one the viewer may see. */
export class JobNotFound extends JobsError {
  constructor(message = 'no such job') {
    super(message);
  }
}

/** The job existed and was removed after its retention time. */
export class JobExpired extends JobsError {
  constructor(message = 'the job has been removed after its retention time') {
    super(message);
  }
}

/** The pipeline's queue holds its limit of waiting jobs. */
export class QueueFull extends JobsError {}

/** The station holds its limit of waiting + active jobs, or is over its request budget. */
export class StationBusy extends JobsError {}

/** The station used its device time for the day (`gpuSecondsPerDay`); it may submit again after UTC midnight. */
export class BudgetExceeded extends JobsError {}

/** The Idempotency-Key names a different request, or its first request is still being answered. */
export class IdempotencyConflict extends JobsError {}

/** The job cannot do what was asked in its current state (cancel a final job, a job changing state). */
export class JobStateConflict extends JobsError {}

/** The job has not finished: its result is not there yet. */
export class ResultNotReady extends JobsError {}

/** The job finished without a result (failed or cancelled). */
export class NoResult extends JobsError {}

/** An image could not be written to (or a result read from) the blob store right now. */
export class StoreUnavailable extends JobsError {
  constructor(message = 'the image could not be stored right now; try again later') {
    super(message, { retryAfterSeconds: 5 });
  }
}

/**
 * The job's write did not reach the replicas asked for (DARKROOM_REDIS_MIN_REPLICAS) in time: it
 * was withdrawn, and nothing of the request was kept.
 */
export class ReplicasUnavailable extends JobsError {
  constructor(message = 'the job could not be stored durably right now; it was not queued; try again shortly') {
    super(message, { retryAfterSeconds: 2 });
  }
}

/*
 * The blob store's own answers. Never shown to a station as they are: the caller turns them into
 * one of the errors above (StoreUnavailable, JobExpired) or, in a worker, a retryable failure.
 */

/** No blob under the key. */
export class BlobNotFound extends Error {
  constructor(key: string) {
    super(`no blob under ${key}`);
    this.name = 'BlobNotFound';
  }
}

/** The store did not answer, refused, or is full: the same request may succeed later. */
export class BlobStoreUnavailable extends Error {
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'BlobStoreUnavailable';
  }
}

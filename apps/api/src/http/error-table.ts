import type { ProblemCode } from '@darkroom/contracts';
import {
  IdempotencyConflict,
  ImageTooLarge,
  InvalidImage,
  InvalidSubmit,
  JobExpired,
  JobNotFound,
  JobStateConflict,
  type JobsError,
  NoResult,
  PriorityNotAllowed,
  QueueFull,
  ResultNotReady,
  StationBusy,
  StoreUnavailable,
  UnknownPipeline,
  UnsupportedImage,
} from '@darkroom/jobs';
import { HttpError } from './problem.ts';

/*
 * The one place a domain error gets its HTTP status: domain code throws named errors and never
 * names a status. Each row is the status and problem code stations see (docs/contract.md,
 * "Errors"); a Retry-After goes out whenever the error knows one.
 */
type ErrorClass = abstract new (...args: never[]) => JobsError;

const TABLE: [ErrorClass, number, ProblemCode][] = [
  [InvalidSubmit, 400, 'invalid_request'],
  [PriorityNotAllowed, 403, 'forbidden'],
  [UnknownPipeline, 404, 'not_found'],
  [JobNotFound, 404, 'not_found'],
  [IdempotencyConflict, 409, 'conflict'],
  [JobStateConflict, 409, 'conflict'],
  [ResultNotReady, 409, 'not_ready'],
  [NoResult, 409, 'no_result'],
  [JobExpired, 410, 'expired'],
  [ImageTooLarge, 413, 'payload_too_large'],
  [UnsupportedImage, 415, 'unsupported_media_type'],
  [InvalidImage, 422, 'invalid_image'],
  [QueueFull, 429, 'queue_full'],
  [StationBusy, 429, 'rate_limited'],
  [StoreUnavailable, 503, 'unavailable'],
];

const BY_CLASS = new Map<ErrorClass, [number, ProblemCode]>(TABLE.map(([cls, status, code]) => [cls, [status, code]]));

/** The problem a domain error is answered with; undefined for anything the table does not name. */
export function problemOf(err: unknown): HttpError | undefined {
  if (!(err instanceof Error)) return undefined;
  const row = BY_CLASS.get(err.constructor as ErrorClass);
  if (!row) return undefined;
  const e = err as JobsError & { errors?: InvalidSubmit['errors'] };
  return new HttpError(row[0], row[1], e.message, {
    ...(e.errors ? { errors: e.errors } : {}),
    ...(e.retryAfterSeconds !== undefined ? { headers: { 'Retry-After': String(e.retryAfterSeconds) } } : {}),
  });
}

/** Every error class the table answers, for the test that each has a row. */
export const TABLE_CLASSES: readonly ErrorClass[] = TABLE.map(([cls]) => cls);

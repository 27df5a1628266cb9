import type { ProblemCode } from '@darkroom/contracts';
import {
  BudgetExceeded,
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
  ReplicasUnavailable,
  ResultNotReady,
  StationBusy,
  StoreUnavailable,
  UnknownPipeline,
  UnsupportedImage,
} from '@darkroom/jobs';

/*
 * The one place an error's HTTP status is chosen. Every refusal the api answers is one of these
 * problems, with its status and the stable code stations read (docs/contract.md, "Errors").
 * Domain code throws named errors and never names a status: DOMAIN_ERRORS says which problem
 * each one is. The HTTP layer names a problem by its kind (`new HttpError('unauthorized', …)`).
 */
export const PROBLEMS = {
  invalid_request: [400, 'invalid_request'],
  unauthorized: [401, 'unauthorized'],
  forbidden: [403, 'forbidden'],
  not_found: [404, 'not_found'],
  request_timeout: [408, 'invalid_request'],
  conflict: [409, 'conflict'],
  not_ready: [409, 'not_ready'],
  no_result: [409, 'no_result'],
  expired: [410, 'expired'],
  precondition_failed: [412, 'invalid_request'],
  payload_too_large: [413, 'payload_too_large'],
  unsupported_media_type: [415, 'unsupported_media_type'],
  range_not_satisfiable: [416, 'invalid_request'],
  expectation_failed: [417, 'invalid_request'],
  invalid_image: [422, 'invalid_image'],
  queue_full: [429, 'queue_full'],
  rate_limited: [429, 'rate_limited'],
  budget_exceeded: [429, 'budget_exceeded'],
  headers_too_large: [431, 'invalid_request'],
  internal: [500, 'internal'],
  unavailable: [503, 'unavailable'],
} as const satisfies Record<string, readonly [number, ProblemCode]>;

export type ProblemKind = keyof typeof PROBLEMS;

type ErrorClass = abstract new (...args: never[]) => JobsError;

export const DOMAIN_ERRORS: readonly (readonly [ErrorClass, ProblemKind])[] = [
  [InvalidSubmit, 'invalid_request'],
  [PriorityNotAllowed, 'forbidden'],
  [UnknownPipeline, 'not_found'],
  [JobNotFound, 'not_found'],
  [IdempotencyConflict, 'conflict'],
  [JobStateConflict, 'conflict'],
  [ResultNotReady, 'not_ready'],
  [NoResult, 'no_result'],
  [JobExpired, 'expired'],
  [ImageTooLarge, 'payload_too_large'],
  [UnsupportedImage, 'unsupported_media_type'],
  [InvalidImage, 'invalid_image'],
  [QueueFull, 'queue_full'],
  [StationBusy, 'rate_limited'],
  [BudgetExceeded, 'budget_exceeded'],
  [StoreUnavailable, 'unavailable'],
  [ReplicasUnavailable, 'unavailable'],
];

const KIND_OF = new Map<ErrorClass, ProblemKind>(DOMAIN_ERRORS);

/** A 4xx that a library (body parser, static files, router) put on its error, as one of ours. */
export function libraryProblemKind(status: number): ProblemKind {
  return LIBRARY_STATUSES[status] ?? 'invalid_request';
}

const LIBRARY_STATUSES: Partial<Record<number, ProblemKind>> = {
  404: 'not_found',
  412: 'precondition_failed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  416: 'range_not_satisfiable',
};

/** The problem a domain error is answered with; undefined for anything the table does not name. */
export function domainProblemKind(err: unknown): ProblemKind | undefined {
  return err instanceof Error ? KIND_OF.get(err.constructor as ErrorClass) : undefined;
}

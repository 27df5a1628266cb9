import { z } from 'zod';

/** Stable machine-readable codes of problem+json bodies (docs/contract.md, "Errors"). */
export const PROBLEM_CODES = [
  'invalid_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'payload_too_large',
  'unsupported_media_type',
  'invalid_image',
  'queue_full',
  'rate_limited',
  'budget_exceeded',
  'not_ready',
  'no_result',
  'expired',
  'unavailable',
  'internal',
] as const;
export const ProblemCode = z.enum(PROBLEM_CODES);
export type ProblemCode = z.infer<typeof ProblemCode>;

export const FieldError = z.object({
  path: z.string(),
  message: z.string(),
  // Where the path alone does not say what went wrong (why an `imageUrl` could not be used).
  code: z.string().optional().meta({
    description:
      'A stable reason, on some errors only: for `imageUrl` in a `422`, one of `too_big`, `not_an_image`, `unreachable`, `refused`.',
  }),
});
export type FieldError = z.infer<typeof FieldError>;

export const Problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: ProblemCode,
  errors: z.array(FieldError).optional(),
});
export type Problem = z.infer<typeof Problem>;

/** Human titles of the problem codes, one per code (the `title` of a problem body). */
export const PROBLEM_TITLES: Record<ProblemCode, string> = {
  invalid_request: 'Invalid request',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  conflict: 'Conflict',
  payload_too_large: 'Payload too large',
  unsupported_media_type: 'Unsupported media type',
  invalid_image: 'Invalid image',
  queue_full: 'Queue full',
  rate_limited: 'Rate limited',
  budget_exceeded: 'Budget exceeded',
  not_ready: 'Not ready',
  no_result: 'No result',
  expired: 'Expired',
  unavailable: 'Service unavailable',
  internal: 'Internal error',
};

/** What each problem code tells a station, one line per code (docs/api.md's error code table). */
export const PROBLEM_MEANINGS: Record<ProblemCode, string> = {
  invalid_request: 'The request is malformed or a field is out of range; `errors` lists every field error with its path.',
  unauthorized: 'No credential, or a wrong one.',
  forbidden: "The credential may not do this: a priority above the station's, or a station key on an admin route.",
  not_found: "No such job (or another station's), pipeline or route.",
  conflict:
    'The `Idempotency-Key` was used for a different request or is still being processed, or the job is in a state that does not allow this.',
  payload_too_large: 'The image, or the body, is over the size limit.',
  unsupported_media_type: 'The body is neither multipart nor JSON, or the image bytes are not an accepted format.',
  invalid_image: 'The image cannot be read, is over an edge or pixel limit, or ends early.',
  queue_full: "The pipeline's queue is at its limit; retry after `Retry-After`.",
  rate_limited: 'The station holds its limit of waiting + active jobs, or is over its requests per minute; retry after `Retry-After`.',
  budget_exceeded: 'The station used its GPU seconds for the day; `Retry-After` is the time to the next UTC midnight.',
  not_ready: 'The job is queued or active: no result yet; retry after `Retry-After`.',
  no_result: 'The job failed or was cancelled: it has no result.',
  expired: 'The job existed but has been removed after its retention time.',
  unavailable: 'The queue store or the image store is unreachable; nothing was done. Retry after `Retry-After`.',
  internal: 'An unexpected error, logged under the `X-Request-Id`.',
};

/** The `type` URI of a problem code. */
export function problemType(code: ProblemCode): string {
  return `https://darkroom.dev/problems/${code.replace(/_/g, '-')}`;
}

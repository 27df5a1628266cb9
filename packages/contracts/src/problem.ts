import { z } from 'zod';

/** Stable machine-readable codes of problem+json bodies (API.md, "Errors"). */
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

/** The `type` URI of a problem code. */
export function problemType(code: ProblemCode): string {
  return `https://darkroom.dev/problems/${code.replace(/_/g, '-')}`;
}

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
  'not_ready',
  'no_result',
  'expired',
  'unavailable',
  'internal',
] as const;
export const ProblemCode = z.enum(PROBLEM_CODES);
export type ProblemCode = z.infer<typeof ProblemCode>;

export const FieldError = z.object({ path: z.string(), message: z.string() });
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

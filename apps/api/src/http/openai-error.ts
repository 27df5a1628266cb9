import type { ServerResponse } from 'node:http';
import type { ProblemCode } from '@darkroom/contracts';
import type { HttpError } from './problem.ts';

/*
 * The OpenAI-compatible routes (`/v1/images/*`) answer errors in OpenAI's shape, so the official
 * SDKs raise their own error classes. The status is still the error table's: only the body and
 * the retry hint change here.
 */

const marked = new WeakSet<ServerResponse>();

/** Marks a response as one whose errors are written in OpenAI's shape. */
export function useOpenAiErrors(res: ServerResponse): void {
  marked.add(res);
}

export function wantsOpenAiErrors(res: ServerResponse): boolean {
  return marked.has(res);
}

const TYPES: Partial<Record<ProblemCode, string>> = {
  unauthorized: 'authentication_error',
  forbidden: 'permission_error',
  not_found: 'invalid_request_error',
  queue_full: 'rate_limit_error',
  rate_limited: 'rate_limit_error',
  budget_exceeded: 'rate_limit_error',
  internal: 'server_error',
  unavailable: 'server_error',
  no_result: 'server_error',
};

/** Problems a retry of the same request can get past: the queue or station busy, the store away. */
const RETRYABLE = new Set<ProblemCode>(['queue_full', 'rate_limited', 'unavailable']);

/** The OpenAI body of a problem, and the headers that go with it. */
export function openAiErrorOf(problem: HttpError): { body: unknown; headers: Record<string, string> } {
  const code = problem.code === 'unauthorized' ? 'invalid_api_key' : problem.code;
  return {
    body: {
      error: {
        message: problem.errors?.length
          ? `${problem.message}: ${problem.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`
          : problem.message,
        type: TYPES[problem.code] ?? 'invalid_request_error',
        param: problem.errors?.[0]?.path ?? null,
        code,
      },
    },
    headers: { 'x-should-retry': RETRYABLE.has(problem.code) ? 'true' : 'false' },
  };
}

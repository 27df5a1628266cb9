import { type FieldError, PROBLEM_TITLES, type ProblemCode, problemType } from '@darkroom/contracts';
import { PROBLEMS, type ProblemKind } from './error-table.ts';

/**
 * An error answered to the client as problem+json (RFC 9457). It names a problem of the error
 * table by its kind; the table gives its status and code.
 */
export class HttpError extends Error {
  readonly status: number;
  readonly code: ProblemCode;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string>;

  constructor(kind: ProblemKind, detail: string, opts: { errors?: FieldError[]; headers?: Record<string, string> } = {}) {
    super(detail);
    this.name = 'HttpError';
    [this.status, this.code] = PROBLEMS[kind];
    this.errors = opts.errors;
    this.headers = opts.headers ?? {};
  }

  body() {
    return {
      type: problemType(this.code),
      title: PROBLEM_TITLES[this.code],
      status: this.status,
      detail: this.message,
      code: this.code,
      ...(this.errors ? { errors: this.errors } : {}),
    };
  }
}

export const badRequest = (detail: string, errors?: FieldError[]) => new HttpError('invalid_request', detail, errors ? { errors } : {});
export const notFound = (detail = 'no such resource') => new HttpError('not_found', detail);
export const unavailable = (detail = 'the queue store is unreachable; try again shortly', retryAfterSeconds = 2) =>
  new HttpError('unavailable', detail, { headers: { 'Retry-After': String(retryAfterSeconds) } });

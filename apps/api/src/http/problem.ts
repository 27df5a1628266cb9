import { type FieldError, PROBLEM_TITLES, type ProblemCode, problemType } from '@darkroom/contracts';

/** An error answered to the client as problem+json (RFC 9457). The only way handlers say "no". */
export class HttpError extends Error {
  readonly status: number;
  readonly code: ProblemCode;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, code: ProblemCode, detail: string, opts: { errors?: FieldError[]; headers?: Record<string, string> } = {}) {
    super(detail);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
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

export const badRequest = (detail: string, errors?: FieldError[]) =>
  new HttpError(400, 'invalid_request', detail, errors ? { errors } : {});
export const notFound = (detail = 'no such resource') => new HttpError(404, 'not_found', detail);
export const unavailable = (detail = 'the queue store is unreachable; try again shortly', retryAfterSeconds = 2) =>
  new HttpError(503, 'unavailable', detail, { headers: { 'Retry-After': String(retryAfterSeconds) } });

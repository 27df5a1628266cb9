import type { FieldError, ProblemCode } from '@darkroom/contracts';

const TITLES: Record<ProblemCode, string> = {
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
  not_ready: 'Not ready',
  no_result: 'No result',
  expired: 'Expired',
  unavailable: 'Service unavailable',
  internal: 'Internal error',
};

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
      type: `https://darkroom.dev/problems/${this.code.replace(/_/g, '-')}`,
      title: TITLES[this.code],
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

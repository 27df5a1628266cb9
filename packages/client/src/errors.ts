import type { FieldError, JobStatusBody, ProblemCode } from './contract-types.ts';
import { parseRetryAfter } from './retry.ts';

/*
 * Typed errors. Every failure a caller can meet is one of three:
 * - DarkroomError: the API answered with an error status (its problem+json fields, typed);
 * - DarkroomNetworkError: no usable answer (refused, reset, timed out, cut off mid-body);
 * - DarkroomTimeoutError: `waitFor` ran past its own `timeoutMs` (the job goes on).
 * An aborted call rejects with its signal's reason, as fetch does.
 */

/** An error answer from the API. */
export class DarkroomError extends Error {
  override name = 'DarkroomError';
  readonly status: number;
  /** The problem's stable machine-readable `code`; `http_<status>` when the body was not a problem (e.g. a proxy's page). */
  readonly code: ProblemCode | (string & {});
  readonly title: string;
  readonly detail: string;
  readonly type: string | undefined;
  /** What is wrong with the request, field by field (`path` is dotted: `params.operations.0.width`). */
  readonly errors: FieldError[];
  /** `Retry-After` of the answer, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** `X-Request-Id` of the answer: the key to the API's log lines. */
  readonly requestId: string | undefined;
  /** `METHOD url` of the request. */
  readonly request: string;
  /** Which attempt got this answer (1 = the first; more after retries). */
  readonly attempt: number;

  constructor(init: {
    status: number;
    code: string;
    title?: string;
    detail: string;
    type?: string;
    errors?: FieldError[];
    retryAfterMs?: number;
    requestId?: string;
    request: string;
    attempt?: number;
  }) {
    const fields = (init.errors ?? []).map((e) => `${e.path}: ${e.message}`);
    super(`${init.status} ${init.code}: ${init.detail}${fields.length ? ` (${fields.join('; ')})` : ''}`);
    this.status = init.status;
    this.code = init.code;
    this.title = init.title ?? init.code;
    this.detail = init.detail;
    this.type = init.type;
    this.errors = init.errors ?? [];
    this.retryAfterMs = init.retryAfterMs;
    this.requestId = init.requestId;
    this.request = init.request;
    this.attempt = init.attempt ?? 1;
  }

  /** Reads an error answer's body (problem+json, or whatever a proxy put there). */
  static async fromResponse(res: Response, request: string, attempt = 1): Promise<DarkroomError> {
    const text = await res.text().catch(() => '');
    let problem: Record<string, unknown> | undefined;
    if (/json/i.test(res.headers.get('content-type') ?? '')) {
      try {
        const parsed: unknown = JSON.parse(text);
        if (parsed && typeof parsed === 'object') problem = parsed as Record<string, unknown>;
      } catch {
        // not JSON after all: described below from the status alone
      }
    }
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const errors = Array.isArray(problem?.errors)
      ? (problem.errors as unknown[]).flatMap((e) => {
          const o = e as Record<string, unknown> | null;
          if (!o || typeof o.path !== 'string' || typeof o.message !== 'string') return [];
          // `code` says why an imageUrl fetch failed (too_big, not_an_image, unreachable, refused).
          return [{ path: o.path, message: o.message, ...(typeof o.code === 'string' ? { code: o.code } : {}) }];
        })
      : [];
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
    const requestId = res.headers.get('x-request-id') ?? undefined;
    return new DarkroomError({
      status: res.status,
      code: str(problem?.code) ?? `http_${res.status}`,
      detail: str(problem?.detail) ?? (res.statusText || text.slice(0, 200).trim() || `HTTP ${res.status}`),
      errors,
      request,
      attempt,
      ...(str(problem?.title) ? { title: str(problem?.title) } : {}),
      ...(str(problem?.type) ? { type: str(problem?.type) } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...(requestId ? { requestId } : {}),
    });
  }
}

/** No usable answer from the API: connection refused or reset, DNS, a timeout, a body cut off. */
export class DarkroomNetworkError extends Error {
  override name = 'DarkroomNetworkError';
  /** The system error code where there is one (`ECONNREFUSED`, `ENOTFOUND`, `UND_ERR_SOCKET` …), or `TIMEOUT`. */
  readonly code: string | undefined;
  /** The code, else the innermost error's message ("fetch failed" says nothing). */
  readonly reason: string;
  readonly request: string;
  /** How many attempts were made. */
  readonly attempts: number;

  constructor(request: string, cause: unknown, attempts = 1) {
    const code = systemCode(cause);
    const reason = code ?? innermostMessage(cause);
    super(`${request} failed: ${reason}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`, { cause });
    this.code = code;
    this.reason = reason;
    this.request = request;
    this.attempts = attempts;
  }
}

/** `waitFor` ran past its `timeoutMs`. The job itself goes on; `last` is the last state seen. */
export class DarkroomTimeoutError extends Error {
  override name = 'DarkroomTimeoutError';
  readonly jobId: string;
  readonly timeoutMs: number;
  readonly last: JobStatusBody | undefined;

  constructor(jobId: string, timeoutMs: number, last: JobStatusBody | undefined) {
    super(`job ${jobId} was not final after ${timeoutMs} ms${last ? ` (last seen ${last.status})` : ''}`);
    this.jobId = jobId;
    this.timeoutMs = timeoutMs;
    this.last = last;
  }
}

/** The message of the deepest `cause`: undici's own message is only "fetch failed". */
function innermostMessage(err: unknown): string {
  let e = err;
  for (let depth = 0; depth < 4 && e instanceof Error && e.cause instanceof Error; depth++) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

/** undici hides the system error in `cause` (sometimes two levels down). */
function systemCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { name?: string }).name === 'TimeoutError') return 'TIMEOUT';
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

import { DarkroomError, DarkroomNetworkError } from './errors.ts';
import { backoffDelay, type RetryOptions, sleep } from './retry.ts';

/*
 * One HTTP exchange with retries. An attempt that gets no usable answer (a network error, a
 * timeout, a body cut off), or an answer of 429, 502, 503 or 504, is tried again after a
 * backoff or the answer's `Retry-After`; any other error status is thrown at once as a
 * DarkroomError. Requests that must not repeat say `retry: false`; submits are safe to repeat
 * because each carries an Idempotency-Key.
 */

/** What the client tells `onRetry` before it waits and tries again. */
export interface RetryEvent {
  request: string;
  /** The attempt that failed (1 = the first). */
  attempt: number;
  delayMs: number;
  error: DarkroomError | DarkroomNetworkError;
}

export interface TransportOptions {
  baseUrl: string;
  apiKey: string | undefined;
  userAgent: string;
  fetch: typeof fetch;
  retry: RetryOptions;
  /** Per attempt: until the answer's headers for streams, until its whole body otherwise. 0: none. */
  timeoutMs: number;
  onRetry: ((event: RetryEvent) => void) | undefined;
}

export interface RequestSpec {
  method?: string;
  /** Path under the base URL, e.g. `/v1/jobs`. */
  path: string;
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  /** Called once per attempt, so every attempt sends a fresh body. */
  body?: () => RequestInit['body'];
  signal?: AbortSignal | undefined;
  /** Repeat on network errors, 429, 502, 503, 504 (default true). */
  retry?: boolean;
  /** Also repeat a 409 that carries `Retry-After` (a keyed submit whose first request is still being created). */
  retryConflict?: boolean;
  /** Statuses handed to `read` instead of thrown (e.g. 304). */
  accept?: number[];
  /** The per-attempt timeout ends with the headers: `read` hands the body on unread. */
  stream?: boolean;
  /** Extra time for this request on top of the timeout (a submit's `wait`). */
  extraTimeoutMs?: number;
}

const RETRY_STATUSES = new Set([429, 502, 503, 504]);

export class Transport {
  readonly #o: TransportOptions;
  readonly #base: string;

  constructor(opts: TransportOptions) {
    this.#o = opts;
    this.#base = opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`;
  }

  get retry(): RetryOptions {
    return this.#o.retry;
  }

  url(path: string, query: RequestSpec['query'] = {}): URL {
    const url = new URL(path.replace(/^\/+/, ''), this.#base);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  /** Sends the request (with retries) and returns what `read` makes of the answer. */
  async send<T>(spec: RequestSpec, read: (res: Response) => Promise<T>): Promise<T> {
    const method = spec.method ?? 'GET';
    const url = this.url(spec.path, spec.query);
    const request = `${method} ${url.pathname}${url.search}`;
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.#o.userAgent, ...spec.headers };
    if (this.#o.apiKey) headers.authorization = `Bearer ${this.#o.apiKey}`;
    const attempts = spec.retry === false ? 1 : Math.max(1, this.#o.retry.attempts);
    const timeoutMs = this.#o.timeoutMs > 0 ? this.#o.timeoutMs + (spec.extraTimeoutMs ?? 0) : 0;

    for (let attempt = 1; ; attempt++) {
      spec.signal?.throwIfAborted();
      const attemptCtl = new AbortController();
      const timer = timeoutMs > 0 ? setTimeout(() => attemptCtl.abort(timeoutError(timeoutMs)), timeoutMs) : undefined;
      const signal = spec.signal ? AbortSignal.any([spec.signal, attemptCtl.signal]) : attemptCtl.signal;
      let failure: DarkroomError | DarkroomNetworkError;
      let delayMs: number;
      try {
        const res = await this.#o.fetch(url, { method, headers, body: spec.body?.() ?? null, signal });
        if (res.ok || spec.accept?.includes(res.status)) {
          if (spec.stream) clearTimeout(timer);
          return await read(res);
        }
        const error = await DarkroomError.fromResponse(res, request, attempt);
        const retryable = RETRY_STATUSES.has(res.status) || (spec.retryConflict && res.status === 409 && error.retryAfterMs !== undefined);
        if (!retryable || attempt >= attempts) throw error;
        if (error.retryAfterMs !== undefined && error.retryAfterMs > this.#o.retry.maxRetryAfterMs) throw error;
        failure = error;
        delayMs = error.retryAfterMs ?? backoffDelay(attempt - 1, this.#o.retry);
      } catch (err) {
        if (spec.signal?.aborted) throw spec.signal.reason;
        if (err instanceof DarkroomError) throw err;
        const network = err instanceof DarkroomNetworkError ? err : new DarkroomNetworkError(request, err, attempt);
        if (attempt >= attempts) throw network;
        failure = network;
        delayMs = backoffDelay(attempt - 1, this.#o.retry);
      } finally {
        clearTimeout(timer);
      }
      this.#o.onRetry?.({ request, attempt, delayMs, error: failure });
      await sleep(delayMs, spec.signal);
    }
  }

  /** A JSON answer. */
  json<T>(spec: RequestSpec): Promise<T> {
    return this.send(spec, async (res) => (await res.json()) as T);
  }
}

function timeoutError(ms: number): Error {
  const err = new Error(`no answer within ${ms} ms`);
  err.name = 'TimeoutError';
  return err;
}

/*
 * The retry policy: exponential backoff with full jitter (a random delay between 0 and
 * base × 2^retry, capped), so stations refused together do not come back in lockstep; a
 * `Retry-After` from the server replaces the computed delay.
 */

export interface RetryOptions {
  /** Attempts in all, the first included (1 turns retries off). Default 5. */
  attempts: number;
  /** Backoff of the first retry, before jitter. Default 250 ms. */
  baseDelayMs: number;
  /** Cap of the computed backoff. Default 10 s. */
  maxDelayMs: number;
  /** A `Retry-After` longer than this is not waited for: the error is thrown, carrying `retryAfterMs`. Default 60 s. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { attempts: 5, baseDelayMs: 250, maxDelayMs: 10_000, maxRetryAfterMs: 60_000 };

/** Delay before retry number `retry` (0 = the first retry): full jitter over the capped exponential. */
export function backoffDelay(retry: number, opts: Pick<RetryOptions, 'baseDelayMs' | 'maxDelayMs'>, random = Math.random): number {
  const ceiling = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.min(retry, 30));
  return Math.round(random() * ceiling);
}

/** `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) in milliseconds, or undefined. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

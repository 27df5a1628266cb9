import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import {
  STANDARD_WEBHOOK_ID_HEADER,
  STANDARD_WEBHOOK_SIGNATURE_HEADER,
  STANDARD_WEBHOOK_TIMESTAMP_HEADER,
  signStandardWebhook,
  signWebhook,
  WEBHOOK_DELIVERY_HEADER,
  WEBHOOK_EVENT_HEADER,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_USER_AGENT,
} from '@darkroom/contracts';
import type { Logger } from '@darkroom/runtime';
import { type Job, type JobsOptions, UnrecoverableError } from 'bullmq';
import { pinnedRequest, pinnedRequestOptions } from './pinned.ts';
import { type LookupFn, vetTarget } from './vetting.ts';

/*
 * Webhook delivery: a signed POST to the vetted, pinned address (Darkroom-Signature and the
 * Standard Webhooks headers), and the BullMQ glue for the
 * dedicated `webhooks` queue. No Express here: the API checks targets at submit, and whoever
 * consumes WEBHOOK_QUEUE delivers.
 */

export type WebhookEvent = 'job.completed' | 'job.failed' | 'job.cancelled' | 'job.started';
export const WEBHOOK_EVENTS: readonly WebhookEvent[] = ['job.completed', 'job.failed', 'job.cancelled', 'job.started'];

/** A delivery that may succeed later: network error, timeout, 5xx, 408, 429. */
export class WebhookRetryableError extends Error {
  override name = 'WebhookRetryableError';
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

/** A delivery that will not succeed by retrying: refused target, 3xx, 4xx other than 408/429. */
export class WebhookPermanentError extends Error {
  override name = 'WebhookPermanentError';
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

// ---------------------------------------------------------------------------------------------
// Delivery

export const WEBHOOK_DEFAULT_TIMEOUT_MS = 10_000;
/** At most this much of a receiver's answer is read (and discarded). */
export const WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024;

export interface DeliverWebhookOptions {
  url: string;
  body: string;
  event: WebhookEvent;
  secret: string;
  allowPrivate: boolean;
  /** Whole delivery (DNS check, connect, answer): default 10 s. */
  timeoutMs?: number;
  lookup?: LookupFn;
  /**
   * Sent as `Darkroom-Delivery` and `webhook-id`; pass the same one on every retry. Without it,
   * `webhook-id` is a fresh random id and `Darkroom-Delivery` is not sent.
   */
  deliveryId?: string;
  /** Aborting it (e.g. a worker shutting down) fails the delivery as retryable. */
  signal?: AbortSignal;
}

function outcome(status: number): { status: number } {
  if (status >= 200 && status < 300) return { status };
  if (status >= 300 && status < 400) {
    throw new WebhookPermanentError(`the receiver answered ${status}; redirects are not followed`, status);
  }
  if (status === 408 || status === 429 || (status >= 500 && status < 600)) {
    throw new WebhookRetryableError(`the receiver answered ${status}`, status);
  }
  throw new WebhookPermanentError(`the receiver answered ${status}`, status);
}

/**
 * POSTs a signed webhook. The target is checked again here, and the connection goes to the
 * addresses that check vetted (a custom `lookup` pins them, so a second DNS answer cannot
 * rebind it); the Host header and TLS servername stay the URL's host, so certificates verify
 * as usual. Redirects are not followed. Resolves on 2xx; throws WebhookRetryableError or
 * WebhookPermanentError otherwise.
 */
export async function deliverWebhook(opts: DeliverWebhookOptions): Promise<{ status: number }> {
  const timeoutMs = opts.timeoutMs ?? WEBHOOK_DEFAULT_TIMEOUT_MS;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new WebhookRetryableError(`no answer within ${timeoutMs} ms`)), timeoutMs);
  const onOuterAbort = () => controller.abort(new WebhookRetryableError('the delivery was interrupted'));
  if (opts.signal?.aborted) onOuterAbort();
  else opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  try {
    const vetted = await vetTarget(opts.url, {
      allowPrivate: opts.allowPrivate,
      lookup: opts.lookup,
      timeoutMs,
      signal: controller.signal,
    });
    if (controller.signal.aborted) throw controller.signal.reason;
    if (!vetted.ok) {
      const message = `webhook target refused: ${vetted.reason}`;
      throw vetted.transient ? new WebhookRetryableError(message) : new WebhookPermanentError(message);
    }
    // One timestamp for both signatures: `t` of Darkroom-Signature is webhook-timestamp.
    const t = Math.floor(Date.now() / 1000);
    const id = opts.deliveryId ?? `msg_${randomUUID()}`;
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(opts.body)),
      'User-Agent': WEBHOOK_USER_AGENT,
      [WEBHOOK_SIGNATURE_HEADER]: signWebhook(opts.secret, opts.body, t),
      [WEBHOOK_EVENT_HEADER]: opts.event,
      [STANDARD_WEBHOOK_ID_HEADER]: id,
      [STANDARD_WEBHOOK_TIMESTAMP_HEADER]: String(t),
      [STANDARD_WEBHOOK_SIGNATURE_HEADER]: signStandardWebhook(opts.secret, id, opts.body, t),
    };
    if (opts.deliveryId !== undefined) headers[WEBHOOK_DELIVERY_HEADER] = opts.deliveryId;
    const status = await post(vetted.url, vetted.host, vetted.addresses, headers, opts.body, controller.signal);
    return outcome(status);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}

function post(
  url: URL,
  host: string,
  addresses: string[],
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    let answered: number | undefined;
    const fail = (err: unknown) => {
      if (settled) return;
      // Once the status line is in, a timeout or error while reading the body does not change it.
      if (answered !== undefined) return done(answered);
      settled = true;
      if (signal.aborted && signal.reason instanceof Error) reject(signal.reason);
      else if (err instanceof WebhookRetryableError || err instanceof WebhookPermanentError) reject(err);
      else {
        const code = (err as { code?: unknown }).code;
        reject(new WebhookRetryableError(`could not reach the receiver${typeof code === 'string' ? ` (${code})` : ''}`));
      }
    };
    const done = (status: number) => {
      if (settled) return;
      settled = true;
      resolve(status);
    };

    const options = pinnedRequestOptions(url, host, addresses, { method: 'POST', headers, signal });

    let req: http.ClientRequest;
    try {
      req = pinnedRequest(url, options);
    } catch {
      // Bad header values and the like: retrying cannot help.
      settled = true;
      reject(new WebhookPermanentError('the webhook request could not be built'));
      return;
    }
    req.on('error', fail);
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      answered = status;
      let seen = 0;
      const finish = () => {
        res.removeAllListeners('data');
        res.destroy();
        done(status);
      };
      res.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen >= WEBHOOK_MAX_RESPONSE_BYTES) finish();
      });
      res.on('end', finish);
      res.on('error', finish);
      res.on('close', finish);
    });
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// BullMQ: the dedicated webhooks queue

export const WEBHOOK_QUEUE = 'webhooks';
export const WEBHOOK_DEFAULT_ATTEMPTS = 6;
/** Exponential from 30 s: 30 + 60 + 120 + 240 + 480 s ≈ 15.5 min between the 6 tries. */
export const WEBHOOK_DEFAULT_BACKOFF_MS = 30_000;
export const WEBHOOK_DEFAULT_RETENTION_SECONDS = 24 * 3600;

export interface WebhookJobData {
  url: string;
  station: string;
  jobId: string;
  event: WebhookEvent;
  body: string;
}

export interface WebhookResult {
  status: number;
}

/**
 * The BullMQ job id for a job's webhook: one final event and at most one `job.started` per job,
 * so adding either twice is a no-op.
 */
export function webhookJobId(jobId: string, kind: 'final' | 'started' = 'final'): string {
  return kind === 'final' ? `wh_${jobId}` : `wh_${jobId}_started`;
}

/**
 * Job options for WEBHOOK_QUEUE; the caller adds `jobId: webhookJobId(jobId)`. Defaults: 6
 * attempts, exponential backoff from 30 s, completed and failed entries kept 24 h.
 */
export function webhookJobOptions(opts: { attempts?: number; backoffMs?: number; retentionSeconds?: number } = {}): JobsOptions {
  const age = opts.retentionSeconds ?? WEBHOOK_DEFAULT_RETENTION_SECONDS;
  return {
    attempts: opts.attempts ?? WEBHOOK_DEFAULT_ATTEMPTS,
    backoff: { type: 'exponential', delay: opts.backoffMs ?? WEBHOOK_DEFAULT_BACKOFF_MS },
    removeOnComplete: { age },
    removeOnFail: { age },
  };
}

/** Origin only: a URL's path or query may carry the receiver's own token. */
function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}

export type WebhookProcessor = (job: Job<WebhookJobData, WebhookResult>, token?: string, signal?: AbortSignal) => Promise<WebhookResult>;

/**
 * BullMQ processor for WEBHOOK_QUEUE. Permanent failures (refused target, 3xx, most 4xx, no
 * secret) become UnrecoverableError so BullMQ stops; retryable ones are rethrown as plain
 * errors so BullMQ retries with the job's backoff. Logs never include secrets, signatures or
 * URL paths.
 */
export function createWebhookProcessor(opts: {
  secretFor: (station: string) => string | undefined;
  allowPrivate: boolean;
  timeoutMs?: number;
  logger: Logger;
  /** For tests; defaults to DNS. */
  lookup?: LookupFn;
}): WebhookProcessor {
  return async (job, _token, signal) => {
    const { url, station, jobId, event, body } = job.data;
    const attempt = job.attemptsMade + 1;
    const log = { webhook: { id: job.id, jobId, station, event, target: safeOrigin(url), attempt } };
    if (!WEBHOOK_EVENTS.includes(event)) {
      opts.logger.error(log, 'webhook job has an unknown event; dropped');
      throw new UnrecoverableError('unknown webhook event');
    }
    const secret = opts.secretFor(station);
    if (!secret) {
      opts.logger.error(log, 'no webhook secret for this station; webhook dropped');
      throw new UnrecoverableError('no webhook secret is configured for this station');
    }
    try {
      const result = await deliverWebhook({
        url,
        body,
        event,
        secret,
        allowPrivate: opts.allowPrivate,
        ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
        ...(opts.lookup ? { lookup: opts.lookup } : {}),
        ...(job.id !== undefined ? { deliveryId: job.id } : {}),
        ...(signal ? { signal } : {}),
      });
      opts.logger.info({ webhook: { ...log.webhook, status: result.status } }, 'webhook delivered');
      return result;
    } catch (err) {
      if (err instanceof WebhookPermanentError) {
        opts.logger.warn({ webhook: { ...log.webhook, status: err.status }, reason: err.message }, 'webhook failed permanently');
        throw new UnrecoverableError(err.message);
      }
      const message = err instanceof Error ? err.message : 'webhook delivery failed';
      const status = err instanceof WebhookRetryableError ? err.status : undefined;
      opts.logger.warn({ webhook: { ...log.webhook, status }, reason: message }, 'webhook delivery failed; will retry if attempts remain');
      throw new Error(message);
    }
  };
}

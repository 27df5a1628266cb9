import { createHmac, timingSafeEqual } from 'node:crypto';
import { promises as dnsPromises, type LookupAddress, type LookupOptions } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { type Job, type JobsOptions, UnrecoverableError } from 'bullmq';
import ipaddr from 'ipaddr.js';
import type { Logger } from './logger.ts';

/*
 * Webhook delivery: target vetting (SSRF guard), signing, a pinned-address HTTP POST, and the
 * BullMQ glue for the dedicated `webhooks` queue. No Express here; the API checks targets at
 * submit, the worker (or whoever consumes WEBHOOK_QUEUE) delivers.
 */

export type WebhookEvent = 'job.completed' | 'job.failed' | 'job.cancelled';
export const WEBHOOK_EVENTS: readonly WebhookEvent[] = ['job.completed', 'job.failed', 'job.cancelled'];

/** Same shape as `dns.promises.lookup(host, { all: true, verbatim: true })`; injectable for tests. */
export type LookupFn = (hostname: string, options: { all: true; verbatim: true }) => Promise<Array<{ address: string; family: number }>>;

export type WebhookTargetCheck = { ok: true; addresses: string[] } | { ok: false; reason: string };

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
// Address classification

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

function v4FromWords(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([(hi >> 8) & 0xff, hi & 0xff, (lo >> 8) & 0xff, lo & 0xff]);
}

function rangeOf(addr: ipaddr.IPv4 | ipaddr.IPv6): string {
  if (addr.kind() === 'ipv4') return (addr as ipaddr.IPv4).range();
  const v6 = addr as ipaddr.IPv6;
  const p = v6.parts as [number, number, number, number, number, number, number, number];
  const range = v6.range();
  switch (range) {
    // ::ffff:a.b.c.d and ::ffff:0:a.b.c.d (SIIT): judge the embedded IPv4 address.
    case 'ipv4Mapped':
    case 'rfc6145':
      return v4FromWords(p[6], p[7]).range();
    // NAT64: the well-known prefix embeds the IPv4 address in the last 32 bits; the local-use
    // prefix (64:ff9b:1::/48) belongs to a private network and is refused outright.
    case 'rfc6052':
      return v6.match(NAT64_WELL_KNOWN) ? v4FromWords(p[6], p[7]).range() : 'rfc6052';
    // 6to4: 2002:AABB:CCDD::/48 is the IPv4 address AA.BB.CC.DD.
    case '6to4':
      return v4FromWords(p[1], p[2]).range();
    // Teredo: server IPv4 in words 2-3, client IPv4 inverted in words 6-7; both must be public.
    case 'teredo': {
      const server = v4FromWords(p[2], p[3]).range();
      if (server !== 'unicast') return server;
      return v4FromWords(~p[6] & 0xffff, ~p[7] & 0xffff).range();
    }
    case 'unicast':
      // Only 2000::/3 is allocated global unicast; ipaddr.js calls the rest (e.g. the deprecated
      // IPv4-compatible ::a.b.c.d) 'unicast' too.
      return v6.match(GLOBAL_UNICAST_V6) ? 'unicast' : 'reserved';
    default:
      return range;
  }
}

/**
 * The ipaddr.js range name of an address as a webhook target, looking through IPv4-mapped,
 * SIIT, NAT64, 6to4 and Teredo wrappers; 'unicast' is the only public one. Unparseable input
 * gives 'invalid'.
 */
export function webhookAddressRange(address: string): string {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!ipaddr.isValid(bare) || isIP(bare.split('%')[0] ?? '') === 0) return 'invalid';
  try {
    return rangeOf(ipaddr.parse(bare));
  } catch {
    return 'invalid';
  }
}

/** True when the address is public unicast (not loopback, private, link-local, reserved, …). */
export function isPublicAddress(address: string): boolean {
  return webhookAddressRange(address) === 'unicast';
}

// ---------------------------------------------------------------------------------------------
// Target check

const MAX_URL_LENGTH = 2048;
const DEFAULT_LOOKUP_TIMEOUT_MS = 5_000;

const REASONS = {
  notUrl: 'must be an absolute http(s) URL',
  tooLong: `must be at most ${MAX_URL_LENGTH} characters`,
  scheme: 'must use http or https',
  credentials: 'must not carry credentials',
  unresolvable: 'the host name could not be resolved',
  lookupTimeout: 'the host name could not be resolved in time',
  forbidden: 'resolves to a loopback, private, link-local or reserved address, which is not allowed',
} as const;

type Vetted = { ok: true; url: URL; host: string; addresses: string[] } | { ok: false; reason: string; transient: boolean };

const defaultLookup: LookupFn = (hostname, options) => dnsPromises.lookup(hostname, options);

function refuse(reason: string, transient = false): Vetted {
  return { ok: false, reason, transient };
}

async function vetTarget(
  rawUrl: string,
  opts: { allowPrivate: boolean; lookup?: LookupFn | undefined; timeoutMs?: number | undefined; signal?: AbortSignal | undefined },
): Promise<Vetted> {
  if (typeof rawUrl !== 'string') return refuse(REASONS.notUrl);
  if (rawUrl.length > MAX_URL_LENGTH) return refuse(REASONS.tooLong);
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    return refuse(REASONS.notUrl);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return refuse(REASONS.scheme);
  if (url.username !== '' || url.password !== '') return refuse(REASONS.credentials);
  // WHATWG URL parsing already normalised odd IPv4 spellings (0x7f.1, 2130706433) to dotted quads.
  const host = url.hostname.startsWith('[') && url.hostname.endsWith(']') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') return refuse(REASONS.notUrl);

  let addresses: string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else {
    const lookup = opts.lookup ?? defaultLookup;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_LOOKUP_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      const aborted = new Promise<'aborted'>((resolve) => {
        onAbort = () => resolve('aborted');
        if (opts.signal?.aborted) onAbort();
        else opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
      const result = await Promise.race([lookup(host, { all: true, verbatim: true }), timedOut, aborted]);
      if (result === 'timeout' || result === 'aborted') return refuse(REASONS.lookupTimeout, true);
      addresses = result.map((r) => r.address);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      // EAI_AGAIN / SERVFAIL / timeouts are worth another try; NXDOMAIN and friends are not.
      const transient = code === 'EAI_AGAIN' || code === 'ESERVFAIL' || code === 'ETIMEOUT' || code === 'ECONNREFUSED';
      return refuse(REASONS.unresolvable, transient);
    } finally {
      if (timer) clearTimeout(timer);
      if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
    }
    if (addresses.length === 0) return refuse(REASONS.unresolvable);
  }

  for (const address of addresses) {
    if (isIP(address.split('%')[0] ?? '') === 0) return refuse(REASONS.unresolvable);
    if (!opts.allowPrivate && !isPublicAddress(address)) return refuse(REASONS.forbidden);
  }
  return { ok: true, url, host, addresses };
}

/**
 * Whether a webhook URL may be used: an absolute http(s) URL without credentials whose host
 * (an IP literal, or every address its name resolves to) is public unicast, unless
 * `allowPrivate`. `reason` is short text fit for the station (no addresses or internals).
 * `timeoutMs` bounds the name lookup (default 5 s).
 */
export async function checkWebhookTarget(
  url: string,
  opts: { allowPrivate: boolean; lookup?: LookupFn; timeoutMs?: number },
): Promise<WebhookTargetCheck> {
  const vetted = await vetTarget(url, opts);
  return vetted.ok ? { ok: true, addresses: vetted.addresses } : { ok: false, reason: vetted.reason };
}

// ---------------------------------------------------------------------------------------------
// Signatures

export const WEBHOOK_SIGNATURE_HEADER = 'Darkroom-Signature';
export const WEBHOOK_EVENT_HEADER = 'Darkroom-Event';
export const WEBHOOK_DELIVERY_HEADER = 'Darkroom-Delivery';
export const WEBHOOK_USER_AGENT = 'Darkroom-Webhooks/1';

function hmacHex(secret: string, t: number, body: string): string {
  return createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export function signWebhook(secret: string, body: string, t: number = Math.floor(Date.now() / 1000)): string {
  if (!Number.isSafeInteger(t) || t < 0) throw new RangeError('t must be a non-negative integer of unix seconds');
  return `t=${t},v1=${hmacHex(secret, t, body)}`;
}

/**
 * Checks a `Darkroom-Signature` header against the raw body: any `v1` may match (constant-time),
 * and `t` must be within `toleranceSeconds` (default 300) of `now` (unix seconds, default the
 * clock) in either direction.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined | null,
  body: string,
  opts: { toleranceSeconds?: number; now?: number } = {},
): boolean {
  if (typeof header !== 'string' || header.length > 4096) return false;
  const tolerance = opts.toleranceSeconds ?? 300;
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (t !== undefined || !/^\d{1,15}$/.test(value)) return false;
      t = Number(value);
    } else if (key === 'v1' && /^[0-9a-fA-F]{64}$/.test(value)) {
      candidates.push(value.toLowerCase());
    }
  }
  if (t === undefined || candidates.length === 0) return false;
  if (Math.abs(now - t) > tolerance) return false;
  const expected = Buffer.from(hmacHex(secret, t, body), 'hex');
  let match = false;
  for (const c of candidates) {
    // Every candidate is compared, so the time taken does not depend on which one matched.
    if (timingSafeEqual(expected, Buffer.from(c, 'hex'))) match = true;
  }
  return match;
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
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(opts.body)),
      'User-Agent': WEBHOOK_USER_AGENT,
      [WEBHOOK_SIGNATURE_HEADER]: signWebhook(opts.secret, opts.body),
      [WEBHOOK_EVENT_HEADER]: opts.event,
      Host: vetted.url.host,
    };
    if (opts.deliveryId !== undefined) headers[WEBHOOK_DELIVERY_HEADER] = opts.deliveryId;
    const status = await post(vetted.url, vetted.host, vetted.addresses, headers, opts.body, controller.signal);
    return outcome(status);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

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

    const pinned: LookupAddress[] = addresses.map((address) => ({ address, family: isIP(address.split('%')[0] ?? '') }));
    // Node calls this instead of DNS for a named host (IP literals connect directly and were
    // vetted as such). Only vetted addresses can come out of it, whatever name is asked.
    const lookup = (_hostname: string, options: LookupOptions, callback: LookupCallback) => {
      const family = options.family === 4 || options.family === 6 ? options.family : 0;
      const list = family === 0 ? pinned : pinned.filter((a) => a.family === family);
      const first = list[0];
      if (!first) {
        const err: NodeJS.ErrnoException = new Error('no vetted address of the requested family');
        err.code = 'ENOTFOUND';
        callback(err, '', 0);
        return;
      }
      if (options.all) callback(null, list);
      else callback(null, first.address, first.family);
    };

    const isHttps = url.protocol === 'https:';
    const options: https.RequestOptions = {
      method: 'POST',
      host,
      port: url.port === '' ? (isHttps ? 443 : 80) : Number(url.port),
      path: `${url.pathname}${url.search}`,
      headers,
      lookup: lookup as unknown as https.RequestOptions['lookup'],
      agent: false, // a fresh connection per delivery: no pooled socket from an earlier resolution
      signal,
      ...(isHttps && isIP(host) === 0 ? { servername: host } : {}),
    };

    let req: http.ClientRequest;
    try {
      req = isHttps ? https.request(options) : http.request(options);
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

/** The BullMQ job id for a job's webhook (one final event per job, so adding twice is a no-op). */
export function webhookJobId(jobId: string): string {
  return `wh_${jobId}`;
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

import { createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Webhook signatures: `Darkroom-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
 * Part of the contract: receivers verify with `verifyWebhookSignature`, which the station SDK
 * (@darkroom/client) exports; the webhooks package signs with `signWebhook`.
 */

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

/*
 * Standard Webhooks (https://www.standardwebhooks.com), sent beside `Darkroom-Signature`:
 *   webhook-id:        the delivery id, the same on every retry of one delivery
 *   webhook-timestamp: unix seconds, the same `t` as in `Darkroom-Signature`
 *   webhook-signature: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`
 * The HMAC key comes from the station secret as `standardWebhookKey` says.
 */

export const STANDARD_WEBHOOK_ID_HEADER = 'webhook-id';
export const STANDARD_WEBHOOK_TIMESTAMP_HEADER = 'webhook-timestamp';
export const STANDARD_WEBHOOK_SIGNATURE_HEADER = 'webhook-signature';

const WHSEC_PREFIX = 'whsec_';

/**
 * The Standard Webhooks key for a station secret. A secret of the form `whsec_<base64>` (the
 * spec's own form, with canonical padded base64) is base64-decoded, so a receiver configures it
 * unchanged. Any other secret is keyed by its raw UTF-8 bytes, which a receiver configures as
 * `whsec_` + base64(secret).
 */
export function standardWebhookKey(secret: string): Buffer {
  if (secret.startsWith(WHSEC_PREFIX)) {
    const encoded = secret.slice(WHSEC_PREFIX.length);
    const decoded = Buffer.from(encoded, 'base64');
    if (decoded.length > 0 && decoded.toString('base64') === encoded) return decoded;
  }
  return Buffer.from(secret, 'utf8');
}

/** The secret a Standard Webhooks library is given for this station secret (`whsec_<base64>`). */
export function standardWebhookSecret(secret: string): string {
  return `${WHSEC_PREFIX}${standardWebhookKey(secret).toString('base64')}`;
}

function hmacBase64(key: Buffer, id: string, t: number, body: string): string {
  return createHmac('sha256', key).update(`${id}.${t}.${body}`).digest('base64');
}

/** The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "<id>.<t>.<body>">`. */
export function signStandardWebhook(secret: string, id: string, body: string, t: number = Math.floor(Date.now() / 1000)): string {
  if (!Number.isSafeInteger(t) || t < 0) throw new RangeError('t must be a non-negative integer of unix seconds');
  return `v1,${hmacBase64(standardWebhookKey(secret), id, t, body)}`;
}

/**
 * Checks the Standard Webhooks headers (names in any case) against the raw body: any
 * space-separated `v1,…` may match (constant-time), and `webhook-timestamp` must be within
 * `toleranceSeconds` (default 300) of `now` (unix seconds, default the clock) in either direction.
 */
export function verifyStandardWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined | null>,
  body: string,
  opts: { toleranceSeconds?: number; now?: number } = {},
): boolean {
  const get = (name: string): string | undefined => {
    for (const [k, v] of Object.entries(headers)) {
      if (k.toLowerCase() === name) return typeof v === 'string' ? v : undefined;
    }
    return undefined;
  };
  const id = get(STANDARD_WEBHOOK_ID_HEADER);
  const ts = get(STANDARD_WEBHOOK_TIMESTAMP_HEADER);
  const sig = get(STANDARD_WEBHOOK_SIGNATURE_HEADER);
  if (!id || !ts || !sig || sig.length > 4096 || !/^\d{1,15}$/.test(ts)) return false;
  const t = Number(ts);
  const tolerance = opts.toleranceSeconds ?? 300;
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > tolerance) return false;
  const expected = Buffer.from(hmacBase64(standardWebhookKey(secret), id, t, body), 'base64');
  let match = false;
  for (const part of sig.split(' ')) {
    const comma = part.indexOf(',');
    if (comma < 0 || part.slice(0, comma) !== 'v1') continue;
    const value = part.slice(comma + 1);
    if (!/^[A-Za-z0-9+/]{43}=$/.test(value)) continue;
    // Every candidate is compared, so the time taken does not depend on which one matched.
    if (timingSafeEqual(expected, Buffer.from(value, 'base64'))) match = true;
  }
  return match;
}

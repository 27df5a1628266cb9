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

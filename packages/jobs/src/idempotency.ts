import { createHash } from 'node:crypto';

import type { Redis } from 'ioredis';
import { IdempotencyConflict, InvalidSubmit } from './errors.ts';
import { sysKeys } from './keys.ts';
import type { ValidSubmit } from './submit.ts';

/*
 * Idempotency-Key: per station, 24 h. The key is claimed (SET NX) before the job is created, so
 * of two identical requests racing exactly one creates the job; the other finds the claim and
 * answers with that job. An answered error releases the claim ("does not take the key").
 * "The same request" is compared by a fingerprint of pipeline, params (canonical JSON, defaults
 * applied), priority (the station default when omitted), webhook URL, image sha256 (or the
 * `imageUrl` it was fetched from, as sent), and the job's
 * own time limits when it set them (left out otherwise, so older keys still match).
 * A claim whose job still does not exist after CLAIM_LEASE_MS was left by a process that died
 * between claiming and creating (an api replica killed mid-submit): a retry may take it over, so
 * the key is not stuck for 24 h.
 */

export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
export const CLAIM_LEASE_MS = 10_000;
const MAX_KEY_LENGTH = 255;

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

export function fingerprint(v: ValidSubmit): string {
  // An image sent by URL is the URL, so a repeat is recognised before anything is fetched again.
  const image = v.imageUrl !== undefined ? null : (v.imageSha256 ?? null);
  // webhookEvents and imageUrl are undefined (left out) for the default list and for uploads, so
  // older fingerprints still match.
  const text = canonicalJson({
    pipeline: v.spec.name,
    params: v.params,
    priority: v.priority,
    webhookUrl: v.webhookUrl ?? null,
    webhookEvents: v.webhookEvents,
    image,
    imageUrl: v.imageUrl,
    timeoutSeconds: v.timeoutSeconds,
    ttlSeconds: v.ttlSeconds,
  });
  return createHash('sha256').update(text).digest('hex');
}

/** The header's value, or undefined; a malformed one is refused at path `Idempotency-Key`. */
export function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const key = Array.isArray(header) ? header[0] : header;
  if (!key || key.length > MAX_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(key)) {
    throw new InvalidSubmit('Idempotency-Key must be 1–255 visible ASCII characters', [{ path: 'Idempotency-Key', message: 'invalid' }]);
  }
  return key;
}

export type Claim =
  | { kind: 'claimed'; release(): Promise<void> }
  | {
      kind: 'existing';
      jobId: string;
      /** Claimed longer than CLAIM_LEASE_MS ago (claims written without a time never are). */
      stale: boolean;
      /** Replaces this claim with ours, unless it changed meanwhile. */
      takeOver(): Promise<Claim | undefined>;
    };

/**
 * The job a key already names for the same request, read without claiming the key: for a submit
 * that has work to do before it can claim (an image to fetch by URL). Undefined when the key is
 * free; IdempotencyConflict when it was used for a different request.
 */
export async function peekIdempotencyKey(
  redis: Redis,
  prefix: string,
  station: string,
  key: string,
  fp: string,
): Promise<string | undefined> {
  const raw = await redis.get(idempotencyRedisKey(prefix, station, key));
  if (!raw) return undefined;
  const existing = JSON.parse(raw) as { fp: string; jobId: string };
  if (existing.fp !== fp) throw new IdempotencyConflict('this Idempotency-Key was already used with a different request');
  return existing.jobId;
}

const idempotencyRedisKey = (prefix: string, station: string, key: string) =>
  sysKeys(prefix).idempotency(station, createHash('sha256').update(key).digest('hex'));

// Compare-and-set: the claim is replaced only while it is still the one that was read.
const TAKE_OVER = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0`;

export async function claimIdempotencyKey(
  redis: Redis,
  prefix: string,
  station: string,
  key: string,
  fp: string,
  jobId: string,
): Promise<Claim> {
  const redisKey = idempotencyRedisKey(prefix, station, key);
  const value = JSON.stringify({ fp, jobId, at: Date.now() });
  const claimed: Claim = {
    kind: 'claimed',
    release: async () => {
      // Only our own claim: a later request may have claimed the key after ours expired.
      const current = await redis.get(redisKey);
      if (current && (JSON.parse(current) as { jobId: string }).jobId === jobId) await redis.del(redisKey);
    },
  };
  const ok = await redis.set(redisKey, value, 'EX', IDEMPOTENCY_TTL_SECONDS, 'NX');
  if (ok === 'OK') return claimed;
  const raw = await redis.get(redisKey);
  if (!raw) return claimIdempotencyKey(redis, prefix, station, key, fp, jobId); // released meanwhile
  const existing = JSON.parse(raw) as { fp: string; jobId: string; at?: number };
  if (existing.fp !== fp) {
    throw new IdempotencyConflict('this Idempotency-Key was already used with a different request');
  }
  return {
    kind: 'existing',
    jobId: existing.jobId,
    stale: existing.at !== undefined && Date.now() - existing.at > CLAIM_LEASE_MS,
    takeOver: async () => ((await redis.eval(TAKE_OVER, 1, redisKey, raw, value, IDEMPOTENCY_TTL_SECONDS)) === 1 ? claimed : undefined),
  };
}

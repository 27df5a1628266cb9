import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createWebhookProcessor,
  type DeliverWebhookOptions,
  deliverWebhook,
  signStandardWebhook,
  standardWebhookKey,
  standardWebhookSecret,
  verifyStandardWebhook,
  verifyWebhookSignature,
  type WebhookJobData,
  type WebhookResult,
} from '@darkroom/webhooks';
import type { Job } from 'bullmq';
import { pino } from 'pino';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it, vi } from 'vitest';

/*
 * The Standard Webhooks headers, checked by the `standardwebhooks` library on a real local
 * receiver: what a station's receiver built on that library sees.
 */

interface Seen {
  headers: Record<string, string>;
  body: string;
}

interface Receiver {
  url: string;
  seen: Seen[];
  close: () => Promise<void>;
}

const open: Receiver[] = [];

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(open.splice(0).map((r) => r.close()));
});

/** Records every delivery; answers with the statuses in turn (the last repeats). */
async function receiver(statuses: number[] = [200]): Promise<Receiver> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      seen.push({ headers, body: Buffer.concat(chunks).toString('utf8') });
      res.statusCode = statuses[Math.min(seen.length - 1, statuses.length - 1)] ?? 200;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const r: Receiver = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  open.push(r);
  return r;
}

// A plain station secret (not `whsec_<base64>`): the key is its UTF-8 bytes.
const SECRET = 'station-secret-0123456789-ünïcode';
// What the station's Standard Webhooks receiver is configured with for it.
const RECEIVER_SECRET = `whsec_${Buffer.from(SECRET, 'utf8').toString('base64')}`;
const BODY = JSON.stringify({ id: 'edit_0123456789abcdefghjkmnpq', status: 'completed', note: 'ünïcode' });

function base(url: string, secret = SECRET): DeliverWebhookOptions {
  return { url, body: BODY, event: 'job.completed', secret, allowPrivate: true, timeoutMs: 2_000 };
}

function verifyError(secret: string, seen: Seen, body = seen.body): unknown {
  try {
    new Webhook(secret).verify(body, seen.headers);
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('Standard Webhooks headers', () => {
  it('a delivery verifies with the standardwebhooks library, keyed by whsec_ + base64(secret)', async () => {
    const r = await receiver();
    await deliverWebhook({ ...base(r.url), deliveryId: 'wh_edit_abc' });
    const s = r.seen[0]!;
    expect(s.headers['webhook-id']).toBe('wh_edit_abc');
    expect(s.headers['webhook-timestamp']).toMatch(/^\d+$/);
    expect(s.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    // The same timestamp as Darkroom-Signature's t, which still verifies as before.
    expect(s.headers['darkroom-signature']).toMatch(new RegExp(`^t=${s.headers['webhook-timestamp']},v1=[0-9a-f]{64}$`));
    expect(verifyWebhookSignature(SECRET, s.headers['darkroom-signature'], s.body)).toBe(true);

    expect(new Webhook(RECEIVER_SECRET).verify(s.body, s.headers)).toEqual(JSON.parse(BODY));
    expect(standardWebhookSecret(SECRET)).toBe(RECEIVER_SECRET);
    expect(verifyStandardWebhook(SECRET, s.headers, s.body)).toBe(true);
  });

  it('fails for a changed body or another secret', async () => {
    const r = await receiver();
    await deliverWebhook({ ...base(r.url), deliveryId: 'wh_edit_abc' });
    const s = r.seen[0]!;
    const changed = s.body.replace('completed', 'failed');
    expect(String(verifyError(RECEIVER_SECRET, s, changed))).toMatch(/No matching signature/);
    const other = `whsec_${Buffer.from('another-station-secret-0123').toString('base64')}`;
    expect(String(verifyError(other, s))).toMatch(/No matching signature/);
    // The station secret itself is not the receiver's secret (it is not base64 of the key).
    expect(verifyError(`whsec_${Buffer.from(`${SECRET}x`).toString('base64')}`, s)).toBeDefined();
    // A changed id is a changed signature too.
    expect(verifyError(RECEIVER_SECRET, { ...s, headers: { ...s.headers, 'webhook-id': 'wh_edit_other' } })).toBeDefined();
    expect(verifyStandardWebhook(SECRET, s.headers, changed)).toBe(false);
    expect(verifyStandardWebhook('another-station-secret-0123', s.headers, s.body)).toBe(false);
  });

  it('fails for a timestamp more than 5 minutes old', async () => {
    const r = await receiver();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() - 6 * 60 * 1000);
    await deliverWebhook({ ...base(r.url), deliveryId: 'wh_edit_abc' });
    vi.useRealTimers();
    const s = r.seen[0]!;
    expect(Math.floor(Date.now() / 1000) - Number(s.headers['webhook-timestamp'])).toBeGreaterThanOrEqual(359);
    expect(String(verifyError(RECEIVER_SECRET, s))).toMatch(/timestamp too old/);
    expect(verifyStandardWebhook(SECRET, s.headers, s.body)).toBe(false);
    // The signature itself is right: only its age fails it.
    expect(verifyStandardWebhook(SECRET, s.headers, s.body, { toleranceSeconds: 3600 })).toBe(true);
  });

  it('retries of one delivery keep the same webhook-id, each freshly timestamped and signed', async () => {
    const r = await receiver([503, 200]);
    const processor = createWebhookProcessor({ secretFor: () => SECRET, allowPrivate: true, logger: pino({ level: 'silent' }) });
    const job = (attemptsMade: number) =>
      ({
        id: 'wh_edit_retry',
        attemptsMade,
        data: { url: r.url, station: 'front-desk', jobId: 'edit_retry', event: 'job.completed', body: BODY },
      }) as unknown as Job<WebhookJobData, WebhookResult>;
    await expect(processor(job(0))).rejects.toThrow(/503/);
    await expect(processor(job(1))).resolves.toEqual({ status: 200 });
    expect(r.seen.map((s) => s.headers['webhook-id'])).toEqual(['wh_edit_retry', 'wh_edit_retry']);
    for (const s of r.seen) expect(new Webhook(RECEIVER_SECRET).verify(s.body, s.headers)).toEqual(JSON.parse(BODY));
  });

  it('sends a fresh webhook-id when no delivery id is given', async () => {
    const r = await receiver();
    await deliverWebhook(base(r.url));
    await deliverWebhook(base(r.url));
    const [a, b] = r.seen.map((s) => s.headers['webhook-id']);
    expect(a).toMatch(/^msg_[0-9a-f-]{36}$/);
    expect(b).not.toBe(a);
    expect(r.seen[0]!.headers['darkroom-delivery']).toBeUndefined();
    for (const s of r.seen) expect(new Webhook(RECEIVER_SECRET).verify(s.body, s.headers)).toEqual(JSON.parse(BODY));
  });

  it('a station secret of the form whsec_<base64> is the receiver secret unchanged', async () => {
    const secret = `whsec_${Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')}`;
    expect(standardWebhookSecret(secret)).toBe(secret);
    expect(standardWebhookKey(secret).toString('utf8')).toBe('0123456789abcdef0123456789abcdef');
    const r = await receiver();
    await deliverWebhook({ ...base(r.url, secret), deliveryId: 'wh_edit_abc' });
    const s = r.seen[0]!;
    expect(new Webhook(secret).verify(s.body, s.headers)).toEqual(JSON.parse(BODY));
    // Darkroom-Signature keeps keying by the whole secret string, as before.
    expect(verifyWebhookSignature(secret, s.headers['darkroom-signature'], s.body)).toBe(true);
  });

  it('a whsec_ secret that is not canonical base64 is keyed by its UTF-8 bytes', () => {
    const secret = 'whsec_test_0123456789abcdef';
    expect(standardWebhookKey(secret).toString('utf8')).toBe(secret);
    expect(standardWebhookSecret(secret)).toBe(`whsec_${Buffer.from(secret).toString('base64')}`);
  });

  it('signs "<id>.<timestamp>.<body>" as the library does', () => {
    const wh = new Webhook(RECEIVER_SECRET);
    const t = 1_700_000_000;
    expect(signStandardWebhook(SECRET, 'wh_edit_abc', BODY, t)).toBe(wh.sign('wh_edit_abc', new Date(t * 1000), BODY));
    const headers = {
      'Webhook-Id': 'wh_edit_abc',
      'Webhook-Timestamp': String(t),
      'Webhook-Signature': `v1,${'A'.repeat(43)}= ${signStandardWebhook(SECRET, 'wh_edit_abc', BODY, t)}`,
    };
    expect(verifyStandardWebhook(SECRET, headers, BODY, { now: t + 300 })).toBe(true);
    expect(verifyStandardWebhook(SECRET, headers, BODY, { now: t - 301 })).toBe(false);
    expect(
      verifyStandardWebhook(
        SECRET,
        { ...headers, 'Webhook-Signature': `v2,${signStandardWebhook(SECRET, 'wh_edit_abc', BODY, t).slice(3)}` },
        BODY,
        { now: t },
      ),
    ).toBe(false);
    expect(
      verifyStandardWebhook(SECRET, { 'webhook-id': 'wh_edit_abc', 'webhook-signature': headers['Webhook-Signature'] }, BODY, { now: t }),
    ).toBe(false);
  });
});

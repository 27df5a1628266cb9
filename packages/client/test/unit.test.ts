import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  DarkroomError,
  parseRetryAfter,
  readEventStream,
  type SseEvent,
  STANDARD_WEBHOOK_SIGNATURE_HEADER,
  standardWebhookSecret,
  verifyStandardWebhook,
  verifyWebhookSignature,
  WEBHOOK_SIGNATURE_HEADER,
} from '../src/index.ts';

/* The pieces with no server in them: the event-stream parser, Retry-After, backoff, problem bodies. */

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(ctl) {
      for (const c of chunks) ctl.enqueue(enc.encode(c));
      ctl.close();
    },
  });
}

async function parse(...chunks: string[]) {
  const events: SseEvent[] = [];
  const retries: number[] = [];
  await readEventStream(streamOf(...chunks), { onEvent: (e) => void events.push(e), onRetry: (ms) => retries.push(ms) });
  return { events, retries };
}

describe('readEventStream', () => {
  it('parses events, comments, multi-line data and retry, across any chunking and line ending', async () => {
    const text =
      '\ufeffretry: 2000\n\n: keep-alive\n\nevent: status\ndata: {"a":1}\n\nevent: progress\ndata: line1\ndata: line2\nid: 7\n\ndata:x\n\n';
    const expected = [
      { event: 'status', data: '{"a":1}' },
      { event: 'progress', data: 'line1\nline2', id: '7' },
      { event: 'message', data: 'x', id: '7' },
    ];
    for (const eol of ['\n', '\r\n', '\r']) {
      const t = text.replaceAll('\n', eol);
      // Every split point, so a CRLF or a multi-byte character cut in two is covered.
      for (let i = 0; i <= t.length; i += 3) {
        const { events, retries } = await parse(t.slice(0, i), t.slice(i));
        expect(events).toEqual(expected);
        expect(retries).toEqual([2000]);
      }
    }
  });

  it('drops an event cut off before its blank line, and stops when told to', async () => {
    expect((await parse('data: whole\n\ndata: cut')).events).toEqual([{ event: 'message', data: 'whole' }]);
    const seen: string[] = [];
    await readEventStream(streamOf('data: 1\n\ndata: 2\n\ndata: 3\n\n'), {
      onEvent: (e) => {
        seen.push(e.data);
        return e.data === '2';
      },
    });
    expect(seen).toEqual(['1', '2']);
  });

  it('keeps multi-byte characters split across chunks', async () => {
    const bytes = new TextEncoder().encode('data: «über»\n\n');
    const stream = new ReadableStream<Uint8Array>({
      start(ctl) {
        for (const b of bytes) ctl.enqueue(Uint8Array.of(b));
        ctl.close();
      },
    });
    const events: SseEvent[] = [];
    await readEventStream(stream, { onEvent: (e) => void events.push(e) });
    expect(events).toEqual([{ event: 'message', data: '«über»' }]);
  });
});

describe('retry policy', () => {
  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-22T10:00:00Z');
    expect(parseRetryAfter('3', now)).toBe(3000);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter('Sun, 22 Nov 2026 10:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Sun, 22 Nov 2026 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it('backs off exponentially with full jitter, capped', () => {
    const opts = { baseDelayMs: 100, maxDelayMs: 1000 };
    expect([0, 1, 2, 3, 4, 10].map((r) => backoffDelay(r, opts, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffDelay(3, opts, () => 0)).toBe(0);
    expect(backoffDelay(3, opts, () => 0.5)).toBe(400);
  });
});

describe('DarkroomError.fromResponse', () => {
  it('takes the problem fields, Retry-After and the request id', async () => {
    const res = new Response(
      JSON.stringify({
        type: 'https://darkroom.dev/problems/invalid-request',
        title: 'Invalid request',
        status: 400,
        detail: 'the request is invalid',
        code: 'invalid_request',
        errors: [{ path: 'params.steps', message: 'Too small' }, { bogus: true }],
      }),
      { status: 400, headers: { 'content-type': 'application/problem+json', 'retry-after': '2', 'x-request-id': 'r1' } },
    );
    const err = await DarkroomError.fromResponse(res, 'POST /v1/jobs');
    expect(err).toMatchObject({
      status: 400,
      code: 'invalid_request',
      title: 'Invalid request',
      detail: 'the request is invalid',
      errors: [{ path: 'params.steps', message: 'Too small' }],
      retryAfterMs: 2000,
      requestId: 'r1',
    });
    expect(err.message).toBe('400 invalid_request: the request is invalid (params.steps: Too small)');
  });

  it('describes an answer that is not a problem (a proxy page) by its status', async () => {
    const err = await DarkroomError.fromResponse(
      new Response('<html>bad gateway</html>', { status: 502, statusText: 'Bad Gateway', headers: { 'content-type': 'text/html' } }),
      'GET /v1/queue',
    );
    expect(err).toMatchObject({ status: 502, code: 'http_502', detail: 'Bad Gateway', errors: [] });
  });
});

describe('verifyWebhookSignature (for a station’s webhook receiver)', () => {
  const secret = 'whsec-0123456789abcdef';
  const body = '{"event":"job.completed","job":{"id":"edit_x"}}';
  const sign = (t: number, b = body, s = secret) => `t=${t},v1=${createHmac('sha256', s).update(`${t}.${b}`).digest('hex')}`;

  it('accepts a fresh signature over the raw body, and refuses a changed body, another secret or an old time', () => {
    const now = 1_800_000_000;
    expect(WEBHOOK_SIGNATURE_HEADER).toBe('Darkroom-Signature');
    expect(verifyWebhookSignature(secret, sign(now), body, { now })).toBe(true);
    expect(verifyWebhookSignature(secret, sign(now), `${body} `, { now })).toBe(false);
    expect(verifyWebhookSignature(secret, sign(now, body, 'other-secret'), body, { now })).toBe(false);
    expect(verifyWebhookSignature(secret, sign(now - 301), body, { now })).toBe(false);
    expect(verifyWebhookSignature(secret, undefined, body, { now })).toBe(false);
  });
});

describe('verifyStandardWebhook (for a station’s Standard Webhooks receiver)', () => {
  const secret = 'station-secret-0123456789';
  const body = '{"event":"job.completed","job":{"id":"edit_x"}}';
  const id = 'wh_edit_x';
  const headers = (t: number, b = body, s = secret, i = id) => ({
    'webhook-id': i,
    'webhook-timestamp': String(t),
    'webhook-signature': `v1,${createHmac('sha256', Buffer.from(s, 'utf8')).update(`${i}.${t}.${b}`).digest('base64')}`,
  });

  it('accepts a fresh signature keyed by the secret’s UTF-8 bytes, and refuses a changed body, id, another secret or an old time', () => {
    const now = 1_800_000_000;
    expect(STANDARD_WEBHOOK_SIGNATURE_HEADER).toBe('webhook-signature');
    expect(standardWebhookSecret(secret)).toBe(`whsec_${Buffer.from(secret).toString('base64')}`);
    expect(verifyStandardWebhook(secret, headers(now), body, { now })).toBe(true);
    expect(verifyStandardWebhook(secret, headers(now), `${body} `, { now })).toBe(false);
    expect(verifyStandardWebhook(secret, { ...headers(now), 'webhook-id': 'wh_edit_y' }, body, { now })).toBe(false);
    expect(verifyStandardWebhook(secret, headers(now, body, 'other-secret-0123456789'), body, { now })).toBe(false);
    expect(verifyStandardWebhook(secret, headers(now - 301), body, { now })).toBe(false);
    expect(verifyStandardWebhook(secret, {}, body, { now })).toBe(false);
  });
});

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createWebhookProcessor,
  deliverWebhook,
  type LookupFn,
  verifyWebhookSignature,
  type WebhookJobData,
  WebhookPermanentError,
  type WebhookResult,
  WebhookRetryableError,
} from '@darkroom/webhooks';
import { type Job, UnrecoverableError } from 'bullmq';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  localAddress: string | undefined;
}

interface Receiver {
  url: string;
  port: number;
  host: string;
  seen: Seen[];
  close: () => Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

const open: Receiver[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

/** A real HTTP receiver on a loopback address (ephemeral port unless given). */
async function receiver(handler: Handler = (_q, res) => res.end('ok'), host = '127.0.0.1', port = 0): Promise<Receiver> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, localAddress: req.socket.localAddress });
      handler(req, res, body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  const r: Receiver = {
    url: `http://${host}:${actual}`,
    port: actual,
    host,
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

const SECRET = 'whsec_test_0123456789abcdef';
const BODY = JSON.stringify({ id: 'edit_0123456789abcdefghjkmnpq', status: 'completed', result: { url: '/v1/jobs/x/result' } });

function base(url: string) {
  return { url, body: BODY, event: 'job.completed' as const, secret: SECRET, allowPrivate: true, timeoutMs: 5_000 };
}

/** A lookup for one name that answers from a script of addresses (the last repeats) and counts calls. */
function scriptedLookup(name: string, script: string[]): LookupFn & { calls: number } {
  const fn = Object.assign(
    async (host: string) => {
      if (host !== name) throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
      const address = script[Math.min(fn.calls, script.length - 1)] as string;
      fn.calls += 1;
      return [{ address, family: address.includes(':') ? 6 : 4 }];
    },
    { calls: 0 },
  );
  return fn;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('deliverWebhook', () => {
  it('POSTs the signed body with the documented headers', async () => {
    const r = await receiver((_q, res) => {
      res.statusCode = 202;
      res.end('accepted');
    });
    const result = await deliverWebhook({ ...base(`${r.url}/hooks/darkroom?k=1`), deliveryId: 'wh_edit_abc' });
    expect(result).toEqual({ status: 202 });
    expect(r.seen).toHaveLength(1);
    const s = r.seen[0]!;
    expect(s.method).toBe('POST');
    expect(s.url).toBe('/hooks/darkroom?k=1');
    expect(s.body).toBe(BODY);
    expect(s.headers['content-type']).toBe('application/json');
    expect(s.headers['content-length']).toBe(String(Buffer.byteLength(BODY)));
    expect(s.headers['user-agent']).toBe('Darkroom-Webhooks/1');
    expect(s.headers['darkroom-event']).toBe('job.completed');
    expect(s.headers['darkroom-delivery']).toBe('wh_edit_abc');
    expect(s.headers.host).toBe(`127.0.0.1:${r.port}`);
    const sig = s.headers['darkroom-signature'];
    expect(sig).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, sig as string, s.body)).toBe(true);
    expect(verifyWebhookSignature('some-other-secret-value', sig as string, s.body)).toBe(false);
  });

  it('sends no Darkroom-Delivery header when no id is given, and passes the event through', async () => {
    const r = await receiver((_q, res) => {
      res.statusCode = 204;
      res.end();
    });
    expect(await deliverWebhook({ ...base(r.url), event: 'job.cancelled' })).toEqual({ status: 204 });
    expect(r.seen[0]!.headers['darkroom-delivery']).toBeUndefined();
    expect(r.seen[0]!.headers['darkroom-event']).toBe('job.cancelled');
  });

  it('refuses 127.0.0.1 permanently when private targets are not allowed, without connecting', async () => {
    const r = await receiver();
    const err = await rejection(deliverWebhook({ ...base(`${r.url}/hook`), allowPrivate: false }));
    expect(err).toBeInstanceOf(WebhookPermanentError);
    expect((err as Error).message).toMatch(/refused/);
    expect(r.seen).toHaveLength(0);
  });

  it('refuses a name that resolves to loopback permanently when private targets are not allowed', async () => {
    const r = await receiver();
    const lookup = scriptedLookup('hooks.example.test', ['127.0.0.1']);
    const err = await rejection(deliverWebhook({ ...base(`http://hooks.example.test:${r.port}/`), allowPrivate: false, lookup }));
    expect(err).toBeInstanceOf(WebhookPermanentError);
    expect(r.seen).toHaveLength(0);
  });

  it('keeps the URL host name in the Host header while connecting to the resolved address', async () => {
    const r = await receiver();
    const lookup = scriptedLookup('hooks.example.test', ['127.0.0.1']);
    expect(await deliverWebhook({ ...base(`http://hooks.example.test:${r.port}/x`), lookup })).toEqual({ status: 200 });
    expect(r.seen[0]!.headers.host).toBe(`hooks.example.test:${r.port}`);
    expect(lookup.calls).toBe(1);
  });

  it('connects to the address the check vetted, not to a later DNS answer (no rebinding)', async () => {
    const a = await receiver(undefined, '127.0.0.1');
    const b = await receiver(undefined, '127.0.0.2', a.port); // same port on another loopback address
    const lookup = scriptedLookup('rebind.example.test', ['127.0.0.1', '127.0.0.2']);
    const url = `http://rebind.example.test:${a.port}/hook`;

    await deliverWebhook({ ...base(url), lookup });
    expect(lookup.calls).toBe(1); // checked once; the connection used the vetted answer, not a second lookup
    expect(a.seen).toHaveLength(1);
    expect(a.seen[0]!.localAddress).toBe('127.0.0.1');
    expect(b.seen).toHaveLength(0);

    // The next delivery checks again and goes where that check said.
    await deliverWebhook({ ...base(url), lookup });
    expect(lookup.calls).toBe(2);
    expect(b.seen).toHaveLength(1);
    expect(b.seen[0]!.localAddress).toBe('127.0.0.2');
    expect(a.seen).toHaveLength(1);
  });

  it('a name that rebinds to loopback after a public check never reaches the loopback receiver', async () => {
    const r = await receiver();
    // Check time: a public address (unreachable here); any later lookup would say 127.0.0.1.
    const lookup = scriptedLookup('rebind.example.test', ['93.184.216.34', '127.0.0.1']);
    const err = await rejection(
      deliverWebhook({ ...base(`http://rebind.example.test:${r.port}/`), allowPrivate: false, lookup, timeoutMs: 300 }),
    );
    expect(err).toBeInstanceOf(WebhookRetryableError);
    expect(lookup.calls).toBe(1);
    expect(r.seen).toHaveLength(0);
  });

  it.each([500, 502, 503, 429, 408])('treats %i as retryable', async (status) => {
    const r = await receiver((_q, res) => {
      res.statusCode = status;
      res.end('nope');
    });
    const err = await rejection(deliverWebhook(base(r.url)));
    expect(err).toBeInstanceOf(WebhookRetryableError);
    expect((err as WebhookRetryableError).status).toBe(status);
    expect((err as Error).name).toBe('WebhookRetryableError');
  });

  it.each([400, 401, 403, 404, 410, 413])('treats %i as permanent', async (status) => {
    const r = await receiver((_q, res) => {
      res.statusCode = status;
      res.end('nope');
    });
    const err = await rejection(deliverWebhook(base(r.url)));
    expect(err).toBeInstanceOf(WebhookPermanentError);
    expect((err as WebhookPermanentError).status).toBe(status);
    expect((err as Error).name).toBe('WebhookPermanentError');
  });

  it.each([301, 302, 307, 308])('does not follow a %i redirect and fails permanently', async (status) => {
    const target = await receiver();
    const r = await receiver((_q, res) => {
      res.writeHead(status, { Location: `${target.url}/elsewhere` });
      res.end();
    });
    const err = await rejection(deliverWebhook(base(r.url)));
    expect(err).toBeInstanceOf(WebhookPermanentError);
    expect((err as Error).message).toMatch(/redirect/);
    expect(r.seen).toHaveLength(1);
    expect(target.seen).toHaveLength(0);
  });

  it('times out a receiver that never answers as retryable', async () => {
    const r = await receiver(() => {
      /* never answer */
    });
    const err = await rejection(deliverWebhook({ ...base(r.url), timeoutMs: 300 }));
    expect(err).toBeInstanceOf(WebhookRetryableError);
    expect((err as Error).message).toMatch(/no answer within 300 ms/);
  });

  it('times out a receiver that sends headers but never finishes the body, keeping the status', async () => {
    const r = await receiver((_q, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('partial');
    });
    expect(await deliverWebhook({ ...base(r.url), timeoutMs: 300 })).toEqual({ status: 200 });
  });

  it('resolves when the receiver answers with a huge body (reads at most 64 KB)', async () => {
    let written = 0;
    const limit = 64 * 1024 * 1024;
    const r = await receiver((_q, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = () => {
        while (written < limit && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (!res.destroyed) res.end();
      };
      pump();
    });
    expect(await deliverWebhook({ ...base(r.url), timeoutMs: 10_000 })).toEqual({ status: 200 });
    // It stopped reading: the receiver could not push its whole answer through.
    expect(written).toBeLessThan(limit);
  });

  it('treats a refused connection as retryable', async () => {
    const r = await receiver();
    await r.close();
    const err = await rejection(deliverWebhook(base(r.url)));
    expect(err).toBeInstanceOf(WebhookRetryableError);
    expect((err as Error).message).toMatch(/could not reach the receiver/);
  });

  it('treats a connection dropped without an answer as retryable', async () => {
    const r = await receiver((req) => req.socket.destroy());
    const err = await rejection(deliverWebhook(base(r.url)));
    expect(err).toBeInstanceOf(WebhookRetryableError);
  });

  it('fails permanently on a name that does not exist and retries on a temporary DNS failure', async () => {
    const missing: LookupFn = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    const flaky: LookupFn = async () => {
      throw Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' });
    };
    expect(await rejection(deliverWebhook({ ...base('https://gone.example.test/'), lookup: missing }))).toBeInstanceOf(
      WebhookPermanentError,
    );
    expect(await rejection(deliverWebhook({ ...base('https://flaky.example.test/'), lookup: flaky }))).toBeInstanceOf(
      WebhookRetryableError,
    );
  });

  it('fails as retryable when its signal is aborted', async () => {
    const r = await receiver(() => {
      /* never answer */
    });
    const controller = new AbortController();
    const p = deliverWebhook({ ...base(r.url), signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    expect(await rejection(p)).toBeInstanceOf(WebhookRetryableError);
  });
});

describe('createWebhookProcessor', () => {
  function capture() {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
    return { logger, lines };
  }

  function job(data: Partial<WebhookJobData> & { url: string }, id = 'wh_edit_abc'): Job<WebhookJobData, WebhookResult> {
    return {
      id,
      attemptsMade: 0,
      data: { station: 'front-desk', jobId: 'edit_abc', event: 'job.completed', body: BODY, ...data },
    } as unknown as Job<WebhookJobData, WebhookResult>;
  }

  it('delivers with the station secret and the BullMQ job id as delivery id, logging no secrets', async () => {
    const r = await receiver();
    const { logger, lines } = capture();
    const processor = createWebhookProcessor({ secretFor: (s) => (s === 'front-desk' ? SECRET : undefined), allowPrivate: true, logger });
    expect(await processor(job({ url: `${r.url}/hook?token=receiver-private-token` }))).toEqual({ status: 200 });
    const s = r.seen[0]!;
    expect(s.headers['darkroom-delivery']).toBe('wh_edit_abc');
    expect(verifyWebhookSignature(SECRET, s.headers['darkroom-signature'] as string, s.body)).toBe(true);
    const log = lines.join('');
    expect(log).toContain('webhook delivered');
    expect(log).not.toContain(SECRET);
    expect(log).not.toContain('v1=');
    expect(log).not.toContain('receiver-private-token');
  });

  it('maps a refused target to UnrecoverableError', async () => {
    const r = await receiver();
    const { logger, lines } = capture();
    const processor = createWebhookProcessor({ secretFor: () => SECRET, allowPrivate: false, logger });
    const err = await rejection(processor(job({ url: `${r.url}/hook` })));
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(r.seen).toHaveLength(0);
    expect(lines.join('')).not.toContain(SECRET);
  });

  it('maps a 404 to UnrecoverableError', async () => {
    const r = await receiver((_q, res) => {
      res.statusCode = 404;
      res.end();
    });
    const processor = createWebhookProcessor({ secretFor: () => SECRET, allowPrivate: true, logger: capture().logger });
    expect(await rejection(processor(job({ url: r.url })))).toBeInstanceOf(UnrecoverableError);
  });

  it('rethrows a retryable failure as a plain Error so BullMQ retries it', async () => {
    const r = await receiver((_q, res) => {
      res.statusCode = 500;
      res.end();
    });
    const { logger, lines } = capture();
    const processor = createWebhookProcessor({ secretFor: () => SECRET, allowPrivate: true, logger });
    const err = await rejection(processor(job({ url: r.url })));
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect(err).not.toBeInstanceOf(WebhookRetryableError);
    expect((err as Error).message).toMatch(/500/);
    expect(lines.join('')).not.toContain(SECRET);
  });

  it('passes the timeout through', async () => {
    const r = await receiver(() => {
      /* never answer */
    });
    const processor = createWebhookProcessor({ secretFor: () => SECRET, allowPrivate: true, timeoutMs: 300, logger: capture().logger });
    const err = await rejection(processor(job({ url: r.url })));
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/no answer within 300 ms/);
  });

  it('drops a job whose station has no secret as unrecoverable', async () => {
    const r = await receiver();
    const processor = createWebhookProcessor({ secretFor: () => undefined, allowPrivate: true, logger: capture().logger });
    expect(await rejection(processor(job({ url: r.url })))).toBeInstanceOf(UnrecoverableError);
    expect(r.seen).toHaveLength(0);
  });
});

/** A self-signed certificate for hooks.example.test, made with the openssl CLI when there is one. */
function selfSigned(): { key: Buffer; cert: Buffer } | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'darkroom-wh-tls-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=hooks.example.test',
        '-addext',
        'subjectAltName=DNS:hooks.example.test',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore', timeout: 20_000 },
    );
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const tls = selfSigned();

describe.skipIf(!tls)('deliverWebhook over https', () => {
  async function tlsReceiver() {
    const servernames: Array<string | false> = [];
    let requests = 0;
    const server = https.createServer(
      {
        ...tls!,
        SNICallback: (name, cb) => {
          servernames.push(name);
          cb(null, undefined);
        },
      },
      (_req, res) => {
        requests += 1;
        res.end('ok');
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    open.push({
      url: `https://127.0.0.1:${port}`,
      port,
      host: '127.0.0.1',
      seen: [],
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    });
    return { port, servernames, requests: () => requests };
  }

  it('sends the URL host name as SNI to the vetted address and verifies the certificate', async () => {
    const r = await tlsReceiver();
    const lookup = scriptedLookup('hooks.example.test', ['127.0.0.1']);
    const err = await rejection(deliverWebhook({ ...base(`https://hooks.example.test:${r.port}/hook`), lookup }));
    // The certificate is self-signed, so verification (left on) refuses it; worth retrying.
    expect(err).toBeInstanceOf(WebhookRetryableError);
    expect((err as Error).message).toMatch(/SELF_SIGNED/);
    expect(r.servernames).toEqual(['hooks.example.test']);
    expect(r.requests()).toBe(0);
    expect(lookup.calls).toBe(1);
  });

  it('sends no SNI for an IP literal', async () => {
    const r = await tlsReceiver();
    const err = await rejection(deliverWebhook(base(`https://127.0.0.1:${r.port}/hook`)));
    expect(err).toBeInstanceOf(WebhookRetryableError);
    expect(r.servernames).toEqual([]);
    expect(r.requests()).toBe(0);
  });
});

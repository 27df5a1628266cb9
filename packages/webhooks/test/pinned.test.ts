import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type LookupFn, VettedGetError, vettedGet } from '@darkroom/webhooks';
import { afterEach, describe, expect, it } from 'vitest';

/*
 * vettedGet: a GET through the SSRF guard, pinned to the checked addresses, with every redirect
 * checked again. Real HTTP servers on loopback; the guard lets the test's own address through
 * with `allowAddress`, so every other private address is still refused as in production.
 */

interface Server {
  port: number;
  seen: { url: string; host: string | undefined }[];
  close: () => Promise<void>;
}

const open: Server[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Server> {
  const seen: Server['seen'] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', host: req.headers.host });
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const s: Server = {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  open.push(s);
  return s;
}

const onlyLoopbackV4 = (a: string) => a === '127.0.0.1';
const signal = () => AbortSignal.timeout(5_000);

async function body(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function failure(p: Promise<unknown>): Promise<VettedGetError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VettedGetError);
  return err as VettedGetError;
}

describe('vettedGet', () => {
  it('connects to the checked address of a name, with the name as Host', async () => {
    const s = await serve((_req, res) => res.end('hello'));
    const asked: string[] = [];
    const lookup: LookupFn = async (host) => {
      asked.push(host);
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const res = await vettedGet(`http://images.test:${s.port}/a.jpg?x=1`, {
      allowPrivate: false,
      allowAddress: onlyLoopbackV4,
      lookup,
      signal: signal(),
    });
    expect(res.statusCode).toBe(200);
    expect(await body(res)).toBe('hello');
    // Resolved once, by the guard: the connection used that answer, not a second lookup.
    expect(asked).toEqual(['images.test']);
    expect(s.seen).toEqual([{ url: '/a.jpg?x=1', host: `images.test:${s.port}` }]);
  });

  it('refuses a private address before any connection is made', async () => {
    const s = await serve((_req, res) => res.end('secret'));
    const err = await failure(vettedGet(`http://127.0.0.1:${s.port}/`, { allowPrivate: false, signal: signal() }));
    expect(err.kind).toBe('refused');
    expect(err.message).toBe('the host resolves to a loopback, private, link-local or reserved address, which is not allowed');
    const named = await failure(
      vettedGet(`http://intranet.test:${s.port}/`, {
        allowPrivate: false,
        lookup: async () => [{ address: '10.1.2.3', family: 4 }],
        signal: signal(),
      }),
    );
    expect(named.kind).toBe('refused');
    expect(named.message).not.toContain('10.1.2.3');
    expect(s.seen).toEqual([]);
  });

  it('follows a redirect to an allowed target, checking it again', async () => {
    const target = await serve((_req, res) => res.end('moved here'));
    const first = await serve((_req, res) => {
      res.writeHead(302, { Location: `http://127.0.0.1:${target.port}/final` });
      res.end();
    });
    const res = await vettedGet(`http://127.0.0.1:${first.port}/start`, {
      allowPrivate: false,
      allowAddress: onlyLoopbackV4,
      signal: signal(),
    });
    expect(await body(res)).toBe('moved here');
    expect(target.seen.map((x) => x.url)).toEqual(['/final']);
  });

  it('refuses a redirect to a private address, naming neither it nor the target', async () => {
    const first = await serve((_req, res) => {
      res.writeHead(307, { Location: 'http://169.254.169.254/latest/meta-data/' });
      res.end();
    });
    const err = await failure(
      vettedGet(`http://127.0.0.1:${first.port}/`, { allowPrivate: false, allowAddress: onlyLoopbackV4, signal: signal() }),
    );
    expect(err.kind).toBe('refused');
    expect(err.message).toBe("a redirect's target resolves to a loopback, private, link-local or reserved address, which is not allowed");
    expect(err.message).not.toContain('169.254');
  });

  it('refuses a redirect to a name that resolves to a private address', async () => {
    const first = await serve((_req, res) => {
      res.writeHead(301, { Location: 'http://metadata.test/' });
      res.end();
    });
    const lookup: LookupFn = async () => [{ address: '192.168.0.10', family: 4 }];
    const err = await failure(
      vettedGet(`http://127.0.0.1:${first.port}/`, { allowPrivate: false, allowAddress: onlyLoopbackV4, lookup, signal: signal() }),
    );
    expect(err.kind).toBe('refused');
  });

  it('refuses a redirect out of http(s)', async () => {
    const first = await serve((_req, res) => {
      res.writeHead(302, { Location: 'file:///etc/passwd' });
      res.end();
    });
    const err = await failure(vettedGet(`http://127.0.0.1:${first.port}/`, { allowPrivate: true, signal: signal() }));
    expect(err.kind).toBe('refused');
    expect(err.message).toBe("a redirect's target must use http or https");
  });

  it('stops after the redirect limit', async () => {
    const loop = await serve((req, res) => {
      res.writeHead(302, { Location: `${req.url}x` });
      res.end();
    });
    const err = await failure(vettedGet(`http://127.0.0.1:${loop.port}/r`, { allowPrivate: true, maxRedirects: 2, signal: signal() }));
    expect(err).toMatchObject({ kind: 'unreachable', message: 'more than 2 redirects' });
    expect(loop.seen.map((x) => x.url)).toEqual(['/r', '/rx', '/rxx']);
  });

  it('answers a status other than 2xx as unreachable, naming the status', async () => {
    const s = await serve((_req, res) => {
      res.statusCode = 503;
      res.end('down');
    });
    const err = await failure(vettedGet(`http://127.0.0.1:${s.port}/`, { allowPrivate: true, signal: signal() }));
    expect(err).toMatchObject({ kind: 'unreachable', message: 'the server answered 503' });
  });

  it('answers a name that does not resolve, and a closed port, as unreachable', async () => {
    const lookup: LookupFn = async () => {
      throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' });
    };
    const dns = await failure(vettedGet('http://nowhere.test/', { allowPrivate: false, lookup, signal: signal() }));
    expect(dns).toMatchObject({ kind: 'unreachable', message: 'the host name could not be resolved' });
    const s = await serve((_req, res) => res.end());
    const port = s.port;
    await s.close();
    open.length = 0;
    const closed = await failure(vettedGet(`http://127.0.0.1:${port}/`, { allowPrivate: true, signal: signal() }));
    expect(closed).toMatchObject({ kind: 'unreachable', message: 'could not reach the server (ECONNREFUSED)' });
  });

  it('throws the signal reason when it aborts before an answer', async () => {
    await serve(() => {}); // never answers
    const s = open[0]!;
    const reason = new Error('too slow');
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 100);
    await expect(vettedGet(`http://127.0.0.1:${s.port}/`, { allowPrivate: true, signal: controller.signal })).rejects.toBe(reason);
  });
});

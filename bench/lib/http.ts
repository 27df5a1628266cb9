import net from 'node:net';
import { now, type Summary, sleep, summarize } from './stats.ts';

/*
 * A minimal HTTP/1.1 keep-alive client on raw sockets. The load generator shares two cores with
 * the api and Redis, so it must cost as little CPU per request as possible: requests are
 * pre-serialised byte buffers written in one call, and responses are framed by Content-Length
 * (or chunked encoding) without building header objects. One request in flight per connection
 * (no pipelining), as a real client with a keep-alive agent behaves.
 */

export interface HttpResponse {
  status: number;
  body: Buffer;
}

const HEAD_END = Buffer.from('\r\n\r\n');

export class Connection {
  readonly socket: net.Socket;
  alive = true;
  #buf: Buffer | undefined;
  #waiting: { resolve: (r: HttpResponse) => void; reject: (e: Error) => void } | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.#onData(d));
    const dead = (err?: Error) => {
      this.alive = false;
      const w = this.#waiting;
      this.#waiting = undefined;
      w?.reject(err ?? new Error('connection closed'));
    };
    socket.on('error', dead);
    socket.on('close', () => dead());
  }

  static open(host: string, port: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new Connection(s));
      });
      s.once('error', reject);
    });
  }

  request(bytes: Buffer): Promise<HttpResponse> {
    if (!this.alive) return Promise.reject(new Error('connection closed'));
    if (this.#waiting) return Promise.reject(new Error('a request is already in flight on this connection'));
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.socket.write(bytes);
    });
  }

  close(): void {
    this.alive = false;
    this.socket.destroy();
  }

  #onData(d: Buffer): void {
    this.#buf = this.#buf ? Buffer.concat([this.#buf, d]) : d;
    const buf = this.#buf;
    const headEnd = buf.indexOf(HEAD_END);
    if (headEnd < 0) return;
    const head = buf.toString('latin1', 0, headEnd);
    const status = Number(head.slice(9, 12));
    const start = headEnd + 4;
    const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
    let body: Buffer | undefined;
    let rest: Buffer | undefined;
    if (cl) {
      const end = start + Number(cl[1]);
      if (buf.length < end) return;
      body = buf.subarray(start, end);
      rest = buf.length > end ? buf.subarray(end) : undefined;
    } else if (/\r\ntransfer-encoding:[ \t]*chunked/i.test(head)) {
      const parts: Buffer[] = [];
      let i = start;
      for (;;) {
        const eol = buf.indexOf('\r\n', i, 'latin1');
        if (eol < 0) return;
        const size = Number.parseInt(buf.toString('latin1', i, eol), 16);
        if (size === 0) {
          // the last chunk, then an empty trailer line (trailers are not used by the api)
          if (buf.length < eol + 4) return;
          body = Buffer.concat(parts);
          rest = buf.length > eol + 4 ? buf.subarray(eol + 4) : undefined;
          break;
        }
        if (buf.length < eol + 2 + size + 2) return;
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        i = eol + 2 + size + 2;
      }
    } else {
      return; // read to close: not used by the api's JSON answers
    }
    this.#buf = rest;
    if (/\r\nconnection:[ \t]*close/i.test(head)) this.alive = false;
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.resolve({ status, body: body! });
  }
}

/** A pre-serialised HTTP/1.1 request. */
export function buildRequest(opts: {
  method: string;
  path: string;
  host: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}): Buffer {
  const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
  let head = `${opts.method} ${opts.path} HTTP/1.1\r\nHost: ${opts.host}\r\nConnection: keep-alive\r\n`;
  for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
  if (body) head += `Content-Length: ${body.length}\r\n`;
  head += '\r\n';
  return body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : Buffer.from(head, 'latin1');
}

/** A multipart/form-data body: text fields and one file part. */
export function multipartBody(fields: Record<string, string>, file: { name: string; filename: string; type: string; data: Buffer }) {
  const boundary = '----darkroombench7d1c5e0f4a2b';
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  parts.push(
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${file.name}"; filename="${file.filename}"\r\nContent-Type: ${file.type}\r\n\r\n`,
    ),
  );
  parts.push(file.data, Buffer.from(`\r\n--${boundary}--\r\n`));
  return { contentType: `multipart/form-data; boundary=${boundary}`, body: Buffer.concat(parts) };
}

export interface LoadResult {
  /** Answers with the expected status inside the measuring window. */
  ok: number;
  /** Answers with the expected status in the whole run, warm-up included (jobs created). */
  totalOk: number;
  errors: number;
  /** Expected answers per second inside the window. */
  rate: number;
  windowMs: number;
  latency: Summary;
  firstError?: string;
}

/**
 * Closed loop: `connections` clients, each sending its next request as soon as the previous one
 * is answered, for warmup + duration; only answers inside the window after the warm-up count.
 */
export async function closedLoop(opts: {
  host: string;
  port: number;
  connections: number;
  warmupMs: number;
  durationMs: number;
  request: () => Buffer;
  expect: number;
  /** Stop after this many requests instead of at the end of the window. */
  count?: number;
  /** Called with each expected answer inside the window. */
  onOk?: (res: HttpResponse) => void;
}): Promise<LoadResult> {
  const conns = await Promise.all(Array.from({ length: opts.connections }, () => Connection.open(opts.host, opts.port)));
  const t0 = now();
  const from = t0 + opts.warmupMs;
  const to = from + opts.durationMs;
  let ok = 0;
  let totalOk = 0;
  let errors = 0;
  let issued = 0;
  let firstError: string | undefined;
  const lat: number[] = [];
  const more = () => (opts.count === undefined ? now() < to : issued++ < opts.count);
  const loop = async (i: number) => {
    let c = conns[i]!;
    while (more()) {
      const start = now();
      try {
        if (!c.alive) c = conns[i] = await Connection.open(opts.host, opts.port);
        const res = await c.request(opts.request());
        const end = now();
        if (res.status === opts.expect) totalOk++;
        if (opts.count === undefined && (start < from || end > to)) continue;
        if (res.status === opts.expect) {
          ok++;
          lat.push(end - start);
          opts.onOk?.(res);
        } else {
          errors++;
          firstError ??= `HTTP ${res.status}: ${res.body.toString('utf8', 0, 300)}`;
        }
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        await sleep(5);
      }
    }
  };
  await Promise.all(conns.map((_, i) => loop(i)));
  const windowMs = opts.count === undefined ? opts.durationMs : now() - t0;
  for (const c of conns) c.close();
  return { ok, totalOk, errors, rate: ok / (windowMs / 1000), windowMs, latency: summarize(lat), firstError };
}

export interface OpenLoopResult extends LoadResult {
  targetRate: number;
  /** Scheduled send time → answer: includes any delay before the request could be written. */
  fromSchedule: Summary;
  /** How late requests were written against their schedule (client timer lag, busy pool). */
  sendLag: Summary;
  connectionsUsed: number;
}

/**
 * Open loop: requests are issued at a fixed rate whatever the answers do (no coordinated
 * omission). Each request takes an idle keep-alive connection (first idle first), or a new one.
 * `latency` is write → answer; `fromSchedule` is scheduled time → answer.
 */
export async function openLoop(opts: {
  host: string;
  port: number;
  rate: number;
  warmupMs: number;
  durationMs: number;
  maxConnections: number;
  request: () => Buffer;
  expect: number;
}): Promise<OpenLoopResult> {
  const idle: Connection[] = await Promise.all(
    Array.from({ length: Math.min(opts.maxConnections, 32) }, () => Connection.open(opts.host, opts.port)),
  );
  let total = idle.length;
  const waiters: ((c: Connection) => void)[] = [];
  const acquire = async (): Promise<Connection> => {
    for (;;) {
      const c = idle.shift();
      if (!c) break;
      if (c.alive) return c;
      total--;
    }
    if (total < opts.maxConnections) {
      total++;
      try {
        return await Connection.open(opts.host, opts.port);
      } catch (err) {
        total--;
        throw err;
      }
    }
    return new Promise((resolve) => waiters.push(resolve));
  };
  const release = (c: Connection) => {
    if (!c.alive) {
      total--;
      return;
    }
    const w = waiters.shift();
    if (w) w(c);
    else idle.push(c);
  };

  const interval = 1000 / opts.rate;
  const t0 = now() + 5;
  const from = t0 + opts.warmupMs;
  const to = from + opts.durationMs;
  const svc: number[] = [];
  const sched: number[] = [];
  const lag: number[] = [];
  let ok = 0;
  let totalOk = 0;
  let errors = 0;
  let firstError: string | undefined;
  const inflight = new Set<Promise<void>>();
  const fire = (at: number) => {
    const p = (async () => {
      let c: Connection | undefined;
      try {
        c = await acquire();
        const sent = now();
        const res = await c.request(opts.request());
        const end = now();
        if (res.status === opts.expect) totalOk++;
        if (at < from) return;
        if (res.status === opts.expect) {
          ok++;
          svc.push(end - sent);
          sched.push(end - at);
          lag.push(sent - at);
        } else {
          errors++;
          firstError ??= `HTTP ${res.status}: ${res.body.toString('utf8', 0, 300)}`;
        }
      } catch (err) {
        if (at >= from) errors++;
        firstError ??= (err as Error).message;
      } finally {
        if (c) release(c);
      }
    })();
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };
  let next = t0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const t = now();
      while (next <= t && next < to) {
        fire(next);
        next += interval;
      }
      if (next >= to) return resolve();
      setTimeout(tick, Math.max(0, next - now() - 0.5));
    };
    setTimeout(tick, Math.max(0, t0 - now()));
  });
  await Promise.all([...inflight]);
  for (const c of idle) c.close();
  return {
    targetRate: opts.rate,
    ok,
    totalOk,
    errors,
    rate: ok / (opts.durationMs / 1000),
    windowMs: opts.durationMs,
    latency: summarize(svc),
    fromSchedule: summarize(sched),
    sendLag: summarize(lag),
    connectionsUsed: total,
    firstError,
  };
}

/** Sequential requests on one keep-alive connection; returns each answer's latency. */
export async function sequential(opts: {
  host: string;
  port: number;
  requests: Buffer[];
  expect: number;
  check?: (res: HttpResponse, i: number) => string | undefined;
}): Promise<LoadResult> {
  let c = await Connection.open(opts.host, opts.port);
  const lat: number[] = [];
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = now();
  for (const [i, req] of opts.requests.entries()) {
    if (!c.alive) c = await Connection.open(opts.host, opts.port);
    const start = now();
    try {
      const res = await c.request(req);
      const end = now();
      const problem = res.status !== opts.expect ? `HTTP ${res.status}: ${res.body.toString('utf8', 0, 300)}` : opts.check?.(res, i);
      if (problem) {
        errors++;
        firstError ??= problem;
      } else {
        ok++;
        lat.push(end - start);
      }
    } catch (err) {
      errors++;
      firstError ??= (err as Error).message;
    }
  }
  const windowMs = now() - t0;
  c.close();
  return { ok, totalOk: ok, errors, rate: ok / (windowMs / 1000), windowMs, latency: summarize(lat), firstError };
}

import path from 'node:path';
import zlib from 'node:zlib';
import { PRIORITIES, PROBLEM_CODES, PROBLEM_TITLES, type ProblemCode, problemType } from '@darkroom/contracts';
import { ADMIN_TOKEN, listFiles, REPO_ROOT, STATIONS, type System, startSystem } from '@darkroom/testing';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totalJobs } from './helpers.ts';
import {
  anyValue,
  declaredType,
  deepJson,
  FUZZ_SCALE,
  FUZZ_SEED,
  field,
  fileName,
  filePart,
  flippedImage,
  HOSTILE_IMAGES,
  headerValue,
  hostileIdSegment,
  hugeNumberJson,
  image,
  jsonContentType,
  multipartBody,
  nastyString,
  paramsText,
  pct,
  protoJson,
  type RawPart,
  type RawStep,
  REAL_IMAGES,
  randomImageBytes,
  rawRequest,
  runs,
  truncatedImage,
  unicodeJson,
} from './hostile-arbitraries.ts';

/*
 * Property-based hostile input against the real api process: no input may hurt it. Every answer
 * is below 500; every 4xx is a problem+json body with a contract code and nothing internal in it;
 * the api stays up; only accepted (202) requests leave a job in Redis or a file on disk.
 *
 * Deterministic: DARKROOM_FUZZ_SEED overrides the fixed seed (a failure prints the seed and path
 * to replay it), DARKROOM_FUZZ_RUNS multiplies the number of cases (e.g. 10 for a long local run).
 * No worker runs, so anything queued stays visible.
 */

const MAX_UPLOAD = 1280 * 1024; // every fixture fits, so the pixel bombs reach the image checks
const PORT_TIMEOUT = 60_000 * Math.max(1, FUZZ_SCALE);
/** No case may take longer than this: more is a hang. */
const CASE_TIMEOUT_MS = 5_000;

let sys: System;
let port: number;
let leak: RegExp;

const stats = {
  cases: 0,
  fiveXx: 0,
  accepted: 0,
  deduplicated: 0,
  bare: 0,
  unanswered: 0,
  rawTimeouts: 0,
  rawNoAnswer: 0,
  dashboard4xx: 0,
  byStatus: new Map<number, number>(),
};
/** Job id → pipeline, for every 202. */
const accepted = new Map<string, string>();
/** Idempotency-Keys that created a job (only those may be held in Redis). */
const keysTaken = new Set<string>();

beforeAll(async () => {
  sys = await startSystem({
    workers: 0,
    env: {
      DARKROOM_MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
      // Larger images are spooled to disk as they arrive, so the cases reach that path too.
      DARKROOM_UPLOAD_MEMORY_BYTES: String(64 * 1024),
      // Every valid submit creates a job, so the accepted path runs all through the suite.
      DARKROOM_STATION_MAX_PENDING: 'off',
      DARKROOM_MAX_QUEUE_SIZE: 'off',
    },
  });
  port = Number(new URL(sys.url).port);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  leak = new RegExp(
    [
      esc(sys.dataDir),
      esc(REPO_ROOT),
      esc(sys.prefix),
      `127\\.0\\.0\\.1:${sys.redis.port}`,
      'node_modules',
      '\\n\\s+at ',
      '\\((?:file://)?/[^)]*:\\d+:\\d+\\)',
      '\\.(?:ts|js|mjs|cjs):\\d+',
      '\\b(?:TypeError|RangeError|SyntaxError|ReferenceError|ReplyError|WRONGTYPE|NOSCRIPT|ECONNREFUSED|ECONNRESET|MaxRetriesPerRequest)\\b',
      '\\bERR (?:syntax|wrong|unknown|invalid)',
    ].join('|'),
  );
}, 90_000);

afterAll(async () => {
  await sys?.stop();
});

// ---------------------------------------------------------------------------------------------
// Sending and judging one case

type Who = 'alpha' | 'admin' | 'none';

interface Req {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  who?: Who;
  /** Node's own HTTP parser may answer a bare 400/413/431 (no body) for what it cannot parse. */
  allowBare?: boolean;
  /** For a POST /v1/jobs: the Idempotency-Key sent, so a 202 can be recorded as holding it. */
  idemKey?: string;
  /** The case must not be accepted (e.g. a truncated JPEG). */
  never202?: boolean;
  /** Statuses this case may answer (besides any 5xx check). */
  expect?: number[];
  /** How the case is shown when it fails (raw requests). */
  label?: string;
  /** Bull Board's own API (behind the admin credential) answers its errors in its own JSON: only the status is judged. */
  dashboard?: boolean;
}

interface Answer {
  status: number;
  body: Buffer;
  json?: unknown;
}

function authHeaders(who: Who): Record<string, string> {
  if (who === 'alpha') return { authorization: `Bearer ${STATIONS.alpha.key}` };
  if (who === 'admin') return { authorization: `Bearer ${ADMIN_TOKEN}` };
  return {};
}

const describeCase = (r: Req) =>
  r.label ??
  `${r.method ?? 'GET'} ${(r.path ?? '').slice(0, 300)}${(r.path ?? '').length > 300 ? '…' : ''} headers=${JSON.stringify(r.headers ?? {}).slice(0, 400)} body=${
    r.body === undefined ? '-' : JSON.stringify(Buffer.from(r.body).toString('latin1').slice(0, 300))
  } (${r.body === undefined ? 0 : Buffer.byteLength(r.body)} bytes)`;

function failure(what: string, r: Req, a?: { status: number; body: Buffer }): Error {
  const req = describeCase(r);
  const ans = a ? `\nanswer ${a.status}: ${a.body.toString('utf8').slice(0, 600)}` : '';
  const dead = sys.api.proc.exitCode !== null || sys.api.proc.signalCode !== null;
  const log = sys.api
    .output()
    .split('\n')
    .slice(dead ? -60 : -8)
    .join('\n');
  return new Error(`${what}\nrequest: ${req}${ans}\napi log tail:\n${log}`);
}

function count(status: number) {
  stats.cases++;
  stats.byStatus.set(status, (stats.byStatus.get(status) ?? 0) + 1);
  if (status >= 500) stats.fiveXx++;
}

/** Judges one response: the shared invariants, plus what `r` says about this case. */
function judge(r: Req, status: number, headers: (name: string) => string | null | undefined, body: Buffer, allowBare: boolean): Answer {
  count(status);
  const a = { status, body };
  if (status >= 500) throw failure(`answered ${status}`, r, a);
  const type = headers('content-type') ?? '';
  let json: unknown;
  if (status >= 400) {
    // Node's HTTP parser refusing the request before the app sees it (417: an unknown Expect).
    if (!type && body.length === 0 && allowBare && [400, 408, 413, 417, 431].includes(status)) {
      stats.bare++;
      return a;
    }
    if (r.dashboard) {
      stats.dashboard4xx++;
      return a;
    }
    if (r.method === 'HEAD' && body.length === 0) return a; // a HEAD answer has the headers of a problem, no body
    if (!/^application\/problem\+json/.test(type)) throw failure(`a ${status} without a problem+json body (content-type ${type})`, r, a);
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw failure('a problem body that is not JSON', r, a);
    }
    const p = json as { type?: unknown; title?: unknown; status?: unknown; detail?: unknown; code?: unknown; errors?: unknown };
    if (!(PROBLEM_CODES as readonly unknown[]).includes(p.code))
      throw failure(`problem code ${String(p.code)} is not in the contract`, r, a);
    const code = p.code as ProblemCode;
    if (p.status !== status || p.type !== problemType(code) || p.title !== PROBLEM_TITLES[code] || typeof p.detail !== 'string') {
      throw failure('a malformed problem body', r, a);
    }
    if (leak.test(p.detail)) throw failure('the problem detail leaks internals', r, a);
    if (p.errors !== undefined) {
      if (!Array.isArray(p.errors) || p.errors.length === 0) throw failure('problem errors is not a non-empty list', r, a);
      for (const e of p.errors as { path?: unknown; message?: unknown }[]) {
        if (typeof e?.path !== 'string' || typeof e.message !== 'string' || e.message === '')
          throw failure('a field error without path/message', r, a);
        if (leak.test(e.message)) throw failure('a field error message leaks internals', r, a);
      }
    }
  } else if (/json/.test(type)) {
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw failure('a JSON answer that does not parse', r, a);
    }
  }
  if (r.expect && !r.expect.includes(status)) throw failure(`answered ${status}, expected one of ${r.expect.join(', ')}`, r, a);
  if (r.method === 'POST' && r.path?.split('?')[0] === '/v1/jobs') recordSubmit(r, status, headers, json, a);
  return { status, body, json };
}

function recordSubmit(
  r: Req,
  status: number,
  headers: (name: string) => string | null | undefined,
  json: unknown,
  a: { status: number; body: Buffer },
) {
  if (status === 202) {
    if (r.never202) throw failure('accepted a request it had to refuse', r, a);
    const b = json as { id?: string; pipeline?: string; status?: string };
    if (typeof b?.id !== 'string' || typeof b.pipeline !== 'string' || b.status !== 'queued')
      throw failure('a 202 without a queued job body', r, a);
    if (headers('location') !== `/v1/jobs/${b.id}`) throw failure('a 202 without its Location', r, a);
    if (accepted.has(b.id)) throw failure('a 202 that repeats a job id', r, a);
    accepted.set(b.id, b.pipeline);
    stats.accepted++;
    if (r.idemKey !== undefined) keysTaken.add(r.idemKey);
  } else if (status === 200) {
    const b = json as { id?: string; deduplicated?: boolean };
    if (r.idemKey === undefined || b?.deduplicated !== true || !accepted.has(String(b.id))) {
      throw failure('a 200 to a submit that is not an Idempotency-Key replay of an accepted job', r, a);
    }
    stats.deduplicated++;
  } else if (status < 400) {
    throw failure(`a submit answered ${status}`, r, a);
  }
}

/** One request over fetch (which keeps it well-formed HTTP); everything about it is judged. */
async function send(r: Req): Promise<Answer> {
  const headers = { ...authHeaders(r.who ?? 'alpha'), ...r.headers };
  let res: Response;
  try {
    res = await fetch(sys.url + (r.path ?? '/'), {
      method: r.method ?? 'GET',
      headers,
      ...(r.body !== undefined ? { body: typeof r.body === 'string' ? r.body : new Uint8Array(r.body) } : {}),
      signal: AbortSignal.timeout(CASE_TIMEOUT_MS),
      redirect: 'manual',
    });
  } catch (err) {
    const timedOut = (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError';
    if (r.allowBare && !timedOut) {
      // The parser may close on a request it refuses before undici reads the answer; a hang still fails.
      count(0);
      stats.unanswered++;
      return { status: 0, body: Buffer.alloc(0) };
    }
    throw failure(`no answer: ${(err as Error).message} ${String((err as { cause?: Error }).cause?.message ?? '')}`, r);
  }
  const body = Buffer.from(await res.arrayBuffer());
  return judge(r, res.status, (n) => res.headers.get(n), body, Boolean(r.allowBare));
}

/** Fixed seeds per property, derived from the suite's seed, so the properties do not mirror each other. */
let propertyIndex = 0;
async function property<T>(arb: fc.Arbitrary<T>, numRuns: number, predicate: (v: T) => Promise<void>) {
  const seed = (FUZZ_SEED + 7919 * ++propertyIndex) | 0;
  await fc.assert(
    fc.asyncProperty(arb, async (v) => {
      await predicate(v);
    }),
    { seed, numRuns: runs(numRuns) },
  );
}

/** After each group: nothing queued or stored beyond the accepted jobs, and the api is up. */
async function expectConsistent() {
  expect(sys.api.proc.exitCode, 'the api process exited').toBeNull();
  expect(sys.api.proc.signalCode).toBeNull();
  const health = await fetch(`${sys.url}/healthz`);
  expect(health.status).toBe(200);
  expect(await totalJobs(sys)).toBe(accepted.size);
  const expected = [...accepted].filter(([, p]) => p === 'edit').map(([id]) => path.join('inputs', id));
  expect(listFiles(sys.dataDir).sort()).toEqual(expected.sort());
}

// ---------------------------------------------------------------------------------------------
// Ways to send an image

type Via =
  | { kind: 'multipart'; filename: string | Buffer; type: string }
  | { kind: 'json'; style: 'plain' | 'dataurl' | 'base64url' | 'wrapped'; dataType: string };

const via: fc.Arbitrary<Via> = fc.oneof(
  fc.record({ kind: fc.constant('multipart' as const), filename: fileName, type: declaredType }),
  fc.record({
    kind: fc.constant('json' as const),
    style: fc.constantFrom('plain' as const, 'dataurl' as const, 'base64url' as const, 'wrapped' as const),
    dataType: fc.oneof(
      fc.constantFrom('image/png', 'image/jpeg', 'text/html', ''),
      fc.string({ maxLength: 40 }).map((s) => s.replace(/[,;]/g, '')),
    ),
  }),
);

/** Filenames busboy takes for a file part (an empty or unparsable one makes the part a text field: 400). */
const saneVia: fc.Arbitrary<Via> = fc.oneof(
  fc.record({
    kind: fc.constant('multipart' as const),
    filename: fc.constantFrom('photo.jpg', 'x.png', 'a.gif', 'scan', 'évidence.tif', '../../etc/passwd'),
    type: declaredType,
  }),
  fc.record({
    kind: fc.constant('json' as const),
    style: fc.constantFrom('plain' as const, 'dataurl' as const, 'base64url' as const, 'wrapped' as const),
    dataType: fc.constant('image/png'),
  }),
);

const BOUNDARY = '----darkroom-hostile-7d1f';

function imageRequest(data: Buffer, v: Via, extra: Partial<Req> = {}): Req {
  const params = JSON.stringify({ operations: [{ op: 'resize', width: 32 }] });
  if (v.kind === 'multipart') {
    return {
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
      body: multipartBody(BOUNDARY, [field('pipeline', 'edit'), field('params', params), filePart('image', v.filename, v.type, data)]),
      ...extra,
    };
  }
  let b64 = v.style === 'base64url' ? data.toString('base64url') : data.toString('base64');
  if (v.style === 'dataurl') b64 = `data:${v.dataType};base64,${b64}`;
  if (v.style === 'wrapped') b64 = b64.replace(/.{1,76}/g, '$&\r\n');
  return {
    method: 'POST',
    path: '/v1/jobs',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pipeline: 'edit', params: JSON.parse(params), imageBase64: b64 }),
    ...extra,
  };
}

/** Formats whose end the inspector checks: a strict prefix of one must never be accepted. */
const ENDS_CHECKED = /\.(jpe?g|png|gif|webp|avif)$/i;

// ---------------------------------------------------------------------------------------------

describe('hostile input never hurts the api', () => {
  it(
    'random bytes as the image (multipart and base64 JSON)',
    async () => {
      await property(fc.record({ data: randomImageBytes, via }), 700, async ({ data, via: v }) => {
        await send(imageRequest(data, v));
      });
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'random prefixes of every real image',
    async () => {
      for (const name of REAL_IMAGES) {
        await property(fc.record({ data: truncatedImage(name), via }), 24, async ({ data, via: v }) => {
          await send(imageRequest(data, v, { never202: ENDS_CHECKED.test(name) }));
        });
      }
      // A GIF cut right after any 0x3B inside its data ends in what looks like the trailer byte
      // (these were accepted while the check only looked at the last byte).
      const gif = image('animated-loop-3.gif');
      for (let i = 0; i < gif.length - 1; i++) {
        if (gif[i] === 0x3b)
          await send(imageRequest(gif.subarray(0, i + 1), { kind: 'json', style: 'plain', dataType: '' }, { never202: true }));
      }
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'real images with random bytes flipped',
    async () => {
      for (const name of REAL_IMAGES) {
        await property(fc.record({ data: flippedImage(name), via }), 14, async ({ data, via: v }) => {
          await send(imageRequest(data, v));
        });
      }
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'the pixel bombs, corrupt files, SVG and JPEG 2000 from the fixtures, however declared',
    async () => {
      const expected: Record<(typeof HOSTILE_IMAGES)[number], number> = {
        'truncated.jpg': 422,
        'truncated.png': 422,
        'corrupt-header.jpg': 422,
        'giant-image.jpg': 422,
        '65536-uint32-limit.png': 422,
        'check.svg': 415,
        'relax.jp2': 415,
      };
      await property(fc.record({ name: fc.constantFrom(...HOSTILE_IMAGES), via: saneVia }), 120, async ({ name, via: v }) => {
        await send(imageRequest(image(name), v, { expect: [expected[name]] }));
      });
      // And their prefixes, and the real images sent whole under every false name and type.
      await property(
        fc.record({ name: fc.constantFrom(...HOSTILE_IMAGES), frac: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), via }),
        80,
        async ({ name, frac, via: v }) => {
          const b = image(name);
          await send(imageRequest(b.subarray(0, Math.floor(frac * b.length)), v, { never202: true }));
        },
      );
      await property(fc.record({ name: fc.constantFrom(...REAL_IMAGES), via: saneVia }), 60, async ({ name, via: v }) => {
        await send(imageRequest(image(name), v, { expect: [202] }));
      });
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'broken multipart bodies',
    async () => {
      await property(brokenMultipart, 900, async (c) => {
        await send({ method: 'POST', path: '/v1/jobs', headers: { 'content-type': c.contentType }, body: c.body });
      });
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'bad JSON bodies: random text, deep nesting, huge numbers, prototype keys, odd Unicode',
    async () => {
      const text: fc.Arbitrary<Buffer> = fc.oneof(
        fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
        fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s)),
        fc.json({ maxDepth: 4 }).map((s) => Buffer.from(s)),
        deepJson.map((s) => Buffer.from(s)),
        hugeNumberJson.map((s) => Buffer.from(s)),
        protoJson.map((s) => Buffer.from(s)),
        unicodeJson,
        fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      );
      await property(fc.record({ body: text, type: jsonContentType }), 900, async ({ body, type }) => {
        await send({ method: 'POST', path: '/v1/jobs', headers: { 'content-type': type }, body });
      });
      // Compressed bodies: real gzip/deflate/br, lies about the encoding, and a small gzip bomb.
      await property(
        fc.record({
          encoding: fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-bogus', 'gzip, gzip', 'GZIP', ''),
          payload: fc.oneof(
            fc.constant('{"pipeline":"synthetic","params":{"steps":1}}'),
            fc.string({ maxLength: 50 }),
            fc.constant('bomb'),
          ),
          honest: fc.boolean(),
        }),
        120,
        async ({ encoding, payload, honest }) => {
          const raw =
            payload === 'bomb'
              ? Buffer.concat([Buffer.from('{"pipeline":"synthetic","x":"'), Buffer.alloc(8 * MAX_UPLOAD, 0x61), Buffer.from('"}')])
              : Buffer.from(payload);
          const enc = encoding.toLowerCase().split(',')[0]!.trim();
          const body = !honest
            ? raw
            : enc === 'gzip'
              ? zlib.gzipSync(raw)
              : enc === 'deflate'
                ? zlib.deflateSync(raw)
                : enc === 'br'
                  ? zlib.brotliCompressSync(raw)
                  : raw;
          await send({
            method: 'POST',
            path: '/v1/jobs',
            headers: { 'content-type': 'application/json', 'content-encoding': encoding },
            body,
          });
        },
      );
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'JSON submits whose fields are anything',
    async () => {
      const editOp = fc.record(
        {
          op: fc.oneof(
            fc.constantFrom('resize', 'crop', 'rotate', 'flip', 'flop', 'blur', 'sharpen', 'grayscale', 'modulate', 'tint', 'format'),
            nastyString,
          ),
          width: fc.oneof(fc.integer({ min: -5, max: 20_000 }), fc.double(), anyValue),
          height: fc.oneof(fc.integer({ min: 1, max: 64 }), anyValue),
          left: fc.nat(64),
          top: fc.nat(64),
          angle: fc.oneof(fc.double({ min: -400, max: 400 }), anyValue),
          sigma: fc.oneof(fc.double({ min: 0, max: 2000 }), anyValue),
          color: fc.oneof(fc.constantFrom('#fff', 'red', '#12345678'), nastyString),
          type: fc.oneof(fc.constantFrom('jpeg', 'png', 'webp', 'avif'), nastyString),
          fit: fc.oneof(fc.constantFrom('cover', 'contain', 'fill', 'inside', 'outside'), anyValue),
        },
        { requiredKeys: ['op'] },
      );
      const small = image('with-alpha.png').toString('base64');
      const submitArb = fc.record(
        {
          pipeline: fc.oneof(fc.constantFrom('edit', 'synthetic'), anyValue, nastyString),
          params: fc.oneof(
            anyValue,
            fc.record({ operations: fc.array(editOp, { maxLength: 4 }) }),
            fc.dictionary(nastyString, anyValue, { maxKeys: 3 }),
          ),
          priority: fc.oneof(fc.constantFrom(...PRIORITIES), anyValue),
          webhookUrl: fc.oneof(
            fc.webUrl(),
            anyValue,
            fc.constantFrom('http://127.0.0.1/', 'javascript:alert(1)', 'http://user:pw@example.com/', `http://${'a'.repeat(3000)}.com/`),
          ),
          imageBase64: fc.oneof(
            anyValue,
            fc.constant(small),
            randomImageBytes.map((b) => b.toString('base64')),
            nastyString,
          ),
          image: anyValue,
          extra: anyValue,
        },
        { requiredKeys: [] },
      );
      await property(submitArb, 900, async (b) => {
        await send({
          method: 'POST',
          path: '/v1/jobs',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(b) ?? 'null',
        });
      });
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'odd headers: huge values, random Content-Type, Idempotency-Key, credentials, request ids',
    async () => {
      const synthetic = JSON.stringify({ pipeline: 'synthetic', params: { steps: 1 } });
      const form = multipartBody(BOUNDARY, [field('pipeline', 'synthetic')]);
      // Huge values: Node's parser answers 431 past its header limit, the app a 4xx below it.
      await property(
        fc.record({
          name: fc.constantFrom(
            'x-junk',
            'authorization',
            'x-api-key',
            'idempotency-key',
            'content-type',
            'x-request-id',
            'cookie',
            'accept',
            'user-agent',
          ),
          size: fc.oneof(fc.integer({ min: 256, max: 15_000 }), fc.integer({ min: 16_000, max: 80_000 })),
          count: fc.integer({ min: 1, max: 3 }),
        }),
        90,
        async ({ name, size, count: n }) => {
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          for (let i = 0; i < n; i++) headers[i === 0 ? name : `${name}-${i}`] = 'v'.repeat(size);
          await send({
            method: 'POST',
            path: '/v1/jobs',
            headers,
            body: `{"pipeline":${JSON.stringify('x'.repeat(10))}}`,
            allowBare: true,
            expect: [400, 401, 404, 415, 431],
          });
        },
      );
      // Many headers.
      await property(fc.integer({ min: 50, max: 3000 }), 15, async (n) => {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        for (let i = 0; i < n; i++) headers[`x-h${i}`] = String(i);
        await send({ method: 'POST', path: '/v1/jobs', headers, body: '{}', allowBare: true });
      });
      // Random Content-Type values, with a JSON and a multipart body.
      await property(
        fc.record({
          type: fc.oneof(
            headerValue(120),
            fc.constantFrom(
              'multipart/form-data',
              'multipart/mixed; boundary=x',
              `multipart/form-data; boundary="${BOUNDARY}"`,
              `MULTIPART/FORM-DATA; BOUNDARY=${BOUNDARY}`,
            ),
          ),
          multipart: fc.boolean(),
        }),
        250,
        async ({ type, multipart }) => {
          await send({ method: 'POST', path: '/v1/jobs', headers: { 'content-type': type }, body: multipart ? form : synthetic });
        },
      );
      // Idempotency-Key: random values, and a few reused with different requests.
      await property(
        fc.record({
          key: fc.oneof(
            headerValue(300),
            fc.constantFrom('k-1', 'k-2', 'k-3', '*', ':', '{k}', 'k 1', '__proto__'),
            fc.string({ maxLength: 10 }),
          ),
          steps: fc.constantFrom(1, 2, 3),
          priority: fc.constantFrom(undefined, 'low', 'normal'),
        }),
        250,
        async ({ key, steps, priority }) => {
          await send({
            method: 'POST',
            path: '/v1/jobs',
            headers: { 'content-type': 'application/json', 'idempotency-key': key },
            body: JSON.stringify({ pipeline: 'synthetic', params: { steps }, ...(priority ? { priority } : {}) }),
            idemKey: key,
          });
        },
      );
      // Credentials and other headers with random values.
      await property(
        fc.record({
          authorization: fc.option(
            fc.oneof(
              headerValue(80),
              headerValue(40).map((v) => `Bearer ${v}`),
              headerValue(40).map((v) => `Basic ${v}`),
              fc.string({ maxLength: 30 }).map((v) => `Basic ${Buffer.from(v).toString('base64')}`),
            ),
            { nil: undefined },
          ),
          apiKey: fc.option(headerValue(60), { nil: undefined }),
          requestId: fc.option(headerValue(100), { nil: undefined }),
          accept: fc.option(headerValue(60), { nil: undefined }),
          path: fc.constantFrom(
            '/v1/jobs',
            '/v1/queue',
            '/v1/pipelines',
            '/v1/jobs?ids=a',
            '/admin/queues',
            '/v1/admin/pipelines/edit/resume',
            '/metrics',
          ),
          method: fc.constantFrom('GET', 'POST'),
        }),
        250,
        async ({ authorization, apiKey, requestId, accept, path: p, method }) => {
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (authorization !== undefined) headers.authorization = authorization;
          if (apiKey !== undefined) headers['x-api-key'] = apiKey;
          if (requestId !== undefined) headers['x-request-id'] = requestId;
          if (accept !== undefined) headers.accept = accept;
          await send({ method, path: p, headers, who: 'none', ...(method === 'POST' ? { body: '{"pipeline":"teleport"}' } : {}) });
        },
      );
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'raw HTTP fetch will not send: lying Content-Length, bad chunked encoding, half-sent bodies, junk request lines',
    async () => {
      await property(rawCase, 450, async (c) => {
        const res = await rawRequest(port, c.steps, { after: c.after, timeoutMs: c.mustAnswer ? 10_000 : 2_000 });
        const label = `raw ${c.name}: ${JSON.stringify(c.steps.map((s) => (typeof s === 'object' && 'delayMs' in s ? s : Buffer.from(s).toString('latin1').slice(0, 300))))}`;
        const method = /^([A-Z]+) /.exec(Buffer.from(c.steps[0] as string | Buffer).toString('latin1'))?.[1];
        const r: Req = c.submit ? { method: 'POST', path: '/v1/jobs', label } : { label, ...(method ? { method } : {}) };
        if (c.mustAnswer && res.responses.length === 0) throw failure(`no answer (timed out: ${res.timedOut})`, r);
        if (res.responses.length === 0) {
          count(0);
          stats.rawNoAnswer++;
        }
        if (res.timedOut) stats.rawTimeouts++;
        // Only the first answer is to this request; later ones answer bytes left over after it.
        res.responses.forEach((a, i) => {
          judge(i === 0 ? r : { label: `${label} (answer ${i + 1})` }, a.status, (n) => a.headers[n], a.body, true);
        });
      });
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'ids in paths: traversal, Redis key syntax, long and odd Unicode ids',
    async () => {
      await property(
        fc.record({
          id: hostileIdSegment,
          route: fc.constantFrom('', '/result', '/events', 'DELETE'),
          who: fc.constantFrom<Who>('alpha', 'admin'),
        }),
        700,
        async ({ id, route, who }) => {
          const p = `/v1/jobs/${id}${route === 'DELETE' ? '' : route}`;
          await send({ method: route === 'DELETE' ? 'DELETE' : 'GET', path: p, who, expect: [400, 404] });
        },
      );
      await property(
        fc.record({
          ids: fc.array(hostileIdSegment, { minLength: 1, maxLength: 130 }),
          sep: fc.constantFrom(',', '%2C', ', '),
          who: fc.constantFrom<Who>('alpha', 'admin'),
        }),
        200,
        async ({ ids, sep, who }) => {
          const a = await send({ path: `/v1/jobs?ids=${ids.map((s) => s.slice(0, 500)).join(sep)}`, who, expect: [200, 400] });
          if (a.status === 200) expect((a.json as { jobs: unknown[] }).jobs).toEqual([]);
        },
      );
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  it(
    'random query strings on every route',
    async () => {
      const routes: { method: string; path: string; who: Who; body?: string }[] = [
        { method: 'GET', path: '/healthz', who: 'none' },
        { method: 'GET', path: '/readyz', who: 'none' },
        { method: 'GET', path: '/metrics', who: 'none' },
        { method: 'GET', path: '/openapi.json', who: 'none' },
        { method: 'GET', path: '/docs', who: 'none' },
        { method: 'GET', path: '/docs/assets/init.js', who: 'none' },
        { method: 'GET', path: '/docs/assets/swagger-ui.css', who: 'none' },
        { method: 'GET', path: '/v1/pipelines', who: 'alpha' },
        { method: 'GET', path: '/v1/queue', who: 'alpha' },
        { method: 'GET', path: '/v1/queue', who: 'admin' },
        { method: 'GET', path: '/v1/jobs', who: 'alpha' },
        { method: 'GET', path: '/v1/jobs/edit_aaaaaaaaaaaaaaaaaaaaaaaa', who: 'alpha' },
        { method: 'GET', path: '/v1/jobs/edit_aaaaaaaaaaaaaaaaaaaaaaaa/result', who: 'alpha' },
        { method: 'GET', path: '/v1/jobs/edit_aaaaaaaaaaaaaaaaaaaaaaaa/events', who: 'alpha' },
        { method: 'DELETE', path: '/v1/jobs/synthetic_aaaaaaaaaaaaaaaaaaaaaaaa', who: 'alpha' },
        // A refused body, so a valid `wait` has nothing to wait for.
        { method: 'POST', path: '/v1/jobs', who: 'alpha', body: '{"pipeline":"synthetic","priority":"urgent"}' },
        { method: 'POST', path: '/v1/admin/pipelines/edit/resume', who: 'admin' },
        { method: 'POST', path: '/v1/admin/pipelines/nope/pause', who: 'admin' },
        { method: 'GET', path: '/admin/queues', who: 'admin' },
        { method: 'GET', path: '/admin/queues/api/queues', who: 'admin' },
        { method: 'GET', path: '/admin/queues/api/job-schedulers', who: 'admin' },
        { method: 'GET', path: '/admin/queues/api/redis/stats', who: 'admin' },
        { method: 'GET', path: '/admin/queues/api/queues/edit/edit_aaaaaaaaaaaaaaaaaaaaaaaa', who: 'admin' },
        { method: 'GET', path: '/nowhere', who: 'alpha' },
      ];
      const key = fc.oneof(
        fc.constantFrom(
          'wait',
          'ids',
          'page',
          'status',
          'jobsPerPage',
          'activeQueue',
          'queueName',
          'query',
          'v',
          '__proto__',
          'constructor',
          'wait[]',
          'wait[a]',
          'ids[0]',
          '',
        ),
        nastyString.map(pct),
      );
      const value = fc.oneof(
        fc.constantFrom(
          '0',
          '60',
          '60.0000001',
          '61',
          '-1',
          '1e1',
          'NaN',
          'Infinity',
          '0x10',
          '1.',
          '.5',
          ' 5',
          '',
          '%',
          '%zz',
          '%00',
          '*',
          'latest',
        ),
        fc.double().map(String),
        fc.integer().map(String),
        nastyString.map(pct),
        fc.integer({ min: 100, max: 6000 }).map((n) => 'q'.repeat(n)),
      );
      const query = fc
        .tuple(
          fc.array(fc.tuple(key, fc.option(value, { nil: undefined })), { minLength: 1, maxLength: 8 }),
          fc.constantFrom('&', '&', ';', '&&'),
        )
        .map(([kv, sep]) => kv.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join(sep));
      await property(fc.record({ route: fc.constantFrom(...routes), query }), 550, async ({ route, query: q }) => {
        const dashboard = route.path.startsWith('/admin/queues/');
        await send({
          method: route.method,
          path: `${route.path}?${q}`,
          who: route.who,
          allowBare: true,
          dashboard,
          ...(route.body ? { body: route.body, headers: { 'content-type': 'application/json' } } : {}),
        });
      });
      // A valid submit with only short or invalid waits, so no case holds the connection long.
      await property(
        fc.oneof(
          fc.constantFrom('0', '0.0', '0.001', '0.05', '', '61', '-0', '1e-3', '0,1', 'wait', '0.01&wait=0.02'),
          fc.double({ min: 0, max: 0.05, noNaN: true }).map(String),
        ),
        60,
        async (w) => {
          await send({
            method: 'POST',
            path: `/v1/jobs?wait=${w}`,
            headers: { 'content-type': 'application/json' },
            body: '{"pipeline":"synthetic","params":{"steps":1}}',
          });
        },
      );
      await expectConsistent();
    },
    PORT_TIMEOUT,
  );

  // Bull Board's API decodes `activeQueue`/`queueName` a second time (URIError) and uses NUL as a
  // separator in its own error messages (SyntaxError); dashboard.ts answers both as 400.
  it('Bull Board: a malformed activeQueue/queueName is a 4xx, without internals', async () => {
    const res = await fetch(`${sys.url}/admin/queues/api/queues?activeQueue=%25`, { headers: authHeaders('admin') });
    await res.arrayBuffer();
    expect(res.status).toBeLessThan(500);
  });
  it('Bull Board: a NUL in a query value is a 4xx, without internals', async () => {
    const res = await fetch(`${sys.url}/admin/queues/api/queues?activeQueue=edit&status=%00`, { headers: authHeaders('admin') });
    await res.arrayBuffer();
    expect(res.status).toBeLessThan(500);
  });

  it('the api survived, holds exactly the accepted jobs, and stored nothing else', async () => {
    expect(stats.fiveXx).toBe(0);
    await expectConsistent();
    expect(listFiles(path.join(sys.dataDir, 'tmp'))).toEqual([]);
    const redis = new Redis(sys.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      // Only accepted jobs hold a pending slot or an Idempotency-Key.
      expect(await redis.scard(`${sys.prefix}:sys:pending:${STATIONS.alpha.name}`)).toBe(accepted.size);
      const idem: string[] = [];
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${sys.prefix}:sys:idem:*`, 'COUNT', 1000);
        cursor = next;
        idem.push(...keys);
      } while (cursor !== '0');
      expect(idem.length).toBe(keysTaken.size);
    } finally {
      redis.disconnect();
    }
    const alive = sys.api.proc.exitCode === null && sys.api.proc.signalCode === null;
    expect(alive).toBe(true);
    const statuses = [...stats.byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s || 'none'}:${n}`);
    console.log(
      `hostile: ${stats.cases} cases, ${stats.fiveXx} 5xx, ${stats.accepted} accepted, ${stats.deduplicated} deduplicated, ${stats.bare} bare parser answers, ${stats.unanswered} dropped by the parser before an answer, ${stats.rawNoAnswer} raw requests given up by the client (${stats.rawTimeouts} left waiting), ${stats.dashboard4xx} Bull Board 4xx in its own JSON, api ${alive ? 'alive' : 'DEAD'}; seed ${FUZZ_SEED}, scale ${FUZZ_SCALE}; statuses ${statuses.join(' ')}`,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Broken multipart

const smallPng = () => image('with-alpha.png');

const part: fc.Arbitrary<RawPart> = fc.oneof(
  fc.oneof(fc.constantFrom('edit', 'synthetic'), nastyString).map((v) => field('pipeline', v)),
  paramsText.map((v) => field('params', v)),
  fc.oneof(fc.constantFrom(...PRIORITIES), nastyString).map((v) => field('priority', v)),
  fc.oneof(fc.webUrl(), nastyString).map((v) => field('webhookUrl', v)),
  fc
    .record({ data: fc.oneof(fc.constant(null), randomImageBytes), filename: fileName, type: declaredType })
    .map(({ data, filename, type }) => filePart('image', filename, type, data ?? smallPng())),
  fc.constant(null).map(() => field('image', smallPng().toString('base64'))),
  fc.constant(null).map(() => field('imageBase64', smallPng().toString('base64'))),
  fc
    .record({ name: nastyString, data: randomImageBytes })
    .map(({ name, data }) => filePart(name.replace(/["\r\n]/g, ''), 'x.bin', 'application/octet-stream', data)),
  // Huge part headers.
  fc
    .record({
      size: fc.oneof(fc.integer({ min: 100, max: 20_000 }), fc.integer({ min: 20_000, max: 200_000 })),
      where: fc.constantFrom('extra', 'name', 'filename'),
    })
    .map(({ size, where }) => {
      const pad = 'h'.repeat(size);
      if (where === 'name') return field(pad, 'x');
      if (where === 'filename') return filePart('image', pad, 'image/png', smallPng());
      return field('pipeline', 'synthetic', [Buffer.from(`X-Pad: ${pad}`)]);
    }),
  // Non-UTF-8 and RFC 5987 names, bogus charsets, odd dispositions.
  fc
    .uint8Array({ minLength: 1, maxLength: 16 })
    .map((n) => field(Buffer.from(n.filter((c) => c !== 0x22 && c !== 0x0d && c !== 0x0a)), 'x')),
  fc.constantFrom(
    { headers: [Buffer.from("Content-Disposition: form-data; name*=utf-8''%FF%FE%2e")], body: Buffer.from('edit') },
    { headers: [Buffer.from("Content-Disposition: form-data; name*=x-bogus''pipeline")], body: Buffer.from('edit') },
    { headers: [Buffer.from("Content-Disposition: form-data; name*=''")], body: Buffer.from('edit') },
    { headers: [Buffer.from("Content-Disposition: form-data; name=image; filename*=utf-16''%D8%00")], body: Buffer.from('abc') },
    {
      headers: [
        Buffer.from('Content-Disposition: form-data; name="params"'),
        Buffer.from('Content-Type: application/json; charset=x-bogus'),
      ],
      body: Buffer.from('{}'),
    },
    {
      headers: [Buffer.from('Content-Disposition: form-data; name="pipeline"'), Buffer.from('Content-Type: text/plain; charset=utf-16le')],
      body: Buffer.from('edit', 'utf16le'),
    },
    {
      headers: [Buffer.from('Content-Disposition: form-data; name="pipeline"'), Buffer.from('Content-Transfer-Encoding: base64')],
      body: Buffer.from('ZWRpdA=='),
    },
    { headers: [Buffer.from('Content-Disposition: attachment; name="pipeline"')], body: Buffer.from('edit') },
    { headers: [Buffer.from('Content-Disposition: form-data')], body: Buffer.from('edit') },
    { headers: [Buffer.from('Content-Disposition: form-data; name=')], body: Buffer.from('edit') },
    { headers: [Buffer.from('Content-Disposition: form-data; name="pipeline"; name="params"')], body: Buffer.from('{}') },
    { headers: [Buffer.from('Content-Type: image/png')], body: Buffer.from('x') },
    { headers: [], body: Buffer.from('nothing') },
    { headers: [Buffer.from('no colon here')], body: Buffer.from('x') },
    {
      headers: [Buffer.from('Content-Disposition: form-data; name="pipeline"'), Buffer.from(' folded: continuation')],
      body: Buffer.from('edit'),
    },
    { headers: [Buffer.from('Content-Disposition: form-data; name="__proto__"')], body: Buffer.from('{"pipeline":"synthetic"}') },
    { headers: [Buffer.from('Content-Disposition: form-data; name="constructor"')], body: Buffer.from('x') },
  ),
);

const brokenMultipart = fc
  .record({
    parts: fc.array(part, { maxLength: 8 }),
    manyFields: fc.option(fc.integer({ min: 10, max: 60 }), { nil: undefined }),
    boundary: fc.oneof(
      { weight: 4, arbitrary: fc.constant(BOUNDARY) },
      { weight: 2, arbitrary: headerValue(90).filter((s) => s.length > 0 && !/[";]/.test(s)) },
      { weight: 1, arbitrary: fc.constantFrom('a'.repeat(70), 'a'.repeat(71), 'b'.repeat(300), '-', '--', ' x', 'x ', '\t') },
    ),
    header: fc.constantFrom('normal', 'missing', 'empty', 'quoted', 'mismatch', 'mixed', 'twice', 'noValue', 'upper', 'charset'),
    damage: fc.constantFrom('none', 'none', 'none', 'truncate', 'noClose', 'lfOnly', 'preamble', 'epilogue', 'mutate', 'insert', 'nested'),
    cut: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
    edits: fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.integer({ min: 0, max: 255 })), {
      minLength: 1,
      maxLength: 8,
    }),
  })
  .map(({ parts, manyFields, boundary, header, damage, cut, edits }) => {
    const all = [...parts];
    for (let i = 0; i < (manyFields ?? 0); i++) all.push(field(`f${i}`, String(i)));
    const bodyBoundary = header === 'mismatch' ? `${boundary}-other` : boundary;
    let body =
      damage === 'nested'
        ? multipartBody(bodyBoundary, [
            {
              headers: [
                Buffer.from('Content-Disposition: form-data; name="image"; filename="x"'),
                Buffer.from('Content-Type: multipart/mixed; boundary=inner'),
              ],
              body: multipartBody('inner', all),
            },
          ])
        : multipartBody(bodyBoundary, all, {
            close: damage !== 'noClose',
            eol: damage === 'lfOnly' ? '\n' : '\r\n',
            ...(damage === 'preamble' ? { preamble: Buffer.from('ignored preamble --not-a-boundary') } : {}),
            ...(damage === 'epilogue'
              ? { epilogue: Buffer.from(`\r\n--${bodyBoundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nedit`) }
              : {}),
          });
    if (damage === 'truncate') body = body.subarray(0, Math.floor(cut * body.length));
    if (damage === 'mutate') {
      body = Buffer.from(body);
      for (const [at, v] of edits) if (body.length) body[Math.floor(at * body.length)] = v;
    }
    if (damage === 'insert') {
      const at = Math.floor(cut * body.length);
      body = Buffer.concat([body.subarray(0, at), Buffer.from(edits.map(([, v]) => v)), body.subarray(at)]);
    }
    const contentType = {
      normal: `multipart/form-data; boundary=${boundary}`,
      missing: 'multipart/form-data',
      empty: 'multipart/form-data; boundary=',
      quoted: `multipart/form-data; boundary="${boundary}"`,
      mismatch: `multipart/form-data; boundary=${boundary}`,
      mixed: `multipart/mixed; boundary=${boundary}`,
      twice: `multipart/form-data; boundary=${boundary}; boundary=other`,
      noValue: 'multipart/form-data; boundary',
      upper: `MULTIPART/FORM-DATA; BOUNDARY=${boundary}`,
      charset: `multipart/form-data; charset=x-bogus; boundary=${boundary}`,
    }[header];
    return { contentType, body };
  });

// ---------------------------------------------------------------------------------------------
// Raw socket cases

interface RawCase {
  name: string;
  steps: RawStep[];
  after: 'wait' | 'end' | 'destroy';
  /** A complete request: an answer must come. */
  mustAnswer: boolean;
  /** A POST /v1/jobs (its 202 answers count as accepted jobs). */
  submit: boolean;
}

const AUTH = `Authorization: Bearer ${STATIONS.alpha.key}\r\n`;
const HOST = 'Host: 127.0.0.1\r\n';
const jsonBody = '{"pipeline":"synthetic","priority":"urgent"}';
const formBody = () =>
  multipartBody(BOUNDARY, [
    field('pipeline', 'edit'),
    field('params', '{"operations":[]}'),
    filePart('image', 'x.png', 'image/png', smallPng()),
  ]);

const rawCase: fc.Arbitrary<RawCase> = fc.oneof(
  // Content-Length that lies: longer (then EOF), shorter (the rest parses as a next request), or junk.
  fc
    .record({
      multipart: fc.boolean(),
      lie: fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: -5000, max: -1 })),
      after: fc.constantFrom<'end' | 'destroy'>('end', 'destroy'),
    })
    .map(({ multipart, lie, after }) => {
      const body = multipart ? formBody() : Buffer.from(jsonBody);
      const type = multipart ? `multipart/form-data; boundary=${BOUNDARY}` : 'application/json';
      const cl = Math.max(0, body.length + lie);
      return {
        name: `content-length ${lie > 0 ? '+' : ''}${lie}`,
        steps: [
          `POST /v1/jobs HTTP/1.1\r\n${HOST}${AUTH}Content-Type: ${type}\r\nContent-Length: ${cl}\r\nConnection: close\r\n\r\n`,
          body,
        ],
        after: lie > 0 ? after : 'wait',
        mustAnswer: lie < 0,
        submit: true,
      } satisfies RawCase;
    }),
  fc.constantFrom('abc', '-1', '1e3', '0x10', '99999999999999999999', ' 10', '10, 20', '', '+5', '5.0').map(
    (cl): RawCase => ({
      name: `content-length "${cl}"`,
      steps: [
        `POST /v1/jobs HTTP/1.1\r\n${HOST}${AUTH}Content-Type: application/json\r\nContent-Length: ${cl}\r\nConnection: close\r\n\r\n${jsonBody}`,
      ],
      after: 'wait',
      mustAnswer: false,
      submit: true,
    }),
  ),
  fc.constant<RawCase>({
    name: 'two different content-lengths',
    steps: [
      `POST /v1/jobs HTTP/1.1\r\n${HOST}${AUTH}Content-Type: application/json\r\nContent-Length: 5\r\nContent-Length: ${jsonBody.length}\r\nConnection: close\r\n\r\n${jsonBody}`,
    ],
    after: 'wait',
    mustAnswer: true,
    submit: true,
  }),
  fc.constant<RawCase>({
    name: 'content-length with chunked',
    steps: [
      `POST /v1/jobs HTTP/1.1\r\n${HOST}${AUTH}Content-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\n{}}\r\n0\r\n\r\n`,
    ],
    after: 'wait',
    mustAnswer: true,
    submit: true,
  }),
  // Chunked encoding, broken in every way.
  fc
    .record({
      multipart: fc.boolean(),
      chunk: fc.integer({ min: 1, max: 4096 }),
      breakage: fc.constantFrom(
        'badHex',
        'sizeTooBig',
        'sizeTooSmall',
        'noFinal',
        'noCrlf',
        'hugeExtension',
        'negative',
        'overflow',
        'badTrailer',
        'none',
      ),
      at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
    })
    .map(({ multipart, chunk, breakage, at }) => {
      const body = multipart ? formBody() : Buffer.from(jsonBody);
      const type = multipart ? `multipart/form-data; boundary=${BOUNDARY}` : 'application/json';
      const chunks: Buffer[] = [];
      for (let i = 0; i < body.length; i += chunk) chunks.push(body.subarray(i, i + chunk));
      const target = Math.floor(at * chunks.length);
      const out: (string | Buffer)[] = [
        `POST /v1/jobs HTTP/1.1\r\n${HOST}${AUTH}Content-Type: ${type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
      ];
      chunks.forEach((c, i) => {
        let size = c.length.toString(16);
        let ext = '';
        let eol = '\r\n';
        if (i === target) {
          if (breakage === 'badHex') size = 'zz';
          if (breakage === 'sizeTooBig') size = (c.length + 10).toString(16);
          if (breakage === 'sizeTooSmall') size = Math.max(0, c.length - 1).toString(16);
          if (breakage === 'noCrlf') eol = '';
          if (breakage === 'hugeExtension') ext = `;ext=${'e'.repeat(20_000)}`;
          if (breakage === 'negative') size = '-5';
          if (breakage === 'overflow') size = 'ffffffffffffffffffff';
        }
        out.push(`${size}${ext}\r\n`, c, eol);
      });
      if (breakage !== 'noFinal') out.push(breakage === 'badTrailer' ? '0\r\nX-Trailer\r\n\r\n' : '0\r\n\r\n');
      // A body that never ends is given up on (EOF); every other one waits for its answer.
      const incomplete = breakage === 'noFinal' || breakage === 'sizeTooBig';
      return {
        name: `chunked ${breakage}`,
        steps: out,
        after: incomplete ? 'end' : 'wait',
        mustAnswer: breakage === 'none',
        submit: true,
      } satisfies RawCase;
    }),
  // Slowloris: headers, part of the body in dribbles, then the connection dies.
  fc
    .record({
      multipart: fc.boolean(),
      frac: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      pieces: fc.integer({ min: 1, max: 6 }),
      delay: fc.integer({ min: 1, max: 40 }),
      after: fc.constantFrom<'end' | 'destroy'>('end', 'destroy'),
    })
    .map(({ multipart, frac, pieces, delay, after }) => {
      const body = multipart ? formBody() : Buffer.from(jsonBody);
      const type = multipart ? `multipart/form-data; boundary=${BOUNDARY}` : 'application/json';
      const sent = body.subarray(0, Math.floor(frac * body.length));
      const steps: RawStep[] = [`POST /v1/jobs HTTP/1.1\r\n${HOST}${AUTH}Content-Type: ${type}\r\nContent-Length: ${body.length}\r\n\r\n`];
      const step = Math.max(1, Math.ceil(sent.length / pieces));
      for (let i = 0; i < sent.length; i += step) steps.push({ delayMs: delay }, sent.subarray(i, i + step));
      return { name: 'partial body then close', steps, after, mustAnswer: false, submit: true } satisfies RawCase;
    }),
  // Headers that stop half-way.
  fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }).map((f): RawCase => {
    const head = `POST /v1/jobs HTTP/1.1\r\n${HOST}${AUTH}Content-Type: application/json\r\nContent-Length: 10\r\n\r\n`;
    return {
      name: 'partial headers then close',
      steps: [head.slice(0, Math.floor(f * head.length))],
      after: 'end',
      mustAnswer: false,
      submit: true,
    };
  }),
  // Request lines and header syntax Node's parser must refuse (or route to a 404).
  fc
    .oneof(
      fc.constantFrom(
        'GET * HTTP/1.1',
        'OPTIONS * HTTP/1.1',
        'GET http://evil.example/v1/jobs/x HTTP/1.1',
        'GET /v1/jobs/../../etc/passwd HTTP/1.1',
        'GET /v1/jobs/..%2f..%2fetc%2fpasswd HTTP/1.1',
        'GET /v1/jobs/edit_aaaaaaaaaaaaaaaaaaaaaaaa/../../../admin/queues HTTP/1.1',
        'GET v1/jobs HTTP/1.1',
        'GET //v1//jobs// HTTP/1.1',
        'GET /v1/jobs/%ZZ HTTP/1.1',
        'GET /v1/jobs/\x7f HTTP/1.1',
        'GET /v1/jobs/é HTTP/1.1',
        'GET /v1/jobs HTTP/2.0',
        'GET /v1/jobs HTTP/0.9',
        'GET /v1/jobs HTTP/1.0',
        'GET /v1/jobs',
        'GET  /v1/jobs  HTTP/1.1',
        'FOO /v1/jobs HTTP/1.1',
        'get /v1/jobs HTTP/1.1',
        'PROPFIND /v1/jobs HTTP/1.1',
        'TRACE /v1/jobs HTTP/1.1',
        'CONNECT 127.0.0.1:6379 HTTP/1.1',
        'PATCH /v1/jobs/edit_aaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1',
        'PUT /v1/jobs HTTP/1.1',
        'HEAD /v1/jobs/edit_aaaaaaaaaaaaaaaaaaaaaaaa/result HTTP/1.1',
        'DELETE /v1/jobs HTTP/1.1',
        '\x00\x01\x02',
        '',
      ),
      headerValue(200).map((s) => `GET /${s} HTTP/1.1`),
      fc.string({ unit: 'binary', maxLength: 60 }).map((s) => Buffer.from(s).toString('latin1')),
    )
    .chain((line) =>
      fc.constantFrom(
        `${line}\r\n${HOST}${AUTH}Connection: close\r\n\r\n`,
        `${line}\r\n${AUTH}Connection: close\r\n\r\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close\r\nX-Bad Header: 1\r\n\r\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close\r\nX-Null: a\0b\r\n\r\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close\r\nX-Fold: a\r\n folded\r\n\r\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close\r\nX-Lf: a\nb\r\n\r\n`,
        `${line}\n${HOST.replace('\r', '')}${AUTH.replace('\r', '')}Connection: close\n\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close\r\nX-Latin: \xff\xfe\r\n\r\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close\r\nExpect: 100-continue\r\n\r\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close\r\nExpect: teapot\r\n\r\n`,
        `${line}\r\n${HOST}${HOST}${AUTH}${AUTH}Connection: close\r\n\r\n`,
        `${line}\r\n${HOST}${AUTH}Connection: close, upgrade\r\nUpgrade: websocket\r\n\r\n`,
      ),
    )
    .map((req): RawCase => ({ name: 'request line / header syntax', steps: [req], after: 'wait', mustAnswer: false, submit: false })),
);

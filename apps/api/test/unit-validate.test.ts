import { createHash } from 'node:crypto';
import { PIPELINE_SPECS } from '@darkroom/contracts';
import { canonicalJson, fingerprint, JobsError, type RawSubmit, type Station, validateSubmit } from '@darkroom/jobs';
import { describe, expect, it } from 'vitest';
import { toHttpError } from '../src/http/error-handler.ts';
import type { HttpError } from '../src/http/problem.ts';

const IMAGE = Buffer.from([0xff, 0xd8, 0xff, 0xd9]);

const station = (over: Partial<Station> = {}): Station => ({
  name: 'alpha',
  maxPriority: 'critical',
  defaultPriority: 'normal',
  maxPending: 100,
  requestsPerMinute: null,
  webhookSecret: undefined,
  weight: 1,
  ...over,
});

const raw = (over: Partial<RawSubmit> = {}): RawSubmit => ({ errors: [], ...over });

const NO_OPS = { operations: [] };
const NO_SECRET = { webhookSecretAvailable: false };
const SECRET = { webhookSecretAvailable: true };

/** The problem a station gets for what validateSubmit throws (through the api's error table), or a failure if it returns. */
function httpError(r: RawSubmit, s = station(), opts = NO_SECRET): HttpError {
  try {
    validateSubmit(r, s, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(JobsError);
    return toHttpError(err);
  }
  throw new Error('expected validateSubmit to throw');
}

describe('validateSubmit: the pipeline', () => {
  it.each([undefined, '', 5, null, ['edit']])('answers 400 with path pipeline when it is %j', (pipeline) => {
    const err = httpError(raw({ pipeline, image: IMAGE }));
    expect([err.status, err.code]).toEqual([400, 'invalid_request']);
    expect(err.errors).toEqual([{ path: 'pipeline', message: 'required: the name of a pipeline from GET /v1/pipelines' }]);
  });

  it('answers a missing pipeline before any other field error, keeping the encoding errors', () => {
    const err = httpError(raw({ params: 'x', priority: 'urgent', errors: [{ path: 'params', message: 'must be a JSON object' }] }));
    expect(err.status).toBe(400);
    expect(err.errors).toEqual([
      { path: 'params', message: 'must be a JSON object' },
      { path: 'pipeline', message: 'required: the name of a pipeline from GET /v1/pipelines' },
    ]);
  });

  it('answers 404 for an unknown pipeline, before field errors', () => {
    const err = httpError(raw({ pipeline: 'sharpen', params: [], priority: 'urgent', webhookUrl: 'ftp://x' }));
    expect([err.status, err.code, err.message]).toEqual([404, 'not_found', 'unknown pipeline "sharpen"; GET /v1/pipelines lists them']);
    expect(err.errors).toBeUndefined();
  });

  it.each(['toString', '__proto__', 'constructor', 'EDIT'])('answers 404 for %s', (pipeline) => {
    expect(httpError(raw({ pipeline })).status).toBe(404);
  });

  it('cuts a long unknown name in the message', () => {
    const err = httpError(raw({ pipeline: 'x'.repeat(500) }));
    expect(err.message).toBe(`unknown pipeline "${'x'.repeat(64)}"; GET /v1/pipelines lists them`);
  });
});

describe('validateSubmit: a valid submit', () => {
  it('returns the spec, the params, the station default priority and the image', () => {
    const v = validateSubmit(raw({ pipeline: 'edit', params: NO_OPS, image: IMAGE }), station({ defaultPriority: 'low' }), NO_SECRET);
    expect(v).toEqual({
      spec: PIPELINE_SPECS.edit,
      params: { operations: [] },
      priority: 'low',
      webhookUrl: undefined,
      image: IMAGE,
      imageSha256: createHash('sha256').update(IMAGE).digest('hex'),
    });
  });

  it('fills synthetic defaults and takes no image', () => {
    const v = validateSubmit(raw({ pipeline: 'synthetic', params: { steps: 2 } }), station(), NO_SECRET);
    expect(v).toEqual({
      spec: PIPELINE_SPECS.synthetic,
      params: { steps: 2, stepMs: 100, width: 256, height: 256, seed: 0, loadMs: 0 },
      priority: 'normal',
      webhookUrl: undefined,
      image: undefined,
    });
  });

  it('treats null params as empty', () => {
    expect(validateSubmit(raw({ pipeline: 'synthetic', params: null }), station(), NO_SECRET).params).toEqual({
      steps: 10,
      stepMs: 100,
      width: 256,
      height: 256,
      seed: 0,
      loadMs: 0,
    });
  });

  it('treats an empty or null priority as not given', () => {
    const s = station({ defaultPriority: 'high' });
    expect(validateSubmit(raw({ pipeline: 'synthetic', priority: '' }), s, NO_SECRET).priority).toBe('high');
    expect(validateSubmit(raw({ pipeline: 'synthetic', priority: null }), s, NO_SECRET).priority).toBe('high');
  });

  it('takes a given priority at or below the station maximum', () => {
    const s = station({ maxPriority: 'high' });
    expect(validateSubmit(raw({ pipeline: 'synthetic', priority: 'high' }), s, NO_SECRET).priority).toBe('high');
    expect(validateSubmit(raw({ pipeline: 'synthetic', priority: 'low' }), s, NO_SECRET).priority).toBe('low');
  });
});

describe('validateSubmit: field errors', () => {
  it('lists every field error at once, with dotted paths under params', () => {
    const err = httpError(
      raw({
        pipeline: 'edit',
        params: { operations: [{ op: 'resize', width: 0 }, { op: 'blur' }], extra: true },
        priority: 'urgent',
        webhookUrl: 'ftp://example.com/hook',
      }),
    );
    expect([err.status, err.code, err.message]).toEqual([400, 'invalid_request', 'the request is invalid']);
    expect(err.errors?.map((e) => e.path)).toEqual([
      'params.operations.0.width',
      'params.operations.1.sigma',
      'params',
      'priority',
      'webhookUrl',
      'image',
    ]);
    expect(err.errors?.find((e) => e.path === 'priority')?.message).toBe('must be one of critical, high, normal, low');
    expect(err.errors?.find((e) => e.path === 'webhookUrl')?.message).toBe('must use http or https');
    expect(err.errors?.find((e) => e.path === 'image')?.message).toBe('required: pipeline edit takes an input image');
  });

  it('reports resize without a size at params.operations.N.width', () => {
    const err = httpError(raw({ pipeline: 'edit', params: { operations: [{ op: 'flip' }, { op: 'resize' }] }, image: IMAGE }));
    expect(err.errors).toEqual([{ path: 'params.operations.1.width', message: 'resize needs width, height or both' }]);
  });

  it.each([
    ['a string', 'x'],
    ['an array', []],
    ['a number', 3],
  ])('refuses params that are %s', (_what, params) => {
    expect(httpError(raw({ pipeline: 'synthetic', params })).errors).toEqual([{ path: 'params', message: 'must be a JSON object' }]);
  });

  it('does not repeat a params error the parser already reported', () => {
    const err = httpError(
      raw({ pipeline: 'synthetic', params: 'not json', errors: [{ path: 'params', message: 'must be a JSON object' }] }),
    );
    expect(err.errors).toEqual([{ path: 'params', message: 'must be a JSON object' }]);
  });

  it('reports a priority that is not a string of the four', () => {
    expect(httpError(raw({ pipeline: 'synthetic', priority: 1 })).errors).toEqual([
      { path: 'priority', message: 'must be one of critical, high, normal, low' },
    ]);
  });
});

describe('validateSubmit: priority above the station maximum', () => {
  it('answers 403, never silently lowering it', () => {
    const err = httpError(raw({ pipeline: 'synthetic', priority: 'critical' }), station({ maxPriority: 'normal' }));
    expect([err.status, err.code, err.message]).toEqual([
      403,
      'forbidden',
      "priority critical is above this station's highest allowed priority (normal)",
    ]);
  });

  it('answers field errors (400) before the priority check (403)', () => {
    const err = httpError(raw({ pipeline: 'synthetic', priority: 'critical', params: { steps: 0 } }), station({ maxPriority: 'low' }));
    expect(err.status).toBe(400);
    expect(err.errors).toEqual([{ path: 'params.steps', message: 'Too small: expected number to be >=1' }]);
  });
});

describe('validateSubmit: webhookUrl', () => {
  const hookError = (webhookUrl: unknown, s = station(), opts = SECRET) =>
    httpError(raw({ pipeline: 'synthetic', webhookUrl }), s, opts).errors?.find((e) => e.path === 'webhookUrl')?.message;

  it('accepts an http(s) URL when a secret exists for the station or the operator', () => {
    const url = 'https://hooks.example.com/darkroom?x=1';
    expect(validateSubmit(raw({ pipeline: 'synthetic', webhookUrl: url }), station(), SECRET).webhookUrl).toBe(url);
    expect(
      validateSubmit(raw({ pipeline: 'synthetic', webhookUrl: url }), station({ webhookSecret: 's'.repeat(16) }), NO_SECRET).webhookUrl,
    ).toBe(url);
    expect(validateSubmit(raw({ pipeline: 'synthetic', webhookUrl: 'http://hooks.example.com/' }), station(), SECRET).webhookUrl).toBe(
      'http://hooks.example.com/',
    );
  });

  it('refuses a webhook without any signing secret', () => {
    expect(hookError('https://hooks.example.com/', station(), NO_SECRET)).toBe(
      'no webhook secret is configured for this station, so webhooks cannot be signed',
    );
  });

  it.each([
    ['not a url', 'must be an absolute http(s) URL'],
    ['/relative/path', 'must be an absolute http(s) URL'],
    [42, 'must be an absolute http(s) URL'],
    ['ftp://example.com/', 'must use http or https'],
    ['javascript:alert(1)', 'must use http or https'],
    ['https://user:pass@example.com/', 'must not carry credentials'],
    ['https://user@example.com/', 'must not carry credentials'],
    [`https://example.com/${'a'.repeat(2030)}`, 'must be at most 2048 characters'],
  ])('refuses %j: %s', (url, message) => {
    expect(hookError(url)).toBe(message);
  });

  it('accepts a URL of exactly 2048 characters', () => {
    const url = `https://example.com/${'a'.repeat(2048 - 'https://example.com/'.length)}`;
    expect(url).toHaveLength(2048);
    expect(validateSubmit(raw({ pipeline: 'synthetic', webhookUrl: url }), station(), SECRET).webhookUrl).toBe(url);
  });

  it('treats an empty webhookUrl as not given', () => {
    expect(validateSubmit(raw({ pipeline: 'synthetic', webhookUrl: '' }), station(), NO_SECRET).webhookUrl).toBeUndefined();
  });
});

describe('validateSubmit: edit params', () => {
  it('requires operations, the one required field of edit', () => {
    expect(httpError(raw({ pipeline: 'edit', image: IMAGE })).errors).toEqual([
      { path: 'params.operations', message: 'Invalid input: expected array, received undefined' },
    ]);
    expect(validateSubmit(raw({ pipeline: 'edit', params: NO_OPS, image: IMAGE }), station(), NO_SECRET).params).toEqual(NO_OPS);
  });
});

describe('validateSubmit: image', () => {
  it('requires an image for edit', () => {
    expect(httpError(raw({ pipeline: 'edit', params: NO_OPS })).errors).toEqual([
      { path: 'image', message: 'required: pipeline edit takes an input image' },
    ]);
  });

  it('refuses an empty image', () => {
    expect(httpError(raw({ pipeline: 'edit', params: NO_OPS, image: Buffer.alloc(0) })).errors).toEqual([
      { path: 'image', message: 'the image is empty' },
    ]);
  });

  it('keeps the parser’s image error instead of adding another', () => {
    const err = httpError(
      raw({ pipeline: 'edit', params: NO_OPS, errors: [{ path: 'image', message: 'imageBase64 is not valid base64' }] }),
    );
    expect(err.errors).toEqual([{ path: 'image', message: 'imageBase64 is not valid base64' }]);
  });

  it('refuses an image for a pipeline that takes none, even an empty one', () => {
    expect(httpError(raw({ pipeline: 'synthetic', image: IMAGE })).errors).toEqual([
      { path: 'image', message: 'pipeline synthetic takes no input image' },
    ]);
    expect(httpError(raw({ pipeline: 'synthetic', image: Buffer.alloc(0) })).errors).toEqual([
      { path: 'image', message: 'pipeline synthetic takes no input image' },
    ]);
  });
});

describe('HttpError bodies', () => {
  it('render as problem+json with the field errors', () => {
    const err = httpError(raw({ pipeline: 'edit', params: NO_OPS }));
    expect(err.body()).toEqual({
      type: 'https://darkroom.dev/problems/invalid-request',
      title: 'Invalid request',
      status: 400,
      detail: 'the request is invalid',
      code: 'invalid_request',
      errors: [{ path: 'image', message: 'required: pipeline edit takes an input image' }],
    });
  });
});

describe('validateSubmit: timeoutSeconds and ttlSeconds', () => {
  const LIMITS = { webhookSecretAvailable: false, maxTimeoutSeconds: 300, maxTtlSeconds: 3600 };

  it('takes whole seconds up to the operator’s limits, as numbers or multipart text', () => {
    const v = validateSubmit(raw({ pipeline: 'synthetic', timeoutSeconds: 300, ttlSeconds: '3600' }), station(), LIMITS);
    expect([v.timeoutSeconds, v.ttlSeconds]).toEqual([300, 3600]);
    const none = validateSubmit(raw({ pipeline: 'synthetic', timeoutSeconds: '', ttlSeconds: null }), station(), LIMITS);
    expect(['timeoutSeconds' in none, 'ttlSeconds' in none]).toEqual([false, false]);
  });

  it.each([
    [{ timeoutSeconds: 301 }, 'timeoutSeconds', 'must be at most 300'],
    [{ ttlSeconds: '3601' }, 'ttlSeconds', 'must be at most 3600'],
    [{ timeoutSeconds: 0 }, 'timeoutSeconds', 'at least 1'],
    [{ ttlSeconds: 2.5 }, 'ttlSeconds', 'whole number'],
    [{ ttlSeconds: '1e3' }, 'ttlSeconds', 'whole number'],
    [{ timeoutSeconds: true }, 'timeoutSeconds', 'whole number'],
  ])('answers %j with 400 at its path', (fields, path, message) => {
    const err = httpError(raw({ pipeline: 'synthetic', ...fields }), station(), LIMITS);
    expect([err.status, err.code]).toEqual([400, 'invalid_request']);
    expect(err.errors).toEqual([{ path, message: expect.stringContaining(message) }]);
  });
});

describe('validateSubmit: imageUrl', () => {
  const URL_OK = 'https://images.example.com/a/photo.jpg?sig=abc';

  it('takes an absolute http(s) URL in place of an image, for a pipeline that needs one', () => {
    const v = validateSubmit(raw({ pipeline: 'edit', params: NO_OPS, imageUrl: URL_OK }), station(), NO_SECRET);
    expect(v.imageUrl).toBe(URL_OK);
    expect(v.image).toBeUndefined();
    expect(v.imageSha256).toBeUndefined();
  });

  it.each([
    ['not a URL', 'photo.jpg', 'must be an absolute http(s) URL'],
    ['another scheme', 'ftp://images.example.com/photo.jpg', 'must use http or https'],
    ['a file URL', 'file:///etc/hosts', 'must use http or https'],
    ['credentials', 'https://user:pass@images.example.com/photo.jpg', 'must not carry credentials'],
    ['too long', `https://images.example.com/${'a'.repeat(2048)}`, 'must be at most 2048 characters'],
    ['not a string', 42, 'must be an absolute http(s) URL'],
  ])('answers 400 at imageUrl for %s', (_what, imageUrl, message) => {
    const err = httpError(raw({ pipeline: 'edit', params: NO_OPS, imageUrl }));
    expect(err.status).toBe(400);
    expect(err.errors).toEqual([{ path: 'imageUrl', message }]);
  });

  it('answers 400 at imageUrl when an image is sent too', () => {
    const err = httpError(raw({ pipeline: 'edit', params: NO_OPS, image: IMAGE, imageUrl: URL_OK }));
    expect(err.status).toBe(400);
    expect(err.errors).toEqual([{ path: 'imageUrl', message: 'send either an image or imageUrl, not both' }]);
  });

  it('answers 400 at imageUrl for a pipeline that takes no image, as for an image', () => {
    const err = httpError(raw({ pipeline: 'synthetic', imageUrl: URL_OK }));
    expect(err.status).toBe(400);
    expect(err.errors).toEqual([{ path: 'imageUrl', message: 'pipeline synthetic takes no input image' }]);
  });

  it('lists a bad imageUrl with the other field errors, and no "image required" beside it', () => {
    const err = httpError(raw({ pipeline: 'edit', params: { operations: 'no' }, priority: 'urgent', imageUrl: 'nope' }));
    expect(err.errors?.map((e) => e.path).sort()).toEqual(['imageUrl', 'params.operations', 'priority']);
  });

  it('is part of the Idempotency-Key fingerprint as sent; an upload fingerprints as before', () => {
    const of = (r: Partial<RawSubmit>) =>
      fingerprint(validateSubmit(raw({ pipeline: 'edit', params: NO_OPS, ...r }), station(), NO_SECRET));
    expect(of({ imageUrl: URL_OK })).toBe(of({ imageUrl: URL_OK }));
    expect(of({ imageUrl: URL_OK })).not.toBe(of({ imageUrl: `${URL_OK}&v=2` }));
    expect(of({ imageUrl: URL_OK })).not.toBe(of({ image: IMAGE }));
    // The fetched bytes do not change it: a repeat is recognised before anything is fetched.
    const v = validateSubmit(raw({ pipeline: 'edit', params: NO_OPS, imageUrl: URL_OK }), station(), NO_SECRET);
    const before = fingerprint(v);
    v.image = IMAGE;
    v.imageSha256 = createHash('sha256').update(IMAGE).digest('hex');
    expect(fingerprint(v)).toBe(before);
    // An upload's fingerprint has no imageUrl member: the same text as before imageUrl existed.
    const upload = validateSubmit(raw({ pipeline: 'edit', params: NO_OPS, image: IMAGE }), station(), NO_SECRET);
    const text = canonicalJson({
      pipeline: 'edit',
      params: upload.params,
      priority: 'normal',
      webhookUrl: null,
      image: createHash('sha256').update(IMAGE).digest('hex'),
    });
    expect(fingerprint(upload)).toBe(createHash('sha256').update(text).digest('hex'));
  });
});

import { describe, expect, it } from 'vitest';
import { toHttpError } from '../src/http/error-handler.ts';
import type { HttpError } from '../src/http/problem.ts';
import { fromJson } from '../src/submit/parse.ts';

const MAX = 1024;
const BYTES = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0xfb, 0xef, 0xbe]);

function thrown(fn: () => unknown): HttpError {
  try {
    fn();
  } catch (err) {
    // As a station sees it: through the api's one error path.
    const problem = toHttpError(err);
    expect(problem.status).toBeLessThan(500);
    return problem;
  }
  throw new Error('expected a throw');
}

describe('fromJson', () => {
  it('copies the text fields as they are, without judging them', () => {
    const params = { operations: [] };
    expect(fromJson({ pipeline: 'edit', params, priority: 'urgent', webhookUrl: 5, other: 'ignored' }, MAX)).toEqual({
      pipeline: 'edit',
      params,
      priority: 'urgent',
      webhookUrl: 5,
      errors: [],
    });
  });

  it('decodes imageBase64', () => {
    const out = fromJson({ pipeline: 'edit', imageBase64: BYTES.toString('base64') }, MAX);
    expect(out.image).toEqual(BYTES);
    expect(out.errors).toEqual([]);
  });

  it('also reads the image from `image`', () => {
    expect(fromJson({ image: BYTES.toString('base64') }, MAX).image).toEqual(BYTES);
  });

  it('strips a data: URL prefix', () => {
    expect(fromJson({ imageBase64: `data:image/jpeg;base64,${BYTES.toString('base64')}` }, MAX).image).toEqual(BYTES);
    expect(fromJson({ imageBase64: `data:;base64,${BYTES.toString('base64')}` }, MAX).image).toEqual(BYTES);
  });

  it('accepts base64url and unpadded base64', () => {
    const url = BYTES.toString('base64url');
    expect(url).toMatch(/[-_]/);
    expect(fromJson({ imageBase64: url }, MAX).image).toEqual(BYTES);
    const two = Buffer.from([1, 2]);
    expect(fromJson({ imageBase64: two.toString('base64').replace(/=+$/, '') }, MAX).image).toEqual(two);
  });

  it('ignores whitespace and line breaks in the base64 text', () => {
    const b64 = BYTES.toString('base64');
    expect(fromJson({ imageBase64: `${b64.slice(0, 4)}\n${b64.slice(4, 8)} \r\n${b64.slice(8)}` }, MAX).image).toEqual(BYTES);
  });

  it('decodes an empty string to an empty image (judged later)', () => {
    expect(fromJson({ imageBase64: '' }, MAX).image).toEqual(Buffer.alloc(0));
  });

  it('leaves the image out when none is sent', () => {
    expect('image' in fromJson({ pipeline: 'synthetic' }, MAX)).toBe(false);
    expect('image' in fromJson({ pipeline: 'synthetic', imageBase64: null }, MAX)).toBe(false);
  });

  it.each([
    ['characters outside base64', 'not base64!'],
    ['padding in the middle', 'AB=C'],
    ['too much padding', 'AB==='],
    ['a length of 4n+1', 'ABCDE'],
    ['a data: URL that is not base64', 'data:image/png,hello'],
  ])('reports %s as an error at path image', (_what, imageBase64) => {
    const out = fromJson({ pipeline: 'edit', imageBase64 }, MAX);
    expect(out.errors).toEqual([{ path: 'image', message: 'imageBase64 is not valid base64' }]);
    expect(out.image).toBeUndefined();
  });

  it('reports an image that is not a string', () => {
    for (const imageBase64 of [42, { data: 'x' }, ['AAAA']]) {
      const out = fromJson({ imageBase64 }, MAX);
      expect(out.errors).toEqual([{ path: 'image', message: 'imageBase64 must be a base64 string' }]);
      expect(out.image).toBeUndefined();
    }
  });

  it('accepts an image of exactly the limit', () => {
    const img = Buffer.alloc(MAX, 7);
    expect(fromJson({ imageBase64: img.toString('base64') }, MAX).image).toEqual(img);
  });

  it.each([MAX + 1, MAX + 2, MAX + 3, 10 * MAX])('answers 413 for %i decoded bytes', (size) => {
    const err = thrown(() => fromJson({ imageBase64: Buffer.alloc(size, 1).toString('base64') }, MAX));
    expect([err.status, err.code, err.message]).toEqual([413, 'payload_too_large', `the image is larger than the limit of ${MAX} bytes`]);
  });

  it('answers 413 for a large base64url image too', () => {
    const err = thrown(() => fromJson({ imageBase64: Buffer.alloc(MAX + 1, 0xfb).toString('base64url') }, MAX));
    expect(err.status).toBe(413);
  });

  it.each([null, 'text', 5, [], [{ pipeline: 'edit' }]])('answers 400 for a body that is %j', (body) => {
    const err = thrown(() => fromJson(body, MAX));
    expect([err.status, err.code, err.message]).toEqual([400, 'invalid_request', 'the body must be a JSON object']);
  });
});

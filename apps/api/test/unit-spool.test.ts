import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { type ImageSource, inspectImage, SPOOL_HEAD_BYTES, type SpooledImage } from '@darkroom/images';
import { fixture } from '@darkroom/testing';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { toHttpError } from '../src/http/error-handler.ts';
import type { HttpError } from '../src/http/problem.ts';
import { discardImage, parseMultipart, type Spool } from '../src/submit/parse.ts';

/*
 * Multipart parsing with a memory threshold: an image past it is written to a temporary file as
 * it arrives (hashed and judged on the way), and every refusal removes that file.
 */

const BOUNDARY = 'spooltestboundary';
const LIMITS = { maxImageEdge: 8192, maxImagePixels: 50_000_000 };
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-spool-'));
let dir: string;
let n = 0;

beforeEach(() => {
  dir = path.join(root, String(n++));
  fs.mkdirSync(dir);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const spool = (memoryBytes: number, where = () => dir): Spool => ({
  memoryBytes,
  open: () => {
    const p = path.join(where(), `u${n}.part`);
    return { path: p, out: fs.createWriteStream(p, { flags: 'wx' }) };
  },
});

function body(image: Buffer, fields: Record<string, string> = { pipeline: 'edit' }): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  parts.push(
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x"\r\nContent-Type: image/jpeg\r\n\r\n`),
  );
  parts.push(image, Buffer.from(`\r\n--${BOUNDARY}--\r\n`));
  return Buffer.concat(parts);
}

/** A request whose body arrives in 16 KiB pieces, as from a socket; `cutAt` ends it with an error there. */
function request(data: Buffer, opts: { cutAt?: number } = {}): IncomingMessage {
  const req = new PassThrough() as unknown as IncomingMessage & PassThrough;
  req.headers = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': String(data.length) };
  const end = opts.cutAt ?? data.length;
  void (async () => {
    for (let at = 0; at < end; at += 16 * 1024) {
      req.write(data.subarray(at, Math.min(end, at + 16 * 1024)));
      await new Promise((r) => setImmediate(r));
    }
    if (opts.cutAt === undefined) req.end();
    else req.destroy(new Error('aborted'));
  })();
  return req;
}

async function refusal(p: Promise<unknown>): Promise<HttpError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  // As a station sees it: through the api's one error path.
  return toHttpError(err);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const files = () => fs.readdirSync(dir);

describe('parseMultipart with a spool', () => {
  it('keeps an image up to the threshold in memory, and writes no file', async () => {
    const img = fixture('Landscape_3.jpg');
    const out = await parseMultipart(request(body(img)), 1 << 20, spool(img.length));
    expect(Buffer.isBuffer(out.image)).toBe(true);
    expect(out.image).toEqual(img);
    expect(out.imageSha256).toBe(sha(img));
    expect(files()).toEqual([]);
  });

  it('writes a larger image to a temporary file, byte for byte, with its hash, head and completeness', async () => {
    const img = fixture('2569067123_aca715a2ee_o.jpg');
    const out = await parseMultipart(request(body(img, { pipeline: 'edit', priority: 'high' })), 1 << 20, spool(64 * 1024));
    const s = out.image as SpooledImage;
    expect(Buffer.isBuffer(s)).toBe(false);
    expect(out.pipeline).toBe('edit');
    expect(out.priority).toBe('high');
    expect(s.bytes).toBe(img.length);
    expect(s.sha256).toBe(sha(img));
    expect(out.imageSha256).toBe(sha(img));
    expect(fs.readFileSync(s.path).equals(img)).toBe(true);
    expect(s.head.equals(img.subarray(0, SPOOL_HEAD_BYTES))).toBe(true);
    expect(s.complete).toBe(true);
    await discardImage(s);
    expect(files()).toEqual([]);
  });

  it('judges a spooled image as it would the same bytes in memory', async () => {
    const cases: [string, Buffer][] = [
      ['a photo', fixture('Channel_digital_image_CMYK_color.jpg')],
      ['a truncated photo', fixture('2569067123_aca715a2ee_o.jpg').subarray(0, 500_000)],
      ['a pixel bomb', fixture('65536-uint32-limit.png')],
      ['an edge bomb', fixture('giant-image.jpg')],
      ['a format not accepted', fixture('relax.jp2')],
      ['a TIFF', fixture('G31D.TIF')],
      ['an AVIF', fixture('pitm.avif')],
      ['noise', Buffer.alloc(200_000, 0x5a)],
    ];
    for (const [what, img] of cases) {
      const out = await parseMultipart(request(body(img)), 2 << 20, spool(64 * 1024));
      expect(Buffer.isBuffer(out.image), what).toBe(false);
      const fromFile = await inspectImage(out.image as ImageSource, LIMITS);
      expect(fromFile, what).toEqual(await inspectImage(img, LIMITS));
      await discardImage(out.image);
    }
    expect(files()).toEqual([]);
  });

  it('answers 413 past the size limit and removes what it had written', async () => {
    const img = fixture('2569067123_aca715a2ee_o.jpg');
    const err = await refusal(parseMultipart(request(body(img)), 300_000, spool(64 * 1024)));
    expect(err.status).toBe(413);
    expect(files()).toEqual([]);
  });

  it.each([
    ['in memory', 1 << 30],
    ['spooled', 64 * 1024],
  ])('takes an image of exactly the size limit (%s), and answers 413 one byte past it', async (_, memoryBytes) => {
    // The limit is on the image bytes, not the request body.
    const img = fixture('Landscape_3.jpg');
    const exact = await parseMultipart(request(body(img)), img.length, spool(memoryBytes));
    expect(exact.imageSha256).toBe(sha(img));
    await discardImage(exact.image);
    const err = await refusal(parseMultipart(request(body(img)), img.length - 1, spool(memoryBytes)));
    expect([err.status, err.code]).toEqual([413, 'payload_too_large']);
    expect(files()).toEqual([]);
  });

  it('removes the file when the client goes away mid-upload', async () => {
    const img = fixture('2569067123_aca715a2ee_o.jpg');
    const err = await refusal(parseMultipart(request(body(img), { cutAt: 400_000 }), 1 << 20, spool(64 * 1024)));
    expect(err.status).toBe(400);
    expect(files()).toEqual([]);
  });

  it('answers 503 when the data volume cannot take the file, reading the body to its end', async () => {
    const img = fixture('2569067123_aca715a2ee_o.jpg');
    const req = request(body(img));
    const err = await refusal(
      parseMultipart(
        req,
        1 << 20,
        spool(64 * 1024, () => path.join(dir, 'missing')),
      ),
    );
    expect(err.status).toBe(503);
    expect(err.headers['Retry-After']).toBe('5');
    expect(err.message).not.toMatch(/ENOENT|missing|\//);
    expect(files()).toEqual([]);
  });

  it('answers a malformed body after the spill with 400, leaving no file', async () => {
    const img = fixture('2569067123_aca715a2ee_o.jpg');
    const whole = body(img);
    // The closing boundary never comes: the part ends with the body.
    const cut = whole.subarray(0, whole.length - BOUNDARY.length - 8);
    const req = new PassThrough() as unknown as IncomingMessage & PassThrough;
    req.headers = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
    req.end(cut);
    const err = await refusal(parseMultipart(req, 1 << 20, spool(64 * 1024)));
    expect(err.status).toBe(400);
    expect(files()).toEqual([]);
  });
});

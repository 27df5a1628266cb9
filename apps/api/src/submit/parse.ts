import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FieldError } from '@darkroom/contracts';
import { sha256Hex } from '@darkroom/core';
import busboy from 'busboy';
import { badRequest, HttpError } from '../http/problem.ts';

/*
 * Turns a submit body, multipart or JSON, into one raw shape. Nothing is validated here beyond
 * the encoding itself; `validateSubmit` judges the fields so both encodings answer alike.
 */
export interface RawSubmit {
  pipeline?: unknown;
  params?: unknown;
  priority?: unknown;
  webhookUrl?: unknown;
  /** The image bytes, if an image was sent (possibly empty). */
  image?: Buffer;
  /** Their sha256 (hex), computed as they arrived. */
  imageSha256?: string;
  errors: FieldError[];
}

const MAX_FIELD_BYTES = 256 * 1024;
const TEXT_FIELDS = new Set(['pipeline', 'params', 'priority', 'webhookUrl']);

export const tooLarge = (max: number) => new HttpError(413, 'payload_too_large', `the image is larger than the limit of ${max} bytes`);

export function parseMultipart(req: IncomingMessage, maxUploadBytes: number): Promise<RawSubmit> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        limits: { fileSize: maxUploadBytes, files: 1, fields: 16, parts: 20, fieldSize: MAX_FIELD_BYTES, headerPairs: 32 },
      });
    } catch {
      return reject(badRequest('malformed multipart/form-data (missing or bad boundary)'));
    }
    const out: RawSubmit = { errors: [] };
    let failure: HttpError | undefined;
    const fail = (err: HttpError) => {
      failure ??= err;
    };
    // Busboy does not always emit 'close' after an 'error' (a malformed part header, for one), so
    // the first of error/close settles. On an error the rest of the body is read and dropped, so
    // the answer reaches a client that is still sending.
    let settled = false;
    const settle = (err: HttpError | undefined) => {
      if (settled) return;
      settled = true;
      if (!err) return resolve(out);
      req.unpipe(bb);
      req.resume();
      reject(err);
    };
    const malformed = () => badRequest('malformed multipart/form-data body');

    bb.on('file', (name, stream) => {
      if (name !== 'image') {
        // A name busboy cannot decode (a bad charset, an empty name) comes as undefined.
        const part = typeof name === 'string' && name !== '' ? name : undefined;
        fail(
          badRequest(
            `unexpected file part ${part === undefined ? 'without a name' : `"${part.slice(0, 64)}"`}; the image goes in a part named "image"`,
            [{ path: part ?? 'image', message: part === undefined ? 'a file part without a usable name' : 'unexpected file part' }],
          ),
        );
        stream.on('error', () => {});
        stream.resume();
        return;
      }
      // A part that ends early errors its stream; unhandled, that error would end the process.
      stream.on('error', () => fail(malformed()));
      const chunks: Buffer[] = [];
      const hash = createHash('sha256');
      let size = 0;
      stream.on('data', (c: Buffer) => {
        size += c.length;
        if (failure) return;
        chunks.push(c);
        hash.update(c);
      });
      stream.on('limit', () => {
        fail(tooLarge(maxUploadBytes));
        chunks.length = 0;
      });
      stream.on('close', () => {
        if (failure) return;
        out.image = size === 0 ? Buffer.alloc(0) : Buffer.concat(chunks, size);
        out.imageSha256 = hash.digest('hex');
      });
    });
    bb.on('field', (name, value, info) => {
      if (info.valueTruncated) {
        const field = typeof name === 'string' && name !== '' ? name.slice(0, 64) : '(unnamed)';
        fail(badRequest(`field "${field}" is longer than ${MAX_FIELD_BYTES} bytes`, [{ path: field, message: 'too long' }]));
        return;
      }
      if (name === 'image' || name === 'imageBase64') {
        fail(badRequest('the image must be sent as a file part named "image"', [{ path: 'image', message: 'must be a file part' }]));
        return;
      }
      if (!TEXT_FIELDS.has(name)) return; // unknown fields are ignored, like unknown JSON members
      if (name === 'params') {
        try {
          out.params = value === '' ? undefined : JSON.parse(value);
        } catch {
          out.errors.push({ path: 'params', message: 'must be a JSON object' });
        }
        return;
      }
      (out as unknown as Record<string, unknown>)[name] = value;
    });
    bb.on('filesLimit', () =>
      fail(badRequest('only one file part (image) is accepted', [{ path: 'image', message: 'more than one file' }])),
    );
    bb.on('fieldsLimit', () => fail(badRequest('too many fields')));
    bb.on('partsLimit', () => fail(badRequest('too many parts')));
    bb.on('error', () => settle(failure ?? malformed()));
    bb.on('close', () => settle(failure));
    req.on('error', () => settle(badRequest('the request body could not be read')));
    req.pipe(bb);
  });
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** The JSON body (already parsed by express.json) in the raw shape, with `imageBase64` decoded. */
export function fromJson(body: unknown, maxUploadBytes: number): RawSubmit {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('the body must be a JSON object');
  }
  const b = body as Record<string, unknown>;
  const out: RawSubmit = { pipeline: b.pipeline, params: b.params, priority: b.priority, webhookUrl: b.webhookUrl, errors: [] };
  const img = b.imageBase64 ?? b.image;
  if (img !== undefined && img !== null) {
    if (typeof img !== 'string') {
      out.errors.push({ path: 'image', message: 'imageBase64 must be a base64 string' });
    } else {
      const data = img.replace(/^data:[^,]{0,100};base64,/, '').replace(/\s+/g, '');
      if (!BASE64.test(data) || data.length % 4 === 1) {
        out.errors.push({ path: 'image', message: 'imageBase64 is not valid base64' });
      } else if (Math.floor((data.length * 3) / 4) - 2 > maxUploadBytes) {
        throw tooLarge(maxUploadBytes);
      } else {
        const decoded = Buffer.from(data, data.includes('-') || data.includes('_') ? 'base64url' : 'base64');
        if (decoded.length > maxUploadBytes) throw tooLarge(maxUploadBytes);
        out.image = decoded;
        out.imageSha256 = sha256Hex(decoded);
      }
    }
  }
  return out;
}

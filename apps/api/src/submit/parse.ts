import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { InputFormat } from '@darkroom/contracts';
import {
  type CompletenessTracker,
  completenessTracker,
  type ImageSource,
  SPOOL_HEAD_BYTES,
  type SpooledImage,
  sniffFormat,
} from '@darkroom/images';
import { ImageTooLarge, type RawSubmit, StoreUnavailable, sha256Hex } from '@darkroom/jobs';
import busboy from 'busboy';
import { badRequest } from '../http/problem.ts';

/*
 * Turns a submit body, multipart or JSON, into one raw shape. Nothing is validated here beyond
 * the encoding itself; `validateSubmit` judges the fields so both encodings answer alike.
 */
export type { RawSubmit };

const MAX_FIELD_BYTES = 256 * 1024;
const TEXT_FIELDS = new Set(['pipeline', 'params', 'priority', 'webhookUrl', 'webhookEvents', 'timeoutSeconds', 'ttlSeconds', 'imageUrl']);

export const tooLarge = (max: number) => new ImageTooLarge(max);

export const storeUnavailable = () => new StoreUnavailable();

/** Where a large upload goes while it arrives. */
export interface Spool {
  /** An image up to this many bytes stays in memory; a larger one is written to a temporary file as it arrives. */
  memoryBytes: number;
  /** A fresh temporary write: a local file to read back, and where the bytes go (the blob store's staged write). */
  open(): { path: string; out: Writable };
  /** Drops a temporary write that will not be adopted; by default, its file is removed. */
  discard?(path: string): Promise<void>;
}

/** Removes a spooled image's temporary file; nothing to do for one held in memory. */
export async function discardImage(image: ImageSource | undefined): Promise<void> {
  if (image && !Buffer.isBuffer(image)) await fs.rm(image.path, { force: true });
}

/**
 * The temporary file of an upload past the memory threshold: written as the bytes arrive, with
 * the arrival paced to the disk, and its container's completeness judged on the way.
 */
/** How long a discarded staged write may take to close before its file is removed anyway. */
const DISCARD_CLOSE_WAIT_MS = 5000;

class SpoolFile {
  readonly path: string;
  readonly head: Buffer;
  readonly #tracker: CompletenessTracker | undefined;
  readonly #out: Writable;
  readonly #discard: (path: string) => Promise<void>;
  #failed = false;

  constructor(spool: Spool, first: Buffer, source: Readable, onError: () => void) {
    const { path, out } = spool.open();
    this.path = path;
    this.#discard = spool.discard ?? ((p) => fs.rm(p, { force: true }));
    // A copy: the head outlives the chunks, which are released once written.
    this.head = Buffer.from(first.subarray(0, SPOOL_HEAD_BYTES));
    const format = InputFormat.safeParse(sniffFormat(this.head));
    this.#tracker = format.success ? completenessTracker(format.data) : undefined;
    this.#out = out;
    this.#out.on('error', () => {
      if (this.#failed) return;
      this.#failed = true;
      source.resume(); // drain the rest of the body so the answer can go out
      onError();
    });
    this.write(first, source);
  }

  write(chunk: Buffer, source: Readable): void {
    if (this.#failed) return;
    this.#tracker?.push(chunk);
    if (!this.#out.write(chunk)) {
      source.pause();
      this.#out.once('drain', () => source.resume());
    }
  }

  /** Flushes and closes the file; rejects if it could not be written whole. */
  finish(bytes: number, sha256: string): Promise<SpooledImage> {
    return new Promise((resolve, reject) => {
      if (this.#failed) return reject(storeUnavailable());
      this.#out.end(() => {
        if (this.#failed) return reject(storeUnavailable());
        resolve({ path: this.path, bytes, sha256, head: this.head, complete: this.#tracker?.complete() });
      });
    });
  }

  async discard(): Promise<void> {
    this.#failed = true;
    // A file stream still opening creates its file after destroy(): remove it once the stream has
    // closed, not before (bounded, for a store's stream that never reports closing).
    const closed = finished(this.#out).catch(() => {});
    this.#out.destroy();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(resolve, DISCARD_CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
    await this.#discard(this.path);
  }
}

/**
 * An image's bytes as they arrive, from a multipart part or a fetched URL alike: held in memory up
 * to the spool's threshold, past it written to a staged write (SpoolFile), hashed either way.
 * The bytes are read once, and an image that arrived in one piece is kept as that piece (busboy
 * hands out slices it no longer uses), not copied.
 */
export class ImageSink {
  readonly #max: number;
  readonly #spool: Spool | undefined;
  readonly #source: Readable;
  readonly #onStoreError: () => void;
  #chunks: Buffer[] = [];
  #hash: Hash | undefined;
  #spooled: SpoolFile | undefined;
  #size = 0;

  /** `onStoreError`: the staged write failed; the caller answers StoreUnavailable. */
  constructor(maxBytes: number, spool: Spool | undefined, source: Readable, onStoreError: () => void) {
    this.#max = maxBytes;
    this.#spool = spool;
    this.#source = source;
    this.#onStoreError = onStoreError;
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.#size;
  }

  /** Takes the next chunk; false once the image is past the limit (what was held is dropped). */
  push(c: Buffer): boolean {
    this.#size += c.length;
    if (this.#size > this.#max) {
      this.drop();
      return false;
    }
    if (this.#spooled) {
      this.#hash!.update(c);
      this.#spooled.write(c, this.#source);
      return true;
    }
    this.#chunks.push(c);
    if (this.#spool && this.#size > this.#spool.memoryBytes) {
      // An image held in memory is hashed once it is whole, in one call; one that is spooled, as it arrives.
      const first = this.#chunks.length === 1 ? c : Buffer.concat(this.#chunks, this.#size);
      this.#chunks = [];
      this.#hash = createHash('sha256').update(first);
      this.#spooled = new SpoolFile(this.#spool, first, this.#source, this.#onStoreError);
    }
    return true;
  }

  /** Lets go of the bytes held in memory (a refused image). */
  drop(): void {
    this.#chunks.length = 0;
  }

  /** The whole image, once its source has ended: in memory, or its staged write flushed and closed. */
  async finish(): Promise<{ image: ImageSource; sha256: string }> {
    if (this.#spooled) {
      const sha256 = this.#hash!.digest('hex');
      return { image: await this.#spooled.finish(this.#size, sha256), sha256 };
    }
    const chunks = this.#chunks;
    const image = this.#size === 0 ? Buffer.alloc(0) : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#size);
    return { image, sha256: sha256Hex(image) };
  }

  /** Removes a staged write, if there is one; nothing is left behind. */
  async discard(): Promise<void> {
    this.drop();
    await this.#spooled?.discard();
  }
}

/**
 * Another form than the submit's: which file part names carry the image, and where every text
 * field goes (by name, as sent; the caller judges them).
 */
export interface OtherForm {
  imageParts: readonly string[];
  fields: Record<string, string>;
  /** File parts the form knows but refuses, by name: the `400` says why, at that name. */
  refusedParts?: Readonly<Record<string, string>>;
  /** Other file parts it takes, kept in memory (the upload limit applies to each), into `files`. */
  otherParts?: readonly string[];
  files?: Record<string, Buffer>;
}

export function parseMultipart(req: IncomingMessage, maxUploadBytes: number, spool?: Spool, form?: OtherForm): Promise<RawSubmit> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        // One byte past the limit: busboy flags a file that ends exactly at its limit as cut
        // short, and the limit is on the image's bytes; the size check below answers 413.
        // A refused part counts as a file too, so that it is named, not taken for a second image.
        limits: {
          fileSize: maxUploadBytes + 1,
          files: 1 + Object.keys(form?.refusedParts ?? {}).length + (form?.otherParts?.length ?? 0),
          fields: 16,
          parts: 20,
          fieldSize: MAX_FIELD_BYTES,
          headerPairs: 32,
        },
      });
    } catch {
      return reject(badRequest('malformed multipart/form-data (missing or bad boundary)'));
    }
    const out: RawSubmit = { errors: [] };
    let failure: Error | undefined;
    const fail = (err: Error) => {
      failure ??= err;
    };
    let image: ImageSink | undefined;
    let imageWhole = false;
    // Busboy does not always emit 'close' after an 'error' (a malformed part header, for one), so
    // the first of error/close settles. On an error the rest of the body is read and dropped, so
    // the answer reaches a client that is still sending.
    let settled = false;
    const settle = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      if (!err && image && imageWhole) {
        const sink = image;
        sink.finish().then(
          (whole) => {
            out.image = whole.image;
            out.imageSha256 = whole.sha256;
            resolve(out);
          },
          (e: Error) => sink.discard().finally(() => reject(e)),
        );
        return;
      }
      // No stray file: a spooled image of a refused request is removed before the answer.
      const cleanup = image ? image.discard().catch(() => {}) : Promise.resolve();
      if (!err) return void cleanup.then(() => resolve(out));
      req.unpipe(bb);
      req.resume();
      void cleanup.then(() => reject(err));
    };
    const malformed = () => badRequest('malformed multipart/form-data body');

    let images = 0;
    bb.on('file', (name, stream) => {
      if (form?.otherParts?.includes(name) && form.files && !Object.hasOwn(form.files, name)) {
        const files = form.files;
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on('error', () => fail(malformed()));
        stream.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxUploadBytes) fail(tooLarge(maxUploadBytes));
          else if (!failure) chunks.push(c);
        });
        stream.on('limit', () => fail(tooLarge(maxUploadBytes)));
        stream.on('close', () => {
          if (!failure) files[name] = Buffer.concat(chunks, size);
        });
        return;
      }
      const refused = form?.refusedParts && Object.hasOwn(form.refusedParts, name) ? form.refusedParts[name] : undefined;
      const secondImage = refused === undefined && ++images > 1;
      if (refused !== undefined || secondImage) {
        fail(
          refused !== undefined
            ? badRequest(refused, [{ path: name, message: refused }])
            : badRequest('only one file part (image) is accepted', [{ path: 'image', message: 'more than one file' }]),
        );
        stream.on('error', () => {});
        stream.resume();
        return;
      }
      if (!(form ? form.imageParts.includes(name) : name === 'image')) {
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
      const sink = new ImageSink(maxUploadBytes, spool, stream, () => fail(storeUnavailable()));
      image = sink;
      stream.on('data', (c: Buffer) => {
        if (failure) return;
        if (!sink.push(c)) fail(tooLarge(maxUploadBytes));
      });
      stream.on('limit', () => {
        fail(tooLarge(maxUploadBytes));
        sink.drop();
      });
      stream.on('close', () => {
        if (!failure) imageWhole = true;
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
      if (form) {
        if (typeof name === 'string' && !Object.hasOwn(form.fields, name)) form.fields[name] = value;
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
  const out: RawSubmit = {
    pipeline: b.pipeline,
    params: b.params,
    priority: b.priority,
    webhookUrl: b.webhookUrl,
    timeoutSeconds: b.timeoutSeconds,
    ttlSeconds: b.ttlSeconds,
    webhookEvents: b.webhookEvents,
    imageUrl: b.imageUrl,
    errors: [],
  };
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

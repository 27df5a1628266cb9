import { CONTENT_TYPES, type InputFormat } from '@darkroom/contracts';
import sharp, { type Metadata } from 'sharp';
import { completenessTracker } from './image-complete-stream.ts';
import { type HeaderInfo, readHeader, readHeaderFromFile } from './image-header.ts';

/*
 * Judges an upload by its bytes: which format it really is (415 if not one we accept), whether
 * its header reads and its size is within limits (422), and whether its container is visibly
 * complete (422). Only headers and container structure are read here; pixels are decoded later
 * by the worker, where damage inside the compressed data fails the job as `invalid_input`.
 */

export type InspectFailure = { kind: 'unsupported'; detail: string } | { kind: 'invalid'; detail: string };

export interface ImageInfo {
  format: InputFormat;
  contentType: string;
  width: number;
  height: number;
  pages: number;
}

export interface ImageLimits {
  maxImageEdge: number;
  maxImagePixels: number;
}

type Sniffed = InputFormat | 'svg' | 'heic' | null;

/**
 * An upload too large to hold in memory, written to a temporary file on the data volume as it
 * arrived. Its format is sniffed from `head`, its header read from the file, and its container's
 * completeness judged while it streamed in, so no check needs the whole file in memory.
 */
export interface SpooledImage {
  path: string;
  bytes: number;
  /** sha256 of the bytes (hex), computed as they arrived. */
  sha256: string;
  /** The first bytes (at most SPOOL_HEAD_BYTES): enough to tell the format. */
  head: Buffer;
  /** Whether the container is complete, judged as the bytes arrived; undefined for an unrecognised format. */
  complete: boolean | undefined;
}

export type ImageSource = Buffer | SpooledImage;

export const SPOOL_HEAD_BYTES = 64 * 1024;

export const imageByteLength = (image: ImageSource): number => (Buffer.isBuffer(image) ? image.length : image.bytes);

export function sniffFormat(b: Buffer): Sniffed {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (b.length >= 6 && (b.toString('latin1', 0, 6) === 'GIF87a' || b.toString('latin1', 0, 6) === 'GIF89a')) return 'gif';
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  if (b.length >= 4) {
    const h = b.toString('latin1', 0, 4);
    if (h === 'II*\0' || h === 'MM\0*' || h === 'II+\0' || h === 'MM\0+') return 'tiff';
  }
  if (b.length >= 12 && b.toString('latin1', 4, 8) === 'ftyp') {
    const size = Math.min(b.readUInt32BE(0), b.length);
    const brands: string[] = [b.toString('latin1', 8, 12)];
    for (let o = 16; o + 4 <= size; o += 4) brands.push(b.toString('latin1', o, o + 4));
    if (brands.some((x) => x === 'avif' || x === 'avis')) return 'avif';
    if (brands.some((x) => ['heic', 'heix', 'mif1', 'msf1', 'hevc'].includes(x))) return 'heic';
    return null;
  }
  const head = b
    .toString('utf8', 0, Math.min(b.length, 512))
    .replace(/^\uFEFF/, '')
    .trimStart();
  if (head.startsWith('<') && /<svg[\s>]/i.test(head)) return 'svg';
  return null;
}

/**
 * Whether the container ends where it says it does; false = visibly truncated. The walk is the
 * streaming one a spooled upload gets, fed the whole file at once, so both paths answer alike.
 */
export function isComplete(format: InputFormat, b: Buffer): boolean {
  const tracker = completenessTracker(format);
  tracker.push(b);
  return tracker.complete();
}

/** libvips' reading of the header (of the first page; `pages` counts them), or undefined if it cannot read it. */
async function libvipsHeader(input: Buffer | string): Promise<HeaderInfo | undefined> {
  let meta: Metadata;
  try {
    // From a file, libvips reads only as far as the header.
    meta = await sharp(input, { limitInputPixels: false, failOn: 'none' }).metadata();
  } catch {
    return undefined;
  }
  return { width: meta.width, height: meta.pageHeight ?? meta.height, pages: meta.pages ?? 1 };
}

export async function inspectImage(
  data: ImageSource,
  limits: ImageLimits,
): Promise<{ ok: true; info: ImageInfo } | { ok: false; failure: InspectFailure }> {
  const inMemory = Buffer.isBuffer(data);
  const sniffed = sniffFormat(inMemory ? data : data.head);
  if (sniffed === null || sniffed === 'svg' || sniffed === 'heic') {
    const what =
      sniffed === 'svg' ? 'SVG is not accepted' : sniffed === 'heic' ? 'HEIC is not accepted' : 'not an image format the server accepts';
    return { ok: false, failure: { kind: 'unsupported', detail: `${what}; accepted: JPEG, PNG, WebP, AVIF, GIF, TIFF` } };
  }
  // The common headers are read here (image-header.ts); libvips reads the rest, as it always did.
  const fast = inMemory ? readHeader(sniffed, data) : await readHeaderFromFile(sniffed, data.path, data.bytes, data.head);
  const header = fast ?? (await libvipsHeader(inMemory ? data : data.path));
  if (!header) {
    return { ok: false, failure: { kind: 'invalid', detail: `the ${sniffed.toUpperCase()} header cannot be read` } };
  }
  const { width, height } = header;
  if (!width || !height) {
    return { ok: false, failure: { kind: 'invalid', detail: 'the image has no readable dimensions' } };
  }
  if (width > limits.maxImageEdge || height > limits.maxImageEdge) {
    return {
      ok: false,
      failure: { kind: 'invalid', detail: `the image is ${width}×${height}; the longest edge allowed is ${limits.maxImageEdge} px` },
    };
  }
  const pages = header.pages;
  if (width * height > limits.maxImagePixels || width * height * pages > limits.maxImagePixels * 4) {
    return {
      ok: false,
      failure: {
        kind: 'invalid',
        detail: `the image has ${width * height * pages} pixels; at most ${limits.maxImagePixels} per frame are allowed`,
      },
    };
  }
  if (!(inMemory ? isComplete(sniffed, data) : data.complete === true)) {
    return { ok: false, failure: { kind: 'invalid', detail: 'the image is incomplete (its data ends before its end marker)' } };
  }
  return { ok: true, info: { format: sniffed, contentType: CONTENT_TYPES[sniffed], width, height, pages } };
}

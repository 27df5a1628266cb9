import { CONTENT_TYPES, type InputFormat } from '@darkroom/contracts';
import sharp, { type Metadata } from 'sharp';

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

/** Whether the container ends where it says it does; false = visibly truncated. */
export function isComplete(format: InputFormat, b: Buffer): boolean {
  switch (format) {
    case 'jpeg':
      return jpegComplete(b);
    case 'png':
      return pngComplete(b);
    case 'gif':
      return gifComplete(b);
    case 'webp':
      return b.length >= 12 && b.readUInt32LE(4) + 8 <= b.length;
    case 'avif':
      return boxesComplete(b);
    case 'tiff':
      return true; // offsets point anywhere; libtiff reports damage on decode
  }
}

/** Walks segments to the first scan, then scans entropy-coded data for markers, until EOI. */
function jpegComplete(b: Buffer): boolean {
  let i = 2;
  while (i + 2 <= b.length) {
    if (b[i] !== 0xff) return false;
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (marker === 0xd9) return true;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    if (i + 4 > b.length) return false;
    const len = b.readUInt16BE(i + 2);
    i += 2 + len;
    if (marker === 0xda) {
      // entropy-coded data: the next marker is 0xFF not followed by 0x00 or RSTn
      for (;;) {
        const ff = b.indexOf(0xff, i);
        if (ff < 0 || ff + 1 >= b.length) return false;
        const next = b[ff + 1]!;
        if (next === 0x00 || (next >= 0xd0 && next <= 0xd7) || next === 0xff) {
          i = ff + 1;
          continue;
        }
        i = ff;
        break;
      }
    }
  }
  return false;
}

/**
 * Walks the blocks (extensions, images and their data sub-blocks) to the trailer. Checking only
 * that the last byte is the trailer's 0x3B lets a file cut at any 0x3B inside image data pass.
 */
function gifComplete(b: Buffer): boolean {
  if (b.length < 13) return false;
  const colorTable = (packed: number) => (packed & 0x80 ? 3 * 2 ** ((packed & 0x07) + 1) : 0);
  let i = 13 + colorTable(b[10]!);
  /** Skips data sub-blocks from i to their terminator; -1 if they run past the end. */
  const subBlocks = (at: number): number => {
    let j = at;
    while (j < b.length) {
      const size = b[j]!;
      if (size === 0) return j + 1;
      j += 1 + size;
    }
    return -1;
  };
  while (i < b.length) {
    const block = b[i]!;
    if (block === 0x3b) return true;
    if (block === 0x21) {
      if (i + 2 > b.length) return false;
      i = subBlocks(i + 2); // introducer, label, sub-blocks
    } else if (block === 0x2c) {
      if (i + 10 > b.length) return false;
      i += 10 + colorTable(b[i + 9]!);
      if (i >= b.length) return false;
      i = subBlocks(i + 1); // LZW minimum code size, then the image data
    } else {
      return false;
    }
    if (i < 0) return false;
  }
  return false;
}

function pngComplete(b: Buffer): boolean {
  let i = 8;
  while (i + 12 <= b.length) {
    const len = b.readUInt32BE(i);
    const type = b.toString('latin1', i + 4, i + 8);
    i += 12 + len;
    if (type === 'IEND') return i <= b.length;
  }
  return false;
}

/** ISO-BMFF: every top-level box must fit in the file. */
function boxesComplete(b: Buffer): boolean {
  let i = 0;
  let sawMeta = false;
  while (i + 8 <= b.length) {
    let size = b.readUInt32BE(i);
    const type = b.toString('latin1', i + 4, i + 8);
    if (size === 1) {
      if (i + 16 > b.length) return false;
      size = Number(b.readBigUInt64BE(i + 8));
    } else if (size === 0) {
      size = b.length - i;
    }
    if (size < 8 || i + size > b.length) return false;
    if (type === 'meta') sawMeta = true;
    i += size;
  }
  return i === b.length && sawMeta;
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
  let meta: Metadata;
  try {
    // From a file, libvips reads only as far as the header.
    meta = await sharp(inMemory ? data : data.path, { limitInputPixels: false, failOn: 'none' }).metadata();
  } catch {
    return { ok: false, failure: { kind: 'invalid', detail: `the ${sniffed.toUpperCase()} header cannot be read` } };
  }
  const width = meta.width;
  const height = meta.pageHeight ?? meta.height;
  if (!width || !height) {
    return { ok: false, failure: { kind: 'invalid', detail: 'the image has no readable dimensions' } };
  }
  if (width > limits.maxImageEdge || height > limits.maxImageEdge) {
    return {
      ok: false,
      failure: { kind: 'invalid', detail: `the image is ${width}×${height}; the longest edge allowed is ${limits.maxImageEdge} px` },
    };
  }
  const pages = meta.pages ?? 1;
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

import { open } from 'node:fs/promises';
import zlib from 'node:zlib';
import type { InputFormat } from '@darkroom/contracts';

/*
 * The image header read without libvips, for the headers whose reading by libvips can be
 * predicted byte for byte: a PNG whose chunks before the first IDAT are the few plain ones, and a
 * JPEG whose markers before the first scan are the usual ones with values libjpeg takes. Anything
 * else (other chunks or markers, odd values, bytes missing, GIF, WebP, TIFF, AVIF) answers
 * `undefined`, and the caller asks libvips as before: this is a fast path, never a second opinion.
 *
 * Hand-written rather than a library: a dimension reader (image-size) answers for files libvips
 * refuses (it does not check what libjpeg and libspng check), needs the whole head in one buffer
 * (a JPEG's frame header can lie past the spooled head, behind a large ICC profile), and does
 * not say when it is unsure. Here every accepted header is one libvips reads, with the same size;
 * test/image-header.test.ts compares the two on the fixtures and on thousands of their
 * truncations and corruptions.
 */

export interface HeaderInfo {
  width: number;
  height: number;
  pages: number;
}

/** Random access to the image's bytes; `undefined` when the bytes are not loaded yet (a file). */
interface Bytes {
  /** The bytes [offset, offset + length), fewer at the end of the file, or undefined if not at hand. */
  get(offset: number, length: number): Buffer | undefined;
}

class Need {
  constructor(
    readonly offset: number,
    readonly length: number,
  ) {}
}

/** Dimensions past this are left to libvips, whose own limits (libspng's, VIPS_MAX_COORD) then answer. */
const MAX_FAST_DIMENSION = 1 << 20;

/** The header of an in-memory image, or undefined when libvips must judge it. */
export function readHeader(format: InputFormat, data: Buffer): HeaderInfo | undefined {
  const bytes: Bytes = { get: (offset, length) => data.subarray(offset, offset + length) };
  return walk(format, bytes);
}

/** Loading past this many bytes of a file, the header is left to libvips. */
const MAX_FILE_READ = 1 << 20;
const WINDOW = 16 * 1024;

/**
 * The header of an image in a file, reading only the windows the walk asks for (at most
 * MAX_FILE_READ bytes in all), or undefined when libvips must judge it.
 */
export async function readHeaderFromFile(format: InputFormat, path: string, size: number, head: Buffer): Promise<HeaderInfo | undefined> {
  if (format !== 'png' && format !== 'jpeg') return undefined;
  const windows: { offset: number; data: Buffer }[] = [{ offset: 0, data: head }];
  let loaded = head.length;
  const bytes: Bytes = {
    get(offset, length) {
      const end = Math.min(offset + length, size);
      if (end <= offset) return Buffer.alloc(0);
      for (const w of windows) {
        if (offset >= w.offset && end <= w.offset + w.data.length) return w.data.subarray(offset - w.offset, end - w.offset);
      }
      throw new Need(offset, end - offset);
    },
  };
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    for (;;) {
      try {
        return walk(format, bytes);
      } catch (e) {
        if (!(e instanceof Need)) throw e;
        const length = Math.min(Math.max(e.length, WINDOW), size - e.offset);
        if (length <= 0 || loaded + length > MAX_FILE_READ) return undefined;
        fh ??= await open(path, 'r');
        const data = Buffer.alloc(length);
        const { bytesRead } = await fh.read(data, 0, length, e.offset);
        if (bytesRead < e.length) return undefined; // the file is shorter than it was
        windows.push({ offset: e.offset, data: data.subarray(0, bytesRead) });
        loaded += length;
      }
    }
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => {});
  }
}

function walk(format: InputFormat, bytes: Bytes): HeaderInfo | undefined {
  if (format === 'png') return png(bytes);
  if (format === 'jpeg') return jpeg(bytes);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// PNG, as libspng reads it up to the first IDAT (libvips reads the IHDR, then asks for the
// palette, transparency, ICC profile, text and EXIF, which reads every chunk before IDAT).

/** Bit depths each colour type allows. */
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
const IHDR = 0x49484452;
const IDAT = 0x49444154;
const PLTE = 0x504c5445;
const TRNS = 0x74524e53;
const GAMA = 0x67414d41;
const SRGB = 0x73524742;
const PHYS = 0x70485973;

function png(bytes: Bytes): HeaderInfo | undefined {
  const ihdr = bytes.get(8, 25);
  if (ihdr?.length !== 25 || ihdr.readUInt32BE(0) !== 13 || ihdr.readUInt32BE(4) !== IHDR || !crcOk(ihdr)) return;
  const width = ihdr.readUInt32BE(8);
  const height = ihdr.readUInt32BE(12);
  const depth = ihdr[16]!;
  const color = ihdr[17]!;
  if (width < 1 || height < 1 || width > MAX_FAST_DIMENSION || height > MAX_FAST_DIMENSION) return;
  if (!PNG_DEPTHS[color]?.includes(depth) || ihdr[18] !== 0 || ihdr[19] !== 0 || ihdr[20]! > 1) return;
  const seen = new Set<number>();
  let paletteEntries = 0;
  let at = 33;
  // Only these chunks, each once, in this order of dependence, with valid values; any other
  // chunk before IDAT (iCCP, text, eXIf, acTL…) is left to libvips.
  for (let n = 0; n < 16; n++) {
    const h = bytes.get(at, 8);
    if (h?.length !== 8) return;
    const length = h.readUInt32BE(0);
    const type = h.readUInt32BE(4);
    if (type === IDAT) {
      if (color === 3 && paletteEntries === 0) return;
      return { width, height, pages: 1 };
    }
    if (length > 1024 || seen.has(type)) return;
    const chunk = bytes.get(at, 12 + length);
    if (chunk?.length !== 12 + length || !crcOk(chunk)) return;
    const d = chunk.subarray(8, 8 + length);
    seen.add(type);
    switch (type) {
      case PLTE:
        if (color !== 3 || length === 0 || length % 3 !== 0 || length / 3 > 2 ** depth || seen.has(TRNS)) return;
        paletteEntries = length / 3;
        break;
      case TRNS: {
        const max = 2 ** depth - 1;
        if (color === 0) {
          if (length !== 2 || d.readUInt16BE(0) > max) return;
        } else if (color === 2) {
          if (length !== 6 || d.readUInt16BE(0) > max || d.readUInt16BE(2) > max || d.readUInt16BE(4) > max) return;
        } else if (color === 3) {
          if (paletteEntries === 0 || length === 0 || length > paletteEntries) return;
        } else return;
        break;
      }
      case GAMA:
        if (length !== 4 || seen.has(PLTE) || seen.has(SRGB)) return;
        if (d.readUInt32BE(0) === 0 || d.readUInt32BE(0) > 0x7fffffff) return;
        break;
      case SRGB:
        if (length !== 1 || d[0]! > 3 || seen.has(PLTE)) return;
        break;
      case PHYS:
        if (length !== 9 || d.readUInt32BE(0) > 0x7fffffff || d.readUInt32BE(4) > 0x7fffffff || d[8]! > 1) return;
        break;
      default:
        return;
    }
    at += 12 + length;
  }
  return;
}

/** Whether a whole chunk's (length, type, data, CRC) CRC is right. */
function crcOk(chunk: Buffer): boolean {
  const end = chunk.length - 4;
  return zlib.crc32(chunk.subarray(4, end)) === chunk.readUInt32BE(end);
}

// ---------------------------------------------------------------------------------------------
// JPEG, as libjpeg's jpeg_read_header reads it: every marker up to the first SOS, then the frame
// checks of its initial_setup (dimensions, precision, sampling factors).

const JPEG_MAX_DIMENSION = 65500;

function jpeg(bytes: Bytes): HeaderInfo | undefined {
  let at = 2;
  let frame: { width: number; height: number; ids: number[] } | undefined;
  for (let n = 0; n < 256; n++) {
    const m = bytes.get(at, 4);
    // Fill bytes, junk between markers and markers without a length are left to libjpeg.
    if (m?.length !== 4 || m[0] !== 0xff) return;
    const marker = m[1]!;
    const length = m.readUInt16BE(2);
    if (length < 2) return;
    if ((marker >= 0xe0 && marker <= 0xef) || marker === 0xfe) {
      // APPn and COM: skipped by libjpeg; libvips reads EXIF, ICC and XMP from them leniently.
      at += 2 + length;
      continue;
    }
    const seg = bytes.get(at + 4, length - 2);
    if (seg?.length !== length - 2) return;
    switch (marker) {
      case 0xc0:
      case 0xc1:
      case 0xc2: {
        // baseline, extended and progressive Huffman; arithmetic and lossless are left to libjpeg
        if (frame || seg.length < 6) return;
        const height = seg.readUInt16BE(1);
        const width = seg.readUInt16BE(3);
        const nc = seg[5]!;
        if (seg[0] !== 8 || (nc !== 1 && nc !== 3 && nc !== 4) || seg.length !== 6 + 3 * nc) return;
        if (width < 1 || height < 1 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION) return;
        const ids: number[] = [];
        for (let i = 0; i < nc; i++) {
          const id = seg[6 + 3 * i]!;
          const h = seg[7 + 3 * i]! >> 4;
          const v = seg[7 + 3 * i]! & 15;
          const tq = seg[8 + 3 * i]!;
          if (ids.includes(id) || h < 1 || h > 4 || v < 1 || v > 4 || tq > 3) return;
          ids.push(id);
        }
        frame = { width, height, ids };
        break;
      }
      case 0xc4: {
        // DHT: table class 0/1, index 0–3, at most 256 codes, the lengths adding up exactly
        let p = 0;
        while (p < seg.length) {
          if (p + 17 > seg.length || (seg[p]! & ~0x13) !== 0) return;
          let count = 0;
          for (let i = 1; i <= 16; i++) count += seg[p + i]!;
          if (count > 256) return;
          p += 17 + count;
        }
        if (p !== seg.length) return;
        break;
      }
      case 0xdb: {
        // DQT: 8- or 16-bit tables, index 0–3, the lengths adding up exactly
        let p = 0;
        while (p < seg.length) {
          const pq = seg[p]! >> 4;
          if (pq > 1 || (seg[p]! & 15) > 3) return;
          p += 1 + 64 * (pq + 1);
        }
        if (p !== seg.length) return;
        break;
      }
      case 0xdd:
        if (length !== 4) return;
        break;
      case 0xda: {
        // SOS: 1–4 components of the frame, each once
        const ns = seg[0] ?? 0;
        if (!frame || ns < 1 || ns > 4 || seg.length !== 4 + 2 * ns) return;
        const used: number[] = [];
        for (let i = 0; i < ns; i++) {
          const id = seg[1 + 2 * i]!;
          if (!frame.ids.includes(id) || used.includes(id)) return;
          used.push(id);
        }
        return { width: frame.width, height: frame.height, pages: 1 };
      }
      default:
        // DAC, DNL, SOF of other kinds, restart markers, a second SOI, EOI, reserved markers
        return;
    }
    at += 2 + length;
  }
  return;
}

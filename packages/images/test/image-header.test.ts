import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { CONTENT_TYPES } from '@darkroom/contracts';
import { type ImageLimits, inspectImage, isComplete, SPOOL_HEAD_BYTES, type SpooledImage, sniffFormat } from '@darkroom/images';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { type HeaderInfo, readHeader, readHeaderFromFile } from '../src/image-header.ts';

/*
 * The header reader of image-header.ts against libvips (sharp's metadata(), what inspectImage
 * used alone before): whatever it reads, libvips must read too, with the same size and pages;
 * and inspectImage must give the verdict the libvips-only inspector gave, on every fixture and
 * on truncations and corruptions of them, and on hostile headers made here.
 */

const FIXTURES = new URL('../../testing/fixtures/images/', import.meta.url);
const NAMES = readdirSync(FIXTURES).filter((f) => f !== 'MANIFEST.md');
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES));
const LIMITS: ImageLimits = { maxImageEdge: 8192, maxImagePixels: 50_000_000 };

/** A seeded PRNG, so every run tries the same cases. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

async function libvips(data: Buffer): Promise<HeaderInfo | undefined> {
  try {
    const m = await sharp(data, { limitInputPixels: false, failOn: 'none' }).metadata();
    return { width: m.width, height: m.pageHeight ?? m.height, pages: m.pages ?? 1 };
  } catch {
    return undefined;
  }
}

/** The inspector as it was: libvips reads every header. */
async function referenceInspect(data: Buffer, limits: ImageLimits) {
  const sniffed = sniffFormat(data);
  if (sniffed === null || sniffed === 'svg' || sniffed === 'heic') return { ok: false, kind: 'unsupported' };
  const h = await libvips(data);
  if (!h) return { ok: false, kind: 'invalid', detail: `the ${sniffed.toUpperCase()} header cannot be read` };
  const { width, height, pages } = h;
  if (!width || !height) return { ok: false, kind: 'invalid', detail: 'the image has no readable dimensions' };
  if (width > limits.maxImageEdge || height > limits.maxImageEdge) {
    return { ok: false, kind: 'invalid', detail: `the image is ${width}×${height}; the longest edge allowed is ${limits.maxImageEdge} px` };
  }
  if (width * height > limits.maxImagePixels || width * height * pages > limits.maxImagePixels * 4) {
    return {
      ok: false,
      kind: 'invalid',
      detail: `the image has ${width * height * pages} pixels; at most ${limits.maxImagePixels} per frame are allowed`,
    };
  }
  if (!isComplete(sniffed, data))
    return { ok: false, kind: 'invalid', detail: 'the image is incomplete (its data ends before its end marker)' };
  return { ok: true, info: { format: sniffed, contentType: CONTENT_TYPES[sniffed], width, height, pages } };
}

async function verdict(data: Buffer, limits = LIMITS) {
  const r = await inspectImage(data, limits);
  return r.ok ? r : r.failure.kind === 'unsupported' ? { ok: false, kind: 'unsupported' } : { ok: false, ...r.failure };
}

const stats = { fast: 0, deferred: 0, compared: 0 };

/** The fast reading, when there is one, is libvips' reading; the verdict is the old verdict. */
async function agrees(data: Buffer, label: string, limits = LIMITS) {
  const format = sniffFormat(data);
  const fast = format === 'png' || format === 'jpeg' ? readHeader(format, data) : undefined;
  if (fast) {
    stats.fast++;
    expect(await libvips(data), `${label}: libvips reads the header the fast path read`).toEqual(fast);
  } else stats.deferred++;
  stats.compared++;
  expect(await verdict(data, limits), `${label}: the verdict`).toEqual(await referenceInspect(data, limits));
}

/** Where the header ends: the first SOS of a JPEG, the first IDAT of a PNG. */
function headerEnd(b: Buffer): number {
  if (sniffFormat(b) === 'png') {
    let at = 8;
    while (at + 8 <= b.length && b.toString('latin1', at + 4, at + 8) !== 'IDAT') at += 12 + b.readUInt32BE(at);
    return Math.min(at + 8, b.length);
  }
  let at = 2;
  while (at + 4 <= b.length && b[at + 1] !== 0xda) at += 2 + b.readUInt16BE(at + 2);
  return at + 4 <= b.length ? Math.min(at + 2 + b.readUInt16BE(at + 2), b.length) : b.length;
}

const HEADER_FORMATS = NAMES.filter((n) => ['png', 'jpeg'].includes(sniffFormat(fixture(n)) ?? ''));

describe('the fast header reader against libvips', () => {
  afterAll(() => {
    // Most cases must take the fast path, or this suite would prove nothing about it.
    expect(stats.fast).toBeGreaterThan(stats.compared / 5);
  });

  it.each(NAMES)('%s: the same reading and verdict', async (name) => {
    await agrees(fixture(name), name);
    await agrees(fixture(name), `${name} (edge limit off)`, { maxImageEdge: 100_000, maxImagePixels: 50_000_000 });
  });

  it('reads the common fixtures itself', () => {
    for (const name of ['Landscape_1.jpg', 'flowers.jpeg', 'concert.jpg', 'Channel_digital_image_CMYK_color.jpg', 'truncated.png']) {
      const b = fixture(name);
      expect(readHeader(sniffFormat(b) as 'png' | 'jpeg', b), name).toBeDefined();
    }
  });

  it.each(HEADER_FORMATS)('%s cut anywhere in or just past its header', async (name) => {
    const b = fixture(name);
    const end = headerEnd(b);
    const cuts = new Set<number>();
    for (let cut = 0; cut <= Math.min(end + 64, b.length - 1); cut += cut < 4096 || cut > end - 64 ? 1 : 61) cuts.add(cut);
    for (const cut of cuts) {
      const t = b.subarray(0, cut);
      const format = sniffFormat(t);
      const fast = format === 'png' || format === 'jpeg' ? readHeader(format, t) : undefined;
      // Cheap where nothing is read: a cut before the header's end must never be read fast.
      if (cut < end) expect(fast, `${name} cut at ${cut}`).toBeUndefined();
      else await agrees(t, `${name} cut at ${cut}`);
    }
  });

  it.each(HEADER_FORMATS)('%s with 1–4 bytes of its header changed', async (name) => {
    const b = fixture(name);
    const end = headerEnd(b);
    const rand = rng(name.length * 7919 + end);
    for (let i = 0; i < 150; i++) {
      const m = Buffer.from(b);
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) {
        const at = Math.floor(rand() * end);
        m[at] = m[at]! ^ (1 + Math.floor(rand() * 255));
      }
      await agrees(m, `${name} flip #${i}`);
    }
  });

  /** Mostly a valid value, sometimes a hostile one: each case breaks a few things at most. */
  const chooser = (rand: () => number) => {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const mostly = <T>(valid: readonly T[], hostile: readonly T[]): T => (rand() < 0.93 ? pick(valid) : pick(hostile));
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
    return { pick, mostly, bytes };
  };

  it('PNG headers with hostile values', async () => {
    const rand = rng(0x9a7e);
    const { pick, mostly, bytes } = chooser(rand);
    const be32 = (n: number) => {
      const x = Buffer.alloc(4);
      x.writeUInt32BE(n >>> 0);
      return x;
    };
    const chunk = (type: string, data: Buffer) => {
      const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      return Buffer.concat([be32(data.length), td, be32(zlib.crc32(td) ^ (rand() < 0.03 ? 1 : 0))]);
    };
    const pixels = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    const idat = pixels.subarray(headerEnd(pixels) - 8); // the IDAT and IEND of a real 4×4 PNG
    const before = stats.fast;
    for (let i = 0; i < 800; i++) {
      const color = mostly([0, 2, 3, 4, 6], [1, 5, 7]);
      const depth = mostly(color === 0 ? [1, 2, 4, 8, 16] : color === 3 ? [1, 2, 4, 8] : [8, 16], [0, 1, 2, 3, 4, 5, 8, 16, 32]);
      const dim = () => mostly([1, 4, 105, 8192, 8193, 65536], [0, 1 << 20, (1 << 20) + 1, 0x7fffffff, 0x80000000, 0xffffffff]);
      const ihdr = Buffer.concat([
        be32(dim()),
        be32(dim()),
        Buffer.from([depth, color, mostly([0], [1]), mostly([0], [1]), mostly([0, 1], [2])]),
      ]);
      const parts = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)];
      const sample = () => mostly([0, 1, 2 ** depth - 1], [2 ** depth, 0xffff]);
      const u16s = (...v: number[]) => Buffer.from(v.flatMap((x) => [(x >> 8) & 255, x & 255]));
      for (const type of ['gAMA', 'sRGB', 'pHYs', 'PLTE', 'tRNS', 'cHRM', 'iCCP', 'zzzz', 'IHDR', 'acTL'].sort(() =>
        rand() < 0.9 ? 0 : rand() - 0.5,
      )) {
        if (rand() < (['gAMA', 'sRGB', 'pHYs', 'PLTE', 'tRNS'].includes(type) ? 0.6 : 0.95)) continue;
        const paletteSize = mostly(
          [1, 2, 16, 256].filter((n) => n <= 2 ** depth),
          [0, 257, 2 ** depth + 1],
        );
        const data =
          type === 'gAMA'
            ? be32(mostly([45455, 100000], [0, 0x80000000]))
            : type === 'sRGB'
              ? Buffer.from([mostly([0, 1, 2, 3], [4, 255])])
              : type === 'pHYs'
                ? Buffer.concat([
                    be32(mostly([2835, 1], [0x80000000])),
                    be32(mostly([2835], [0xffffffff])),
                    Buffer.from([mostly([0, 1], [2])]),
                  ])
                : type === 'PLTE'
                  ? Buffer.concat([bytes(paletteSize * 3), bytes(mostly([0], [1, 2]))])
                  : type === 'tRNS'
                    ? color === 0
                      ? u16s(sample())
                      : color === 2
                        ? u16s(sample(), sample(), sample())
                        : bytes(mostly([1, 2, 16], [0, 257, 6]))
                    : bytes(pick([0, 4, 13, 32]));
        parts.push(chunk(type, data));
      }
      parts.push(idat);
      await agrees(Buffer.concat(parts), `hostile PNG #${i}`);
    }
    expect(stats.fast - before).toBeGreaterThan(100);
  });

  it('JPEG headers with hostile values', async () => {
    const rand = rng(0x1bea);
    const { pick, mostly, bytes } = chooser(rand);
    const seg = (marker: number, data: Buffer) => {
      const h = Buffer.from([0xff, marker, 0, 0]);
      h.writeUInt16BE((data.length + 2 + mostly([0], [1, -1, 2])) & 0xffff, 2);
      return Buffer.concat([h, data]);
    };
    const before = stats.fast;
    for (let i = 0; i < 800; i++) {
      const parts: Buffer[] = [Buffer.from([0xff, 0xd8])];
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) {
        const m = mostly([0xe0, 0xe1, 0xe2, 0xfe, 0xdb, 0xc4, 0xdd], [0xcc, 0xf0, 0xd0, 0xdc, 0xc8, 0x01, 0xd8]);
        let data: Buffer;
        if (m === 0xdb) {
          const pq = mostly([0, 1], [2, 15]);
          data = Buffer.concat([Buffer.from([(pq << 4) | mostly([0, 1, 2, 3], [4, 15])]), bytes(mostly([64 * (pq + 1)], [63, 65, 129]))]);
        } else if (m === 0xc4) {
          const counts = Buffer.alloc(16);
          let total = 0;
          for (let c = 0; c < 16; c++) total += counts[c] = rand() < 0.3 ? Math.floor(rand() * mostly([12], [200])) : 0;
          data = Buffer.concat([
            Buffer.from([mostly([0x00, 0x01, 0x10, 0x11, 0x13], [0x04, 0x14, 0x20, 0x21])]),
            counts,
            bytes(Math.max(0, total + mostly([0], [1, -1]))),
          ]);
        } else if (m === 0xdd) data = bytes(mostly([2], [0, 3, 4]));
        else data = bytes(pick([0, 1, 14, 40]));
        parts.push(seg(m, data));
      }
      const nc = mostly([1, 3, 4], [0, 2, 5, 11]);
      const sof = Buffer.alloc(6 + 3 * nc);
      sof[0] = mostly([8], [12, 16, 0]);
      sof.writeUInt16BE(mostly([1, 16, 8192, 8193, 65500], [0, 65501, 65535]), 1);
      sof.writeUInt16BE(mostly([1, 16, 8192, 8193, 65500], [0, 65501, 65535]), 3);
      sof[5] = nc;
      const sampling = () => (mostly([1, 2], [0, 4, 5, 15]) << 4) | mostly([1, 2], [0, 4, 5, 15]);
      for (let c = 0; c < nc; c++) sof.set([mostly([c + 1], [1, 0, 255]), sampling(), mostly([0, 1], [3, 4, 255])], 6 + 3 * c);
      parts.push(seg(mostly([0xc0, 0xc1, 0xc2], [0xc3, 0xc5, 0xc9, 0xca, 0xcf]), sof));
      if (rand() < 0.1) parts.push(seg(0xc0, sof)); // a second frame header
      const ns = Math.max(0, Math.min(mostly([nc, 1], [0, 5, nc + 1]), 255));
      const sos = Buffer.alloc(4 + 2 * ns);
      sos[0] = ns;
      for (let c = 0; c < ns; c++) sos.set([mostly([c + 1], [0, 1, 9]), 0x00], 1 + 2 * c);
      sos.set([0, 63, 0], 1 + 2 * ns);
      parts.push(seg(0xda, sos), Buffer.from(bytes(64).map((x) => (x === 0xff ? 0 : x))), Buffer.from([0xff, 0xd9]));
      await agrees(Buffer.concat(parts), `hostile JPEG #${i}`);
    }
    expect(stats.fast - before).toBeGreaterThan(100);
  });
});

describe('the fast header reader on a spooled file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'darkroom-header-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const spool = (name: string, data: Buffer) => {
    const file = path.join(dir, name);
    writeFileSync(file, data);
    return { file, head: Buffer.from(data.subarray(0, SPOOL_HEAD_BYTES)) };
  };

  it.each(NAMES)('%s: the file gives what the buffer gives', async (name) => {
    const b = fixture(name);
    const format = sniffFormat(b);
    if (format === null || format === 'svg' || format === 'heic') return;
    const { file, head } = spool(name, b);
    expect(await readHeaderFromFile(format, file, b.length, head)).toEqual(readHeader(format, b));
    const image: SpooledImage = { path: file, bytes: b.length, sha256: '', head, complete: isComplete(format, b) };
    expect(await inspectImage(image, LIMITS)).toEqual(await inspectImage(b, LIMITS));
  });

  it('finds a JPEG frame header past the spooled head, behind a large ICC profile', async () => {
    const b = fixture('Channel_digital_image_CMYK_color.jpg');
    expect(headerEnd(b)).toBeGreaterThan(SPOOL_HEAD_BYTES);
    const { file, head } = spool('cmyk.jpg', b);
    expect(await readHeaderFromFile('jpeg', file, b.length, head)).toEqual({ width: 500, height: 333, pages: 1 });
  });

  it('a file shorter than its header is left to libvips', async () => {
    const b = fixture('Channel_digital_image_CMYK_color.jpg').subarray(0, 100_000);
    const { file, head } = spool('short.jpg', b);
    expect(await readHeaderFromFile('jpeg', file, b.length, head)).toBeUndefined();
  });
});

import { readdirSync } from 'node:fs';
import type { InputFormat } from '@darkroom/contracts';
import { completenessTracker, isComplete, sniffFormat } from '@darkroom/images';
import { FIXTURES_DIR, fixture } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { referenceIsComplete } from './complete-reference.ts';

/*
 * The streaming check must answer exactly as the whole-buffer reference walk does, however the file
 * is cut into chunks. Each case is a file (or a truncation of one) compared under several
 * chunkings; a mismatch is reported with the file, its length and the chunking.
 */

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

interface Chunking {
  name: string;
  /** Chunk sizes summing to `length`; 0 is an empty push. */
  sizes(length: number): number[];
  /** Copies each chunk and scribbles over it once pushed: the tracker must not read it later. */
  scribble?: boolean;
}

const whole: Chunking = { name: 'whole', sizes: (n) => [n] };

/** n-byte chunks; past `window` bytes, only the first and last `window` are cut small. */
function fixed(n: number, window = 64 * 1024): Chunking {
  return {
    name: `${n}-byte`,
    sizes(length) {
      const small = (m: number) => Array.from({ length: Math.ceil(m / n) }, (_, k) => Math.min(n, m - k * n));
      if (length <= window) return small(length);
      const edge = 4096;
      return [...small(edge), length - 2 * edge, ...small(edge)];
    },
  };
}

/** Log-uniform sizes in 1..4096, with an empty chunk first, last, and now and then between. */
function random(seed: number): Chunking {
  return {
    name: `random#${seed}`,
    scribble: true,
    sizes(length) {
      const r = rng(seed + length);
      const out = [0];
      let left = length;
      while (left > 0) {
        if (r() < 0.05) out.push(0);
        const n = Math.min(left, Math.floor(2 ** (r() * 12)));
        out.push(n);
        left -= n;
      }
      out.push(0);
      return out;
    },
  };
}

const SMALL = [fixed(1), fixed(2), fixed(3), fixed(7)];
const CHEAP = [whole, random(1), random(2), random(3)];

function streamed(format: InputFormat, data: Buffer, chunking: Chunking): boolean {
  const t = completenessTracker(format);
  let at = 0;
  for (const n of chunking.sizes(data.length)) {
    const piece = data.subarray(at, at + n);
    at += n;
    if (chunking.scribble) {
      const copy = Buffer.from(piece);
      t.push(copy);
      copy.fill(0x5a);
    } else {
      t.push(piece);
    }
  }
  expect(at).toBe(data.length);
  return t.complete();
}

/** Compares the tracker with the reference walk under each chunking; returns the mismatches. */
class Comparison {
  cases = 0;
  comparisons = 0;
  readonly mismatches: string[] = [];

  check(label: string, format: InputFormat, data: Buffer, chunkings: Chunking[]): void {
    const want = referenceIsComplete(format, data);
    this.cases += 1;
    for (const c of chunkings) {
      this.comparisons += 1;
      const got = streamed(format, data, c);
      if (got !== want) this.mismatches.push(`${label} (${data.length} bytes) ${c.name}: got ${got}, the reference says ${want}`);
    }
  }

  /** The file, and its truncations at `cuts` (lengths). */
  checkCuts(label: string, format: InputFormat, data: Buffer, cuts: Iterable<number>, chunkingsFor: (length: number) => Chunking[]) {
    for (const cut of new Set(cuts)) {
      if (cut < 0 || cut > data.length) continue;
      this.check(`${label}[0..${cut}]`, format, data.subarray(0, cut), chunkingsFor(cut));
    }
  }
}

let totalCases = 0;
let totalComparisons = 0;

afterAll(() => {
  console.info(`completenessTracker: ${totalCases} files and truncations, ${totalComparisons} comparisons with the reference walk`);
});

function expectAllMatch(c: Comparison): void {
  totalCases += c.cases;
  totalComparisons += c.comparisons;
  expect(c.mismatches.slice(0, 20)).toEqual([]);
}

/** Every length from 0 to the file's, under every chunking: for small synthetic files. */
function everyCut(label: string, format: InputFormat, data: Buffer): void {
  const c = new Comparison();
  c.checkCuts(
    label,
    format,
    data,
    Array.from({ length: data.length + 1 }, (_, k) => k),
    () => [...CHEAP, ...SMALL],
  );
  expectAllMatch(c);
}

const bytes = (...parts: (number[] | string | Buffer)[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.isBuffer(p) ? p : Buffer.from(p))));

const u16 = (n: number) => [n >>> 8, n & 0xff];
const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

type Known = Exclude<ReturnType<typeof sniffFormat>, 'svg' | 'heic' | null>;
const FIXTURES = readdirSync(FIXTURES_DIR)
  .map((name) => ({ name, data: fixture(name) }))
  .map(({ name, data }) => ({ name, data, format: sniffFormat(data) }))
  .filter((f): f is { name: string; data: Buffer; format: Known } => f.format !== null && f.format !== 'svg' && f.format !== 'heic');

describe('completenessTracker on the real fixtures and their truncations', () => {
  it('sniffs every accepted format among the fixtures', () => {
    expect(new Set(FIXTURES.map((f) => f.format))).toEqual(new Set(['jpeg', 'png', 'gif', 'webp', 'avif', 'tiff']));
  });

  it.each(FIXTURES.map((f) => [f.name, f.format, f] as const))('%s (%s)', (_name, format, { name, data }) => {
    const n = data.length;
    const head = Array.from({ length: 65 }, (_, k) => k);
    const spread = Array.from({ length: 40 }, (_, k) => Math.floor((n * (k + 1)) / 41));
    const tail = Array.from({ length: 17 }, (_, k) => n - k);
    // small chunkings on the short cuts, the ends and every fifth spread cut; the rest cheaply
    const thorough = new Set([...head, ...tail.slice(0, 3), ...spread.filter((_, k) => k % 5 === 0)]);
    const c = new Comparison();
    c.checkCuts(name, format, data, [...head, ...spread, ...tail], (cut) => (thorough.has(cut) ? [...CHEAP, ...SMALL] : CHEAP));
    expectAllMatch(c);
  });
});

describe('completenessTracker on synthetic JPEGs', () => {
  const app0 = [0xff, 0xe0, ...u16(16), ...Buffer.from('JFIF\0\x01\x02\0\0\x01\0\x01\0\0', 'latin1')];
  const sos = [0xff, 0xda, ...u16(8), 1, 1, 0, 0, 0x3f, 0];

  it.each([
    ['only SOI and EOI', bytes([0xff, 0xd8, 0xff, 0xd9])],
    ['fill bytes before markers', bytes([0xff, 0xd8, 0xff, 0xff, 0xff], app0, [0xff, 0xff, 0xff, 0xff, 0xd9])],
    ['RSTn and 0x01 where a marker belongs', bytes([0xff, 0xd8, 0xff, 0xd0, 0xff, 0x01, 0xff, 0xd7], app0, [0xff, 0xd9])],
    [
      'a scan with stuffed bytes, RST markers, 0xFF 0xFF and fill before EOI',
      bytes([0xff, 0xd8], app0, sos, [1, 2, 0xff, 0x00, 3, 0xff, 0xd3, 4, 0xff, 0xff, 0x00, 5, 0xff, 0xd7, 0xff, 0xff, 0xff, 0xd9]),
    ],
    ['two scans with a DHT between', bytes([0xff, 0xd8], sos, [9, 9, 0xff, 0x00], [0xff, 0xc4, ...u16(5), 1, 2, 3], sos, [7, 0xff, 0xd9])],
    ['a scan ended by 0x01, then a byte that is no marker', bytes([0xff, 0xd8], sos, [1, 2, 0xff, 0x01, 0x12, 0xff, 0xd9])],
    ['a scan ended by 0x01, then EOI', bytes([0xff, 0xd8], sos, [1, 2, 0xff, 0x01, 0xff, 0xd9])],
    ['a scan whose last byte is 0xFF', bytes([0xff, 0xd8], sos, [1, 2, 3, 0xff])],
    ['an SOS whose length runs past the end', bytes([0xff, 0xd8, 0xff, 0xda, 0x40, 0x00, 1, 2, 3, 0xff, 0xd9])],
    ['an APP0 whose length runs past the end', bytes([0xff, 0xd8, 0xff, 0xe0, 0xff, 0xf0, 1, 2, 0xff, 0xd9])],
    ['segment lengths of 0 and 1', bytes([0xff, 0xd8, 0xff, 0xe1, 0, 0, 0xff, 0xd9])],
    ['a segment length of 1', bytes([0xff, 0xd8, 0xff, 0xe1, 0, 1, 0xaa, 0xff, 0xd9])],
    ['junk where a marker belongs', bytes([0xff, 0xd8, 0x12, 0x34, 0xff, 0xd9])],
    ['garbage after EOI', bytes([0xff, 0xd8], app0, [0xff, 0xd9], 'MOTION_PHOTO\xff\xd8\xff\0\x12')],
    ['a file that is not JPEG at all', bytes('not a jpeg, but told it is one')],
  ])('%s', (label, data) => everyCut(label, 'jpeg', data));

  it('a progressive JPEG from sharp, cut everywhere', async () => {
    const jpg = await sharp({
      create: { width: 64, height: 48, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } },
    })
      .jpeg({ progressive: true, quality: 80 })
      .toBuffer();
    const c = new Comparison();
    c.checkCuts(
      'progressive',
      'jpeg',
      jpg,
      Array.from({ length: jpg.length + 1 }, (_, k) => k),
      (cut) => (cut < 700 || cut > jpg.length - 64 || cut % 37 === 0 ? [...CHEAP, ...SMALL] : CHEAP),
    );
    expectAllMatch(c);
  });
});

describe('completenessTracker on synthetic PNGs', () => {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  const chunk = (type: string, data: number[], length = data.length) => bytes(u32(length), type, data, [1, 2, 3, 4]);
  const iend = chunk('IEND', []);

  it.each([
    ['signature and IEND', bytes(sig, iend)],
    ['a chunk, IEND and bytes after it', bytes(sig, chunk('tEXt', [65, 66, 67]), iend, 'trailing bytes')],
    ['a chunk whose length points past the end', bytes(sig, chunk('IDAT', [1, 2, 3], 0xfffffff0), iend)],
    ['an IEND that carries data', bytes(sig, chunk('IEND', [9, 9, 9, 9, 9]))],
    ['an IEND claiming more data than there is', bytes(sig, chunk('IEND', [9, 9], 40))],
    ['IEND at the start, no signature', bytes(iend)],
    ['only the signature', bytes(sig)],
  ])('%s', (label, data) => everyCut(label, 'png', data));
});

describe('completenessTracker on synthetic GIFs', () => {
  // header, screen descriptor with a 2-entry global colour table
  const head = bytes('GIF89a', [10, 0, 10, 0, 0x80, 0, 0], [0, 0, 0, 255, 255, 255]);
  const ext = [0x21, 0xf9, 4, 0, 0, 0, 0, 0];
  const image = (lct: boolean) => [0x2c, 0, 0, 0, 0, 10, 0, 10, 0, lct ? 0x81 : 0, ...(lct ? Array(12).fill(7) : []), 2];

  it.each([
    ['an extension, an image and the trailer', bytes(head, ext, image(false), [3, 1, 2, 3, 0, 0x3b])],
    ['an image with a local colour table', bytes(head, image(true), [2, 0x3b, 0x3b, 1, 0x3b, 0, 0x3b])],
    ['a truncated sub-block holding 0x3B bytes', bytes(head, image(false), [200, 0x3b, 0x3b, 0x3b, 0x3b])],
    ['a sub-block length that lands exactly on the end', bytes(head, ext.slice(0, 2), [4, 1, 2, 3, 4])],
    ['an unknown block byte', bytes(head, [0x99, 0x3b])],
    ['the trailer straight after the header', bytes(head, [0x3b])],
    ['no colour table, trailer only', bytes('GIF89a', [1, 0, 1, 0, 0, 0, 0, 0x3b])],
    ['a 7-byte file', bytes('GIF89a;')],
  ])('%s', (label, data) => everyCut(label, 'gif', data));
});

describe('completenessTracker on synthetic WebPs', () => {
  const riff = (size: number, length: number) => {
    const b = Buffer.alloc(length);
    b.write('RIFF', 0, 'latin1');
    b.writeUInt32LE(size, 4);
    b.write('WEBP', 8, 'latin1');
    return b;
  };

  it.each([
    ['RIFF size 12 in 20 bytes', riff(12, 20)],
    ['RIFF size 13 in 20 bytes', riff(13, 20)],
    ['RIFF size 0 in 12 bytes', riff(0, 12)],
    ['RIFF size 2^32-1', riff(0xffffffff, 24)],
    ['RIFF size 20 in 28 bytes', riff(20, 28)],
  ])('%s', (label, data) => everyCut(label, 'webp', data));
});

describe('completenessTracker on synthetic AVIF containers', () => {
  const box = (type: string, payload: number) => bytes(u32(8 + payload), type, Buffer.alloc(payload, 0x11));
  const ftyp = bytes(u32(16), 'ftypavif', [0, 0, 0, 0]);
  const large = (type: string, size: bigint, payload: number) => {
    const b = Buffer.alloc(16 + payload, 0x22);
    b.writeUInt32BE(1, 0);
    b.write(type, 4, 'latin1');
    b.writeBigUInt64BE(size, 8);
    return b;
  };

  it.each([
    ['ftyp, meta, mdat', bytes(ftyp, box('meta', 10), box('mdat', 20))],
    ['then trailing bytes', bytes(ftyp, box('meta', 10), box('mdat', 20), [0, 0, 0])],
    ['no meta box', bytes(ftyp, box('mdat', 20))],
    ['a 64-bit size that fits', bytes(ftyp, box('meta', 4), large('mdat', 40n, 24))],
    ['a 64-bit size past the end', bytes(ftyp, box('meta', 4), large('mdat', 2n ** 60n, 24))],
    ['a 64-bit size below 8', bytes(ftyp, box('meta', 4), large('mdat', 7n, 24))],
    ['a 64-bit size of 0', bytes(ftyp, box('meta', 4), large('mdat', 0n, 24))],
    ['a 64-bit size beyond 2^53', bytes(ftyp, box('meta', 4), large('mdat', 2n ** 53n + 1n, 8))],
    ['a 64-bit meta box', bytes(ftyp, large('meta', 20n, 4))],
    ['a last box of size 0, meta before it', bytes(ftyp, box('meta', 4), bytes(u32(0), 'mdat', Buffer.alloc(30, 0x33)))],
    ['a meta box of size 0', bytes(ftyp, bytes(u32(0), 'meta', Buffer.alloc(5)))],
    ['a box of size 0 and no meta', bytes(ftyp, bytes(u32(0), 'mdat', Buffer.alloc(5)))],
    ['a box of size 3', bytes(ftyp, box('meta', 4), bytes(u32(3), 'free'), box('mdat', 4))],
    ['a box past the end', bytes(ftyp, box('meta', 4), bytes(u32(1000), 'mdat', [1, 2, 3]))],
  ])('%s', (label, data) => everyCut(label, 'avif', data));
});

describe('completenessTracker on mutated fixtures', () => {
  const interesting = [0x00, 0x01, 0x08, 0x0c, 0x10, 0x21, 0x2c, 0x3b, 0x80, 0xd0, 0xd9, 0xda, 0xff];
  const small = FIXTURES.filter((f) => f.data.length <= 70_000);

  it.each(small.map((f) => [f.name, f] as const))('%s with bytes overwritten and cut', (_name, { name, format, data }) => {
    const r = rng(data.length);
    const c = new Comparison();
    for (let m = 0; m < 60; m++) {
      const mutant = Buffer.from(data);
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
        const at = Math.floor(r() * (r() < 0.6 ? Math.min(mutant.length, 600) : mutant.length));
        mutant[at] = r() < 0.5 ? interesting[Math.floor(r() * interesting.length)]! : Math.floor(r() * 256);
      }
      const cut = r() < 0.5 ? mutant.length : Math.floor(r() * mutant.length);
      c.check(`${name} mutant ${m}`, format, mutant.subarray(0, cut), cut <= 16_384 ? [...CHEAP, fixed(1), fixed(5)] : CHEAP);
    }
    expectAllMatch(c);
  });
});

describe('completenessTracker resources', () => {
  /** SOI, a scan header, `size` bytes of entropy-coded data with stuffing and RST markers, EOI. */
  function bigJpeg(size: number): Buffer {
    const b = Buffer.alloc(size + 16);
    b.set([0xff, 0xd8, 0xff, 0xda, 0, 8, 1, 1, 0, 0, 0x3f, 0], 0);
    let x = 0x9e3779b9;
    for (let i = 12; i < size + 12; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      b[i] = (x >>> 24) % 0xff; // never 0xFF by itself
    }
    for (let i = 12; i + 2 < size + 12; i += 997) b[i] = 0xff; // followed by stuffing or RSTn below
    for (let i = 13; i + 2 < size + 12; i += 997) b[i] = i % 7 === 0 ? 0xd0 + (i % 8) : 0x00;
    b.set([0xff, 0xd9], size + 12);
    return b.subarray(0, size + 14);
  }

  it('walks a 16 MiB scan in 64 KiB chunks without keeping it', () => {
    const jpg = bigJpeg(16 * 1024 * 1024);
    expect(isComplete('jpeg', jpg)).toBe(true);
    expect(isComplete('jpeg', jpg.subarray(0, jpg.length - 1))).toBe(false);
    for (const cut of [jpg.length, jpg.length - 1]) {
      const data = jpg.subarray(0, cut);
      const before = process.memoryUsage().arrayBuffers;
      const t = completenessTracker('jpeg');
      // views into one buffer: nothing new is allocated unless the tracker copies what it is fed
      for (let at = 0; at < data.length; at += 65_536) t.push(data.subarray(at, at + 65_536));
      const grown = process.memoryUsage().arrayBuffers - before;
      expect(t.complete()).toBe(cut === jpg.length);
      expect(grown).toBeLessThan(2 * 1024 * 1024);
    }
  });

  it('ignores what follows a decided answer', () => {
    const t = completenessTracker('jpeg');
    t.push(Buffer.from([0xff, 0xd8, 0xff]));
    t.push(Buffer.from([0xd9]));
    const junk = Buffer.alloc(1024 * 1024, 0x12);
    for (let k = 0; k < 64; k++) t.push(junk);
    expect(t.complete()).toBe(true);
  });
});

import type { InputFormat } from '@darkroom/contracts';

/*
 * The container-completeness check written over a whole buffer, independently of the streaming
 * tracker that `isComplete` now uses, so the tracker's answers have something to be compared with.
 */

/** The whole-buffer walk the streaming one must match: written apart from it, as the tests' reference. */
export function referenceIsComplete(format: InputFormat, b: Buffer): boolean {
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

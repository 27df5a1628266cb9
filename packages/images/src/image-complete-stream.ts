import type { InputFormat } from '@darkroom/contracts';

/*
 * Whether an image's container ends where it says it does, fed chunk by chunk: uploads spooled
 * to disk as they arrive are never whole in memory, and `isComplete` (image-inspect.ts) feeds an
 * in-memory image as one chunk, so both paths share this walk. Each format walks its structure
 * with an absolute cursor; between pushes only the few bytes of a header split across two chunks
 * are kept, and a segment, chunk or box is skipped by moving the cursor, never by holding its
 * bytes. Any chunking gives the answer one whole chunk gives (see the quirks at each format).
 */

export interface CompletenessTracker {
  /** Feeds the next bytes of the file, in order. */
  push(chunk: Buffer): void;
  /** After the last push: whether the container is complete, whatever the chunking was. */
  complete(): boolean;
}

export function completenessTracker(format: InputFormat): CompletenessTracker {
  switch (format) {
    case 'jpeg':
      return new JpegTracker();
    case 'png':
      return new PngTracker();
    case 'gif':
      return new GifTracker();
    case 'webp':
      return new WebpTracker();
    case 'avif':
      return new BoxesTracker();
    case 'tiff':
      // Offsets point anywhere; libtiff reports damage on decode.
      return { push() {}, complete: () => true };
  }
}

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * The bytes one push can see: those carried over from earlier pushes (from `at` on, a header that
 * did not fit), then the new chunk, addressed by absolute offset in the file.
 */
abstract class Tracker implements CompletenessTracker {
  /** Absolute offset of the next byte the walk needs; may lie beyond what has arrived. */
  protected at = 0;
  /** Total bytes pushed before the current chunk, then after it once the push is over. */
  protected pos = 0;
  /** Absolute end of the bytes this push can see. */
  protected end = 0;
  /** The answer, once no later byte can change it. */
  private decided: boolean | undefined;
  private carry = EMPTY;
  private carryStart = 0;
  private chunk = EMPTY;

  push(chunk: Buffer): void {
    if (this.decided !== undefined) return;
    this.chunk = chunk;
    this.end = this.pos + chunk.length;
    this.decided = this.walk();
    if (this.decided !== undefined) {
      this.carry = EMPTY;
    } else if (this.at >= this.end) {
      this.carry = EMPTY;
    } else if (this.at >= this.pos) {
      // a copy, so that the chunk itself is not kept alive by a small view of it
      this.carry = Buffer.from(chunk.subarray(this.at - this.pos));
      this.carryStart = this.at;
    } else {
      this.carry = Buffer.concat([this.carry.subarray(this.at - this.carryStart), chunk]);
      this.carryStart = this.at;
    }
    this.chunk = EMPTY;
    this.pos = this.end;
  }

  complete(): boolean {
    return this.decided ?? this.atEnd(this.pos);
  }

  /**
   * Advances `at` over what this push can see, until it needs bytes not yet arrived (undefined)
   * or no later byte can change the answer (the answer).
   */
  protected abstract walk(): boolean | undefined;

  /** The answer when the file ends undecided, `length` bytes long. */
  protected atEnd(_length: number): boolean {
    return false;
  }

  protected byte(a: number): number {
    return a < this.pos ? this.carry[a - this.carryStart]! : this.chunk[a - this.pos]!;
  }

  protected u16(a: number): number {
    return (this.byte(a) << 8) | this.byte(a + 1);
  }

  protected u32(a: number): number {
    return ((this.byte(a) << 24) | (this.byte(a + 1) << 16) | (this.byte(a + 2) << 8) | this.byte(a + 3)) >>> 0;
  }

  /** First offset >= from holding `value` among the bytes this push can see, or -1. */
  protected indexOf(value: number, from: number): number {
    let a = from;
    for (; a < this.pos; a++) if (this.carry[a - this.carryStart] === value) return a;
    if (a >= this.end) return -1;
    const k = this.chunk.indexOf(value, a - this.pos);
    return k < 0 ? -1 : this.pos + k;
  }
}

/**
 * Segments to the first scan, then entropy-coded data searched for markers, until EOI. EOI
 * answers true whatever follows it (phones append motion-photo trailers), and any byte other
 * than 0xFF where a marker belongs is a definite false.
 */
class JpegTracker extends Tracker {
  protected override at = 2;
  private scan = false;

  protected walk(): boolean | undefined {
    for (;;) {
      if (this.scan) {
        if (this.at >= this.end) return;
        const ff = this.indexOf(0xff, this.at);
        if (ff < 0) {
          this.at = this.end;
          return;
        }
        if (ff + 1 >= this.end) {
          this.at = ff; // the byte after this 0xFF decides; keep the 0xFF for the next push
          return;
        }
        const next = this.byte(ff + 1);
        if (next === 0x00 || (next >= 0xd0 && next <= 0xd7) || next === 0xff) {
          this.at = ff + 1;
          continue;
        }
        this.at = ff;
        this.scan = false;
      }
      if (this.at + 2 > this.end) return;
      if (this.byte(this.at) !== 0xff) return false;
      const marker = this.byte(this.at + 1);
      if (marker === 0xff) {
        this.at += 1; // fill byte
        continue;
      }
      if (marker === 0xd9) return true;
      if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
        this.at += 2;
        continue;
      }
      if (this.at + 4 > this.end) return;
      this.at += 2 + this.u16(this.at + 2);
      if (marker === 0xda) this.scan = true;
    }
  }
}

/** Chunks until IEND; true once the whole IEND chunk (with its CRC) has arrived. */
class PngTracker extends Tracker {
  protected override at = 8;
  private sawIend = false;

  protected walk(): boolean | undefined {
    if (!this.sawIend) {
      // a chunk's 12 bytes of length, type and CRC must be there before it is read
      while (this.at + 12 <= this.end) {
        const type = this.u32(this.at + 4);
        this.at += 12 + this.u32(this.at);
        if (type === 0x49454e44 /* IEND */) {
          this.sawIend = true;
          break;
        }
      }
    }
    if (this.sawIend && this.at <= this.end) return true;
  }
}

const colorTable = (packed: number) => (packed & 0x80 ? 3 * 2 ** ((packed & 0x07) + 1) : 0);

/**
 * Blocks (extensions, images and their data sub-blocks) to the trailer. Every step needs one byte
 * at the cursor, so nothing is carried between pushes.
 */
class GifTracker extends Tracker {
  protected override at = 10; // the packed byte of the logical screen descriptor
  private state: 'screen' | 'block' | 'image' | 'subBlocks' = 'screen';

  protected walk(): boolean | undefined {
    while (this.at < this.end) {
      const v = this.byte(this.at);
      switch (this.state) {
        case 'screen':
          this.at = 13 + colorTable(v);
          this.state = 'block';
          break;
        case 'block':
          if (v === 0x3b) return true;
          if (v === 0x21) {
            this.at += 2; // introducer, label, then sub-blocks
            this.state = 'subBlocks';
          } else if (v === 0x2c) {
            this.at += 9; // the descriptor's packed byte
            this.state = 'image';
          } else {
            return false;
          }
          break;
        case 'image':
          // past the descriptor and its colour table, and the LZW minimum code size
          this.at += 1 + colorTable(v) + 1;
          this.state = 'subBlocks';
          break;
        case 'subBlocks':
          if (v === 0) {
            this.at += 1;
            this.state = 'block';
          } else {
            this.at += 1 + v;
          }
          break;
      }
    }
  }
}

/** The RIFF size must fit in the file, which must be at least 12 bytes long. */
class WebpTracker extends Tracker {
  protected override at = 4;
  private sized = false;

  protected walk(): boolean | undefined {
    if (!this.sized) {
      if (this.at + 4 > this.end) return;
      const riff = (this.byte(4) | (this.byte(5) << 8) | (this.byte(6) << 16) | (this.byte(7) << 24)) >>> 0;
      this.at = Math.max(12, riff + 8);
      this.sized = true;
    }
    if (this.at <= this.end) return true;
  }
}

/**
 * ISO-BMFF: every top-level box must fit, the last must end exactly at the end of the file, and a
 * `meta` box must have been seen. Bytes after a complete last box make it incomplete again, so
 * only a bad size or a box of size 0 ("to the end of the file", which always fits once its
 * 8-byte header is there) decides before the end.
 */
class BoxesTracker extends Tracker {
  private sawMeta = false;

  protected walk(): boolean | undefined {
    while (this.at + 8 <= this.end) {
      let size = this.u32(this.at);
      const meta = this.u32(this.at + 4) === 0x6d657461; /* meta */
      if (size === 1) {
        if (this.at + 16 > this.end) return;
        // through BigInt, as readBigUInt64BE is, so a size beyond 2^53 rounds the same way
        size = Number((BigInt(this.u32(this.at + 8)) << 32n) | BigInt(this.u32(this.at + 12)));
      } else if (size === 0) {
        return this.sawMeta || meta;
      }
      if (size < 8) return false;
      if (meta) this.sawMeta = true;
      this.at += size;
    }
  }

  protected override atEnd(length: number): boolean {
    return this.at === length && this.sawMeta;
  }
}

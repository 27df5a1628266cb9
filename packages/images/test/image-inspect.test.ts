import { readFileSync } from 'node:fs';
import { type ImageLimits, inspectImage, isComplete, sniffFormat } from '@darkroom/images';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

const FIXTURES = new URL('../../testing/fixtures/images/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES));

/** The defaults of DARKROOM_MAX_IMAGE_EDGE / DARKROOM_MAX_IMAGE_PIXELS. */
const LIMITS: ImageLimits = { maxImageEdge: 8192, maxImagePixels: 50_000_000 };

/** Deterministic bytes that start with no known signature. */
function noise(n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = 0x12345678;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  b[0] = 0x00;
  return b;
}

/** An ISO-BMFF `ftyp` box with these brands. */
function ftyp(major: string, ...compatible: string[]): Buffer {
  const size = 16 + 4 * compatible.length;
  const b = Buffer.alloc(size + 16);
  b.writeUInt32BE(size, 0);
  b.write('ftyp', 4, 'latin1');
  b.write(major, 8, 'latin1');
  compatible.forEach((c, i) => {
    b.write(c, 16 + 4 * i, 'latin1');
  });
  return b;
}

async function kindOf(data: Buffer, limits = LIMITS) {
  const r = await inspectImage(data, limits);
  return r.ok ? 'ok' : r.failure.kind;
}

describe('inspectImage on real images', () => {
  it.each([
    ['Landscape_1.jpg', 'jpeg', 600, 450, 1],
    ['Landscape_5.jpg', 'jpeg', 450, 600, 1],
    ['Landscape_8.jpg', 'jpeg', 450, 600, 1],
    ['2569067123_aca715a2ee_o.jpg', 'jpeg', 2725, 2225, 1],
    ['flowers.jpeg', 'jpeg', 1920, 1080, 1],
    ['concert.jpg', 'jpeg', 400, 267, 1],
    ['Channel_digital_image_CMYK_color.jpg', 'jpeg', 500, 333, 1],
    ['16-bit-grey-alpha.png', 'png', 109, 96, 1],
    ['Flag_of_the_Netherlands-16bit.png', 'png', 900, 600, 1],
    ['with-alpha.png', 'png', 256, 192, 1],
    ['animated-loop-3.gif', 'gif', 370, 285, 10],
    ['rotating-squares.webp', 'webp', 80, 80, 9],
    ['pitm.avif', 'avif', 4096, 800, 5],
    ['G31D.TIF', 'tiff', 2464, 3248, 1],
  ])('accepts %s as %s %i×%i (%i pages)', async (file, format, width, height, pages) => {
    const r = await inspectImage(fixture(file), LIMITS);
    expect(r).toEqual({
      ok: true,
      info: { format, contentType: format === 'jpeg' ? 'image/jpeg' : `image/${format}`, width, height, pages },
    });
  });

  it('reports the stored size of a JPEG, not the EXIF-rotated one', async () => {
    const r = await inspectImage(fixture('Landscape_5.jpg'), LIMITS);
    expect(r.ok && [r.info.width, r.info.height]).toEqual([450, 600]);
  });
});

describe('inspectImage refuses formats it does not accept', () => {
  it('SVG', async () => {
    expect(sniffFormat(fixture('check.svg'))).toBe('svg');
    expect(await inspectImage(fixture('check.svg'), LIMITS)).toEqual({
      ok: false,
      failure: { kind: 'unsupported', detail: 'SVG is not accepted; accepted: JPEG, PNG, WebP, AVIF, GIF, TIFF' },
    });
  });

  it('SVG after a byte-order mark and whitespace', async () => {
    const svg = Buffer.from('\uFEFF  \n<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>', 'utf8');
    expect(sniffFormat(svg)).toBe('svg');
    expect(await kindOf(svg)).toBe('unsupported');
  });

  it('JPEG 2000', async () => {
    expect(sniffFormat(fixture('relax.jp2'))).toBeNull();
    expect(await inspectImage(fixture('relax.jp2'), LIMITS)).toEqual({
      ok: false,
      failure: { kind: 'unsupported', detail: 'not an image format the server accepts; accepted: JPEG, PNG, WebP, AVIF, GIF, TIFF' },
    });
  });

  it('random bytes, and an empty body', async () => {
    expect(sniffFormat(noise(4096))).toBeNull();
    expect(await kindOf(noise(4096))).toBe('unsupported');
    expect(sniffFormat(Buffer.alloc(0))).toBeNull();
    expect(await kindOf(Buffer.alloc(0))).toBe('unsupported');
  });

  it('HEIC, judged by its ftyp brand', async () => {
    for (const h of [ftyp('heic', 'mif1', 'heic'), ftyp('mif1', 'heic'), ftyp('heix'), ftyp('msf1', 'hevc')]) {
      expect(sniffFormat(h)).toBe('heic');
      expect(await inspectImage(h, LIMITS)).toEqual({
        ok: false,
        failure: { kind: 'unsupported', detail: 'HEIC is not accepted; accepted: JPEG, PNG, WebP, AVIF, GIF, TIFF' },
      });
    }
  });

  it('an ftyp box of another kind (MP4)', async () => {
    expect(sniffFormat(ftyp('isom', 'iso2', 'mp41'))).toBeNull();
    expect(await kindOf(ftyp('isom', 'iso2', 'mp41'))).toBe('unsupported');
  });
});

describe('sniffFormat', () => {
  it('reads magic bytes, not names', () => {
    expect(sniffFormat(fixture('Landscape_1.jpg'))).toBe('jpeg');
    expect(sniffFormat(fixture('with-alpha.png'))).toBe('png');
    expect(sniffFormat(fixture('animated-loop-3.gif'))).toBe('gif');
    expect(sniffFormat(fixture('rotating-squares.webp'))).toBe('webp');
    expect(sniffFormat(fixture('pitm.avif'))).toBe('avif');
    expect(sniffFormat(fixture('G31D.TIF'))).toBe('tiff');
  });

  it('finds AVIF among the compatible brands', () => {
    expect(sniffFormat(ftyp('avif', 'mif1'))).toBe('avif');
    expect(sniffFormat(ftyp('mif1', 'miaf', 'avif'))).toBe('avif');
    expect(sniffFormat(ftyp('avis', 'msf1'))).toBe('avif');
  });

  it('knows both TIFF byte orders and BigTIFF', () => {
    for (const h of ['II*\0', 'MM\0*', 'II+\0', 'MM\0+']) expect(sniffFormat(Buffer.from(`${h}\0\0\0\x08`, 'latin1'))).toBe('tiff');
  });

  it('does not read past a short buffer', () => {
    expect(sniffFormat(Buffer.from([0xff, 0xd8]))).toBeNull();
    expect(sniffFormat(Buffer.from([0x89, 0x50, 0x4e, 0x47]))).toBeNull();
    expect(sniffFormat(Buffer.from('GIF8', 'latin1'))).toBeNull();
    expect(sniffFormat(Buffer.from('RIFF\0\0\0\0WEB', 'latin1'))).toBeNull();
  });
});

describe('inspectImage refuses broken and hostile files', () => {
  it('a JPEG whose header is corrupt', async () => {
    expect(await inspectImage(fixture('corrupt-header.jpg'), LIMITS)).toEqual({
      ok: false,
      failure: { kind: 'invalid', detail: 'the JPEG header cannot be read' },
    });
  });

  it.each(['truncated.jpg', 'truncated.png'])('%s, whose header reads but whose data ends early', async (file) => {
    expect(await inspectImage(fixture(file), LIMITS)).toEqual({
      ok: false,
      failure: { kind: 'invalid', detail: 'the image is incomplete (its data ends before its end marker)' },
    });
  });

  it('giant-image.jpg, over the edge limit', async () => {
    expect(await inspectImage(fixture('giant-image.jpg'), LIMITS)).toEqual({
      ok: false,
      failure: { kind: 'invalid', detail: 'the image is 20000×14000; the longest edge allowed is 8192 px' },
    });
  });

  it('giant-image.jpg, over the pixel limit when the edge limit allows it', async () => {
    expect(await inspectImage(fixture('giant-image.jpg'), { maxImageEdge: 100_000, maxImagePixels: 50_000_000 })).toEqual({
      ok: false,
      failure: { kind: 'invalid', detail: 'the image has 280000000 pixels; at most 50000000 per frame are allowed' },
    });
  });

  it('65536-uint32-limit.png, a pixel bomb, without decoding it', async () => {
    expect(await inspectImage(fixture('65536-uint32-limit.png'), LIMITS)).toEqual({
      ok: false,
      failure: { kind: 'invalid', detail: 'the image is 65536×65536; the longest edge allowed is 8192 px' },
    });
    expect(await kindOf(fixture('65536-uint32-limit.png'), { maxImageEdge: 100_000, maxImagePixels: 50_000_000 })).toBe('invalid');
  });

  it('an animation over 4 × the pixel limit over all frames', async () => {
    // 370 × 285 = 105,450 px a frame, 10 frames = 1,054,500 px.
    const gif = fixture('animated-loop-3.gif');
    expect(await kindOf(gif, { maxImageEdge: 8192, maxImagePixels: 105_450 })).toBe('invalid');
    expect(await kindOf(gif, { maxImageEdge: 8192, maxImagePixels: 263_625 })).toBe('ok');
    expect(await kindOf(gif, { maxImageEdge: 8192, maxImagePixels: 263_624 })).toBe('invalid');
  });

  it('applies the limits inclusively', async () => {
    const jpg = fixture('Landscape_1.jpg'); // 600×450 = 270,000 px
    expect(await kindOf(jpg, { maxImageEdge: 600, maxImagePixels: 270_000 })).toBe('ok');
    expect(await kindOf(jpg, { maxImageEdge: 599, maxImagePixels: 270_000 })).toBe('invalid');
    expect(await kindOf(jpg, { maxImageEdge: 600, maxImagePixels: 269_999 })).toBe('invalid');
  });
});

describe('truncation', () => {
  const goodFiles = [
    'with-alpha.png',
    'Flag_of_the_Netherlands-16bit.png',
    'Landscape_1.jpg',
    'concert.jpg',
    'rotating-squares.webp',
    'animated-loop-3.gif',
    'pitm.avif',
  ];

  for (const file of goodFiles) {
    const data = fixture(file);
    for (const cut of [1, 2, 100, Math.floor(data.length / 2), data.length - 64]) {
      it(`${file} missing its last ${cut} bytes is invalid`, async () => {
        const t = data.subarray(0, data.length - cut);
        const format = sniffFormat(data);
        expect(format).not.toBeNull();
        expect(isComplete(format as Exclude<typeof format, 'svg' | 'heic' | null>, t)).toBe(false);
        expect(await kindOf(t)).toBe('invalid');
      });
    }
    it(`${file} whole is complete`, () => {
      const format = sniffFormat(data);
      expect(isComplete(format as Exclude<typeof format, 'svg' | 'heic' | null>, data)).toBe(true);
    });
  }
});

describe('trailing bytes', () => {
  it.each(['Landscape_1.jpg', 'Landscape_5.jpg', 'flowers.jpeg', 'concert.jpg'])(
    'accepts %s with a trailer appended after its end marker',
    async (file) => {
      const original = fixture(file);
      const withTrailer = Buffer.concat([original, Buffer.from('\0\0MOTION_PHOTO_TRAILER\xff\xd8\xff\0', 'latin1'), noise(2048)]);
      expect(isComplete('jpeg', withTrailer)).toBe(true);
      const r = await inspectImage(withTrailer, LIMITS);
      const plain = await inspectImage(original, LIMITS);
      expect(r.ok).toBe(true);
      expect(r).toEqual(plain);
    },
  );

  it('accepts a PNG with bytes after IEND', async () => {
    const png = Buffer.concat([fixture('with-alpha.png'), noise(100)]);
    expect(await inspectImage(png, LIMITS)).toEqual({
      ok: true,
      info: { format: 'png', contentType: 'image/png', width: 256, height: 192, pages: 1 },
    });
  });
});

describe('isComplete on synthetic containers', () => {
  it('JPEG: only the signature, or segments that end early', () => {
    expect(isComplete('jpeg', Buffer.from([0xff, 0xd8]))).toBe(false);
    expect(isComplete('jpeg', Buffer.from([0xff, 0xd8, 0xff, 0xd9]))).toBe(true);
    // an APP0 segment claiming 16 bytes of which 2 are present
    expect(isComplete('jpeg', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46]))).toBe(false);
    // junk where a marker should be
    expect(isComplete('jpeg', Buffer.from([0xff, 0xd8, 0x12, 0x34, 0xff, 0xd9]))).toBe(false);
  });

  it('GIF: needs its trailer byte', () => {
    const gif = fixture('animated-loop-3.gif');
    expect(gif[gif.length - 1]).toBe(0x3b);
    expect(isComplete('gif', Buffer.from('GIF89a;', 'latin1'))).toBe(false);
  });

  it('WebP: the RIFF size must fit in the file', () => {
    const riff = Buffer.alloc(20);
    riff.write('RIFF', 0, 'latin1');
    riff.write('WEBP', 8, 'latin1');
    riff.writeUInt32LE(12, 4);
    expect(isComplete('webp', riff)).toBe(true);
    riff.writeUInt32LE(13, 4);
    expect(isComplete('webp', riff)).toBe(false);
  });

  it('AVIF: a file of only ftyp has no meta box', () => {
    const onlyFtyp = ftyp('avif', 'mif1').subarray(0, 24);
    expect(isComplete('avif', onlyFtyp)).toBe(false);
  });

  it('TIFF is left to the decoder', () => {
    expect(isComplete('tiff', Buffer.from('II*\0', 'latin1'))).toBe(true);
  });
});

describe('progressive JPEG (several scans)', () => {
  it('is complete whole and incomplete when cut', async () => {
    const jpg = await sharp({
      create: { width: 120, height: 80, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } },
    })
      .jpeg({ progressive: true, quality: 80 })
      .toBuffer();
    expect(await inspectImage(jpg, LIMITS)).toEqual({
      ok: true,
      info: { format: 'jpeg', contentType: 'image/jpeg', width: 120, height: 80, pages: 1 },
    });
    for (const cut of [1, 2, 50, Math.floor(jpg.length / 3), Math.floor(jpg.length / 2)]) {
      expect(isComplete('jpeg', jpg.subarray(0, jpg.length - cut)), `cut ${cut}`).toBe(false);
    }
  });
});

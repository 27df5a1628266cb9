import { EditParams, InvalidInputError } from '@darkroom/contracts';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { editPipeline } from '../src/edit.ts';
import { finishOutput, type PipelineInput } from '../src/types.ts';
import { FIXTURES, fixture, makeCtx, makeInput } from './helpers.ts';

const LANDSCAPES = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => `Landscape_${n}.jpg`);

async function edit(name: string, operations: unknown[] = [], ctx = makeCtx()) {
  return finishOutput(await editPipeline.run(await makeInput(name), EditParams.parse({ operations }), ctx));
}

/** A tiny thumbnail of an image's pixels, for comparing content rather than bytes. */
async function thumb(data: Buffer): Promise<Buffer> {
  return sharp(data).resize(24, 18, { fit: 'fill' }).removeAlpha().toColourspace('srgb').raw().toBuffer();
}

function meanAbsDiff(a: Buffer, b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs((a[i] ?? 0) - (b[i] ?? 0));
  return sum / a.length;
}

async function expectInvalid(p: Promise<unknown>, pattern?: RegExp): Promise<InvalidInputError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidInputError);
  const e = err as InvalidInputError;
  expect(e.message).not.toContain(FIXTURES);
  if (pattern) expect(e.message).toMatch(pattern);
  return e;
}

/** A ref written by hand, for files whose header sharp refuses to read under the limit. */
function rawRef(name: string, format: 'jpeg' | 'png', width: number, height: number): PipelineInput {
  return { path: fixture(name), ref: { key: 'x', bytes: 0, sha256: '', format, contentType: `image/${format}`, width, height } };
}

describe('edit: orientation and metadata', () => {
  it('auto-orients every EXIF orientation to the same upright 600x450 image', async () => {
    const reference = await thumb((await edit('Landscape_1.jpg', [{ op: 'format', type: 'png' }])).data);
    for (const name of LANDSCAPES) {
      const out = await edit(name, [{ op: 'format', type: 'png' }]);
      const meta = await sharp(out.data).metadata();
      expect([out.width, out.height, meta.width, meta.height], name).toEqual([600, 450, 600, 450]);
      // Sideways or mirrored output would differ by far more than JPEG noise.
      expect(meanAbsDiff(await thumb(out.data), reference), name).toBeLessThan(8);
    }
  });

  it('resizes the upright image: width 300 gives 300x225 for every orientation', async () => {
    for (const name of LANDSCAPES) {
      const out = await edit(name, [{ op: 'resize', width: 300 }]);
      const meta = await sharp(out.data).metadata();
      expect([out.format, meta.format, meta.width, meta.height], name).toEqual(['jpeg', 'jpeg', 300, 225]);
    }
  });

  it('writes no EXIF (GPS included) and no orientation tag', async () => {
    expect((await sharp(fixture('Landscape_6.jpg')).metadata()).exif).toBeDefined();
    const out = await edit('Landscape_6.jpg');
    const meta = await sharp(out.data).metadata();
    expect(meta.exif).toBeUndefined();
    expect(meta.orientation).toBeUndefined();
  });
});

describe('edit: colour and depth', () => {
  it('converts CMYK with an ICC profile to sRGB without inverting it', async () => {
    const out = await edit('Channel_digital_image_CMYK_color.jpg');
    const meta = await sharp(out.data).metadata();
    expect([meta.format, meta.space, meta.channels]).toEqual(['jpeg', 'srgb', 3]);
    // stats() reads the decoded input, so materialise sharp's own ICC conversion first.
    const converted = await sharp(fixture('Channel_digital_image_CMYK_color.jpg')).toColourspace('srgb').png().toBuffer();
    const expected = await sharp(converted).stats();
    const actual = await sharp(out.data).stats();
    for (let c = 0; c < 3; c++) {
      expect(Math.abs((actual.channels[c]?.mean ?? 0) - (expected.channels[c]?.mean ?? 0))).toBeLessThan(3);
    }
  });

  it.each(['16-bit-grey-alpha.png', 'Flag_of_the_Netherlands-16bit.png'])('writes 8-bit PNG from 16-bit %s', async (name) => {
    expect((await sharp(fixture(name)).metadata()).depth).toBe('ushort');
    const out = await edit(name);
    const meta = await sharp(out.data).metadata();
    expect([out.format, meta.format, meta.depth]).toEqual(['png', 'png', 'uchar']);
  });

  it('flattens alpha onto white for JPEG output', async () => {
    const input = await sharp(fixture('with-alpha.png')).raw().toBuffer({ resolveWithObject: true });
    expect(input.info.channels).toBe(4);
    // The most transparent pixel shows the background most; blend it onto white by hand.
    let p = 0;
    for (let i = 0; i < input.info.width * input.info.height; i++) {
      if ((input.data[i * 4 + 3] ?? 255) < (input.data[p * 4 + 3] ?? 255)) p = i;
    }
    const alpha = (input.data[p * 4 + 3] ?? 255) / 255;
    expect(alpha).toBeLessThan(0.8);
    const out = await edit('with-alpha.png', [{ op: 'format', type: 'jpeg', quality: 95 }]);
    const meta = await sharp(out.data).metadata();
    expect([meta.format, meta.hasAlpha, meta.channels, meta.width, meta.height]).toEqual(['jpeg', false, 3, 256, 192]);
    const pixels = await sharp(out.data).raw().toBuffer();
    for (let c = 0; c < 3; c++) {
      const onWhite = (input.data[p * 4 + c] ?? 0) * alpha + 255 * (1 - alpha);
      expect(Math.abs((pixels[p * 3 + c] ?? 0) - onWhite)).toBeLessThan(12);
    }
  });

  it('greyscale gives one channel and still encodes to every format', async () => {
    for (const type of ['jpeg', 'png', 'webp', 'avif'] as const) {
      const out = await edit('flowers.jpeg', [{ op: 'resize', width: 64 }, { op: 'grayscale' }, { op: 'format', type }]);
      const meta = await sharp(out.data).metadata();
      expect([meta.format === 'heif' ? 'avif' : meta.format, meta.width, meta.height], type).toEqual([type, 64, 36]);
    }
  });
});

describe('edit: operations in order', () => {
  it('crop then rotate 90 gives 50x100', async () => {
    const out = await edit('Landscape_1.jpg', [
      { op: 'crop', left: 0, top: 0, width: 100, height: 50 },
      { op: 'rotate', angle: 90 },
    ]);
    expect([out.width, out.height]).toEqual([50, 100]);
    const meta = await sharp(out.data).metadata();
    expect([meta.width, meta.height]).toEqual([50, 100]);
  });

  it('rotate 90 then crop gives 100x50', async () => {
    const out = await edit('Landscape_1.jpg', [
      { op: 'rotate', angle: 90 },
      { op: 'crop', left: 0, top: 0, width: 100, height: 50 },
    ]);
    const meta = await sharp(out.data).metadata();
    expect([out.width, out.height, meta.width, meta.height]).toEqual([100, 50, 100, 50]);
  });

  it('resize then crop uses the resized size', async () => {
    const out = await edit('Landscape_3.jpg', [
      { op: 'resize', width: 300 },
      { op: 'crop', left: 200, top: 125, width: 100, height: 100 },
      { op: 'flip' },
      { op: 'flop' },
      { op: 'blur', sigma: 1 },
      { op: 'sharpen' },
      { op: 'modulate', brightness: 1.1, saturation: 0.8, hue: 30 },
      { op: 'tint', color: '#336699' },
    ]);
    expect([out.width, out.height]).toEqual([100, 100]);
  });

  it('runs modulate with none of its optional arguments as a no-op, and with some of them', async () => {
    const plain = await edit('Landscape_3.jpg', [{ op: 'format', type: 'png' }]);
    const none = await edit('Landscape_3.jpg', [{ op: 'modulate' }, { op: 'format', type: 'png' }]);
    expect([none.width, none.height, none.format]).toEqual([plain.width, plain.height, 'png']);
    const a = await sharp(plain.data).raw().toBuffer();
    expect(await sharp(none.data).raw().toBuffer()).toEqual(a);
    const some = await edit('Landscape_3.jpg', [
      { op: 'modulate', saturation: 0 },
      { op: 'format', type: 'png' },
    ]);
    expect(await sharp(some.data).raw().toBuffer()).not.toEqual(a);
  });

  it('rejects a crop outside the current image, naming its size', async () => {
    await expectInvalid(edit('Landscape_1.jpg', [{ op: 'crop', left: 550, top: 0, width: 100, height: 10 }]), /600x450/);
    await expectInvalid(
      edit('Landscape_1.jpg', [
        { op: 'resize', width: 300 },
        { op: 'crop', left: 0, top: 0, width: 400, height: 10 },
      ]),
      /300x225/,
    );
  });

  it('rotates by any angle, with a transparent background giving alpha', async () => {
    const out = await edit('Landscape_1.jpg', [
      { op: 'rotate', angle: 45, background: 'transparent' },
      { op: 'format', type: 'png' },
    ]);
    const meta = await sharp(out.data).metadata();
    expect(meta.hasAlpha).toBe(true);
    expect(out.width).toBeGreaterThan(700);
  });

  it('a leading resize (run inside the decode) gives what the same resize among other operations gives', async () => {
    const onePass = await edit('Landscape_5.jpg', [
      { op: 'resize', width: 300 },
      { op: 'format', type: 'png' },
    ]);
    const stepwise = await edit('Landscape_5.jpg', [
      { op: 'flip' },
      { op: 'resize', width: 300 },
      { op: 'flip' },
      { op: 'format', type: 'png' },
    ]);
    expect([onePass.width, onePass.height, stepwise.width, stepwise.height]).toEqual([300, 225, 300, 225]);
    expect(meanAbsDiff(await thumb(onePass.data), await thumb(stepwise.data))).toBeLessThan(3);
  });

  it('checks a leading resize against the pixel limit at the upright size', async () => {
    // Stored 450x600 with EXIF orientation 8: upright it is 600x450, so width 1000 gives 1000x750.
    const out = await edit('Landscape_8.jpg', [{ op: 'resize', width: 1000 }], makeCtx(800_000));
    expect([out.width, out.height]).toEqual([1000, 750]);
    await expectInvalid(
      edit('Landscape_8.jpg', [{ op: 'resize', width: 1100 }], makeCtx(800_000)),
      /1100x825 image, over the limit of 800000/,
    );
  });

  it('reports progress after each operation', async () => {
    const ctx = makeCtx();
    await edit('Landscape_1.jpg', [{ op: 'flip' }, { op: 'resize', width: 100 }], ctx);
    expect(ctx.progress.map((p) => p.message)).toEqual(['operation 1/2: flip', 'operation 2/2: resize', 'encoded']);
    expect(ctx.progress.at(-1)?.percent).toBe(100);
  });
});

describe('edit: output format', () => {
  it('encodes webp with the requested quality', async () => {
    const q50 = await edit('flowers.jpeg', [{ op: 'format', type: 'webp', quality: 50 }]);
    const q95 = await edit('flowers.jpeg', [{ op: 'format', type: 'webp', quality: 95 }]);
    const meta = await sharp(q50.data).metadata();
    expect([q50.format, meta.format, meta.width, meta.height]).toEqual(['webp', 'webp', 1920, 1080]);
    expect(q50.data.length).toBeLessThan(q95.data.length);
  });

  it('the last format operation wins', async () => {
    const out = await edit('flowers.jpeg', [
      { op: 'format', type: 'webp' },
      { op: 'resize', width: 64 },
      { op: 'format', type: 'png' },
    ]);
    expect([out.format, (await sharp(out.data).metadata()).format]).toEqual(['png', 'png']);
  });

  it('takes the first frame of an animation for PNG', async () => {
    const out = await edit('animated-loop-3.gif', [{ op: 'format', type: 'png' }]);
    const meta = await sharp(out.data).metadata();
    expect([meta.format, meta.width, meta.height, meta.pages ?? 1]).toEqual(['png', 370, 285, 1]);
    expect([out.width, out.height]).toEqual([370, 285]);
  });

  it('keeps a GIF animation (frames, delays, loop) through operations', async () => {
    const out = await edit('animated-loop-3.gif', [
      { op: 'rotate', angle: 90 },
      { op: 'resize', width: 100 },
    ]);
    const meta = await sharp(out.data).metadata();
    const source = await sharp(fixture('animated-loop-3.gif')).metadata();
    expect([out.format, meta.format, meta.pages, meta.loop]).toEqual(['gif', 'gif', 10, 3]);
    expect(meta.delay).toEqual(source.delay);
    expect([out.width, out.height, meta.width, meta.height]).toEqual([100, 130, 100, 130]);
  });

  it('keeps an animated WebP animated', async () => {
    const out = await edit('rotating-squares.webp', [{ op: 'crop', left: 10, top: 10, width: 40, height: 30 }]);
    const meta = await sharp(out.data).metadata();
    const source = await sharp(fixture('rotating-squares.webp')).metadata();
    const total = (d: number[] | undefined) => (d ?? []).reduce((a, b) => a + b, 0);
    expect([out.format, out.width, out.height, meta.width, meta.height]).toEqual(['webp', 40, 30, 40, 30]);
    // libwebp merges frames that became identical, so count time rather than frames.
    expect(meta.pages).toBeGreaterThan(1);
    expect(total(meta.delay)).toBe(total(source.delay));
  });
});

describe('edit: hostile and broken input', () => {
  it.each(['truncated.jpg', 'truncated.png'])('%s is invalid input', async (name) => {
    await expectInvalid(edit(name));
  });

  it('a corrupt header is invalid input', async () => {
    const input = rawRef('corrupt-header.jpg', 'jpeg', 1, 1);
    await expectInvalid(editPipeline.run(input, EditParams.parse({ operations: [] }), makeCtx()));
  });

  it('refuses an image over the pixel limit', async () => {
    const input = rawRef('giant-image.jpg', 'jpeg', 20000, 14000);
    await expectInvalid(editPipeline.run(input, EditParams.parse({ operations: [] }), makeCtx(50_000_000)), /pixel limit/);
  });

  it('refuses the 4-gigapixel PNG bomb under the default limit', async () => {
    const input = rawRef('65536-uint32-limit.png', 'png', 65536, 65536);
    await expectInvalid(editPipeline.run(input, EditParams.parse({ operations: [] }), makeCtx()), /pixel limit/);
  });

  it('refuses a resize whose result would pass the pixel limit', async () => {
    await expectInvalid(edit('Landscape_1.jpg', [{ op: 'resize', width: 4000 }], makeCtx(1_000_000)), /limit of 1000000 pixels/);
  });

  it('an aborted job rejects with the abort reason, not as invalid input', async () => {
    const ctx = makeCtx();
    const reason = new Error('cancelled');
    ctx.controller.abort(reason);
    await expect(edit('flowers.jpeg', [{ op: 'blur', sigma: 2 }], ctx)).rejects.toBe(reason);
  });
});

import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { InvalidInputError, UpscaleParams } from '@darkroom/contracts';
import type * as TfCore from '@tensorflow/tfjs-core';
import type * as TfLayers from '@tensorflow/tfjs-layers';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finishOutput } from '../src/types.ts';
import { UPSCALE_PAD, UPSCALE_TILE, upscaleModelDir, upscalePipeline } from '../src/upscale.ts';
import { fixture, makeCtx, makeInput, pngInput } from './helpers.ts';

/*
 * The upscaler against the network itself: the reference output is computed here, straight from
 * the package's model.json with tfjs in one pass over the whole image, so the test shows the
 * pipeline's tiling changes nothing and that the result is the model's, not a plain resize.
 */

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs-core') as typeof TfCore;
const tfl = require('@tensorflow/tfjs-layers') as typeof TfLayers;
let reference: TfLayers.LayersModel;
let tmp: string;

beforeAll(async () => {
  await upscalePipeline.init?.(makeCtx().logger);
  const dir = upscaleModelDir();
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const bin = fs.readFileSync(path.join(dir, json.weightsManifest[0].paths[0]));
  reference = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    }),
  );
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-upscale-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The network run once over the whole image, rounded to bytes as an 8-bit image holds it. */
function wholeImage(rgb: Buffer, width: number, height: number): Uint8Array {
  return tf.tidy(() => {
    const x = tf.tensor4d(Float32Array.from(rgb), [1, height, width, 3]);
    const y = reference.predict(x) as TfCore.Tensor;
    return Uint8Array.from(y.dataSync(), (v) => Math.max(0, Math.min(255, Math.round(v))));
  });
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
function meanDiff(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

describe('upscale', () => {
  it('reports its network warm once loaded', () => {
    expect(upscalePipeline.warmModels?.()).toEqual(['esrgan']);
  });

  it('doubles width and height, and equals the network run over the whole image', async () => {
    // Larger than one tile in both directions, with uneven edges, so tile seams would show.
    const width = UPSCALE_TILE * 2 + 21;
    const height = UPSCALE_TILE + 37;
    const input = await pngInput(tmp, 'landscape.png', sharp(fixture('Landscape_1.jpg')).resize(width, height, { fit: 'fill' }));
    const rgb = await sharp(input.path).removeAlpha().raw().toBuffer();
    const ctx = makeCtx();
    const out = await finishOutput(await upscalePipeline.run(input, UpscaleParams.parse({}), ctx));

    const { data, info } = await sharp(out.data).raw().toBuffer({ resolveWithObject: true });
    expect([out.format, out.width, out.height, info.width, info.height, info.channels]).toEqual([
      'png',
      width * 2,
      height * 2,
      width * 2,
      height * 2,
      3,
    ]);

    const expected = wholeImage(rgb, width, height);
    expect(maxDiff(data, expected)).toBeLessThanOrEqual(1);

    // Not a plain resize: the network's pixels differ from bicubic and Lanczos ones by far more than rounding.
    for (const kernel of ['cubic', 'lanczos3'] as const) {
      const resized = await sharp(rgb, { raw: { width, height, channels: 3 } })
        .resize(width * 2, height * 2, { kernel, fit: 'fill' })
        .raw()
        .toBuffer();
      expect(meanDiff(data, resized), kernel).toBeGreaterThan(1.5);
    }

    // Progress once per tile, in order, ending at 100.
    const tiles = Math.ceil(width / UPSCALE_TILE) * Math.ceil(height / UPSCALE_TILE);
    expect(ctx.progress.filter((p) => p.message?.startsWith('tile '))).toHaveLength(tiles);
    expect(ctx.progress.map((p) => p.percent)).toEqual([...ctx.progress.map((p) => p.percent)].sort((a, b) => a - b));
    expect(ctx.progress.at(-1)).toEqual({ percent: 100, message: 'encoded' });
    expect(UPSCALE_PAD).toBeGreaterThanOrEqual(10);
  });

  it('keeps transparency, scaled with the image, and writes the format asked for', async () => {
    const input = await makeInput('with-alpha.png');
    const out = await finishOutput(await upscalePipeline.run(input, UpscaleParams.parse({ format: 'webp' }), makeCtx()));
    const meta = await sharp(out.data).metadata();
    expect([meta.format, meta.width, meta.height, meta.hasAlpha]).toEqual(['webp', input.ref.width! * 2, input.ref.height! * 2, true]);
  });

  it('refuses an image whose result would pass the pixel limit, before any work', async () => {
    const input = await makeInput('Landscape_2.jpg');
    const limit = input.ref.width! * input.ref.height! * 3;
    const ctx = makeCtx(limit);
    await expect(upscalePipeline.run(input, {}, ctx)).rejects.toBeInstanceOf(InvalidInputError);
    expect(ctx.progress).toEqual([]);
  });

  it('stops between tiles when aborted, with the abort reason', async () => {
    const input = await pngInput(
      tmp,
      'big.png',
      sharp(fixture('Landscape_3.jpg')).resize(UPSCALE_TILE * 4, UPSCALE_TILE * 3, { fit: 'fill' }),
    );
    const ctx = makeCtx();
    const reason = new Error('cancelled by station');
    const origReport = ctx.reportProgress;
    ctx.reportProgress = async (percent, message) => {
      await origReport(percent, message);
      if (ctx.progress.length === 2) ctx.controller.abort(reason);
    };
    await expect(upscalePipeline.run(input, {}, ctx)).rejects.toBe(reason);
    expect(ctx.progress).toHaveLength(2);
  });

  it('leaves the event loop free between tiles', async () => {
    const input = await pngInput(
      tmp,
      'loop.png',
      sharp(fixture('Landscape_4.jpg')).resize(UPSCALE_TILE * 4, UPSCALE_TILE * 3, { fit: 'fill' }),
    );
    const gaps: number[] = [];
    const start = performance.now();
    let last = start;
    const timer = setInterval(() => {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
    }, 5);
    try {
      await finishOutput(await upscalePipeline.run(input, {}, makeCtx()));
    } finally {
      clearInterval(timer);
    }
    const total = performance.now() - start;
    // A 5 ms timer kept firing between the 12 tiles: the longest stall is about one tile, where
    // one pass over the image would hold the loop for nearly the whole run. Relative to the run,
    // so a slow or busy machine does not change the answer.
    expect(gaps.length).toBeGreaterThan(12);
    expect(Math.max(...gaps)).toBeLessThan(total / 4);
  });
});

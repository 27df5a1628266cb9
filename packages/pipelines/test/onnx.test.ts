import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DarkroomJobError, InvalidInputError, OnnxParams } from '@darkroom/contracts';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invertModel, nearest2xNhwcModel, writeModelDir, writeTestModels } from '../../testing/src/onnx-model.ts';
import { parseNvidiaSmi } from '../src/device.ts';
import { fromTensor, listModelFiles, OnnxManifest, OnnxPipeline, PROBE_MODEL, toTensor } from '../src/onnx.ts';
import { finishOutput } from '../src/types.ts';
import { captureLogger, makeCtx, makeInput, pngInput } from './helpers.ts';

/*
 * The onnx pipeline with models the tests write themselves (no download): a colour-inverting
 * 1×1 convolution and a ×2 nearest-neighbour upscaler, checked pixel by pixel.
 */

let tmp: string;
let models: string;
let pipeline: OnnxPipeline;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-onnx-'));
  models = writeTestModels(path.join(tmp, 'models'));
  writeModelDir(models, [
    // Fixed 16×16 input: the image is cut into tiles of that size, edges repeated.
    {
      name: 'invert16',
      model: invertModel({ size: [16, 16] }),
      manifest: { input: 'image', output: 'inverted', layout: 'NCHW', range: [0, 1], tilePad: 2 },
    },
    // Tiny tiles through a ×2 model, to exercise tiling with a scale.
    { name: 'nearest2x-tiled', model: nearest2xNhwcModel(), manifest: { layout: 'NHWC', range: [0, 255], scale: 2, tile: 12, tilePad: 2 } },
    // A manifest that promises ×2 from a same-size model.
    { name: 'liar', model: invertModel(), manifest: { scale: 2 } },
  ]);
  // Models that must be skipped, not stop the worker.
  writeModelDir(models, [{ name: 'bad-manifest', model: invertModel(), manifest: { layout: 'CHWN' } }]);
  writeModelDir(models, [{ name: 'broken', model: Buffer.from('not an onnx model'), manifest: {} }]);
  pipeline = new OnnxPipeline({ modelDir: models, provider: 'auto' });
  await pipeline.init(captureLogger().logger);
});
afterAll(async () => {
  await pipeline?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function rawOf(data: Buffer) {
  return sharp(data).raw().toBuffer({ resolveWithObject: true });
}

describe('onnx pipeline', () => {
  it('loads the usable models of the directory and skips the rest', () => {
    expect(pipeline.models.sort()).toEqual(['invert', 'invert16', 'liar', 'nearest2x', 'nearest2x-tiled']);
    expect(pipeline.provider).toBe('cpu');
    expect(pipeline.status()).toEqual({ models: pipeline.models, device: 'cpu' });
    // Loaded at init and kept: every one is warm for the scheduler.
    expect(pipeline.warmModels().sort()).toEqual(pipeline.models);
  });

  it('inverts colours exactly with the 1×1 convolution model, keeping transparency', async () => {
    const input = await makeInput('with-alpha.png');
    const out = await finishOutput(await pipeline.run(input, OnnxParams.parse({ model: 'invert' }), makeCtx()));
    const src = await sharp(input.path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const got = await rawOf(out.data);
    expect([out.format, got.info.width, got.info.height, got.info.channels]).toEqual(['png', src.info.width, src.info.height, 4]);
    for (let i = 0; i < src.data.length; i += 4) {
      expect([got.data[i], got.data[i + 1], got.data[i + 2], got.data[i + 3]]).toEqual([
        255 - src.data[i]!,
        255 - src.data[i + 1]!,
        255 - src.data[i + 2]!,
        src.data[i + 3],
      ]);
    }
  });

  it('runs a fixed-size model tile by tile with the same result', async () => {
    const input = await pngInput(tmp, 'photo.png', sharp((await makeInput('Landscape_1.jpg')).path).resize(37, 23, { fit: 'fill' }));
    const src = await sharp(input.path).raw().toBuffer();
    const ctx = makeCtx();
    const out = await finishOutput(await pipeline.run(input, OnnxParams.parse({ model: 'invert16' }), ctx));
    const got = await rawOf(out.data);
    expect([got.info.width, got.info.height]).toEqual([37, 23]);
    expect(Buffer.compare(got.data, Buffer.from(src.map((v) => 255 - v)))).toBe(0);
    // 12-pixel cores (16 minus 2 of context each side): 4 × 2 tiles.
    expect(ctx.progress.filter((p) => p.message?.startsWith('tile'))).toHaveLength(8);
  });

  it('reads NHWC models in 0–255 with a scale factor, whole or in tiles', async () => {
    const input = await pngInput(tmp, 'small.png', sharp((await makeInput('Landscape_2.jpg')).path).resize(29, 17, { fit: 'fill' }));
    const src = await sharp(input.path).raw().toBuffer();
    const expected = Buffer.alloc(58 * 34 * 3);
    for (let y = 0; y < 34; y++)
      for (let x = 0; x < 58; x++) for (let c = 0; c < 3; c++) expected[(y * 58 + x) * 3 + c] = src[((y >> 1) * 29 + (x >> 1)) * 3 + c]!;
    for (const model of ['nearest2x', 'nearest2x-tiled']) {
      const out = await finishOutput(await pipeline.run(input, OnnxParams.parse({ model, format: 'webp' }), makeCtx()));
      expect(out.format).toBe('webp');
      const png = await finishOutput(await pipeline.run(input, OnnxParams.parse({ model }), makeCtx()));
      const got = await rawOf(png.data);
      expect([got.info.width, got.info.height], model).toEqual([58, 34]);
      expect(Buffer.compare(got.data, expected), model).toBe(0);
    }
  });

  it('refuses an unknown model as invalid input, naming the ones it has', async () => {
    const input = await makeInput('with-alpha.png');
    const err = await pipeline.run(input, { model: 'nope' }, makeCtx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toMatch(/unknown model "nope".*invert/);
  });

  it('fails, without retry, a model whose output does not match its manifest', async () => {
    const input = await makeInput('with-alpha.png');
    const err = await pipeline.run(input, { model: 'liar' }, makeCtx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DarkroomJobError);
    expect(err).toMatchObject({ code: 'pipeline_error', retryable: false });
  });

  it('refuses a result over the pixel limit before any work', async () => {
    const input = await makeInput('with-alpha.png');
    const ctx = makeCtx(input.ref.width! * input.ref.height! * 2);
    await expect(pipeline.run(input, { model: 'nearest2x' }, ctx)).rejects.toBeInstanceOf(InvalidInputError);
  });
});

describe('onnx setup', () => {
  it('says why a host cannot serve it', async () => {
    expect(await new OnnxPipeline({ modelDir: undefined, provider: 'auto' }).unavailable()).toBe('DARKROOM_MODEL_DIR is not set');
    expect(await new OnnxPipeline({ modelDir: path.join(tmp, 'missing'), provider: 'auto' }).unavailable()).toMatch(/does not exist/);
    const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
    expect(await new OnnxPipeline({ modelDir: empty, provider: 'auto' }).unavailable()).toMatch(/holds no model/);
    expect(await new OnnxPipeline({ modelDir: models, provider: 'auto' }).unavailable()).toBeUndefined();
  });

  it('finds models as folders or as file pairs', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'pairs-'));
    fs.writeFileSync(path.join(dir, 'flat.onnx'), invertModel());
    fs.writeFileSync(path.join(dir, 'flat.json'), '{}');
    fs.writeFileSync(path.join(dir, 'lonely.onnx'), invertModel());
    writeModelDir(dir, [{ name: 'folder', model: invertModel(), manifest: {} }]);
    expect(listModelFiles(dir).map((m) => m.name)).toEqual(['flat', 'folder']);
  });

  it('warns about the models it skips', async () => {
    const { logger, records } = captureLogger();
    const p = new OnnxPipeline({ modelDir: models, provider: 'cpu' });
    await p.init(logger);
    await p.close();
    const skipped = records.filter((r) => r.level === 'warn').map((r) => r.obj.model);
    expect(skipped.sort()).toEqual(['bad-manifest', 'broken']);
  });

  it('falls back to WebGPU, then the CPU, when a GPU is seen but CUDA does not start, and says so', async () => {
    const smi = path.join(tmp, 'nvidia-smi');
    fs.writeFileSync(smi, '#!/bin/sh\necho "0, NVIDIA Test GPU, 24576"\n', { mode: 0o755 });
    const { logger, records } = captureLogger();
    const p = new OnnxPipeline({ modelDir: models, provider: 'auto', nvidiaSmi: smi });
    await p.init(logger);
    await p.close();
    expect(p.provider).toBe('cpu');
    const tried = records.filter((r) => r.level === 'warn' && /did not start/.test(r.msg ?? '')).map((r) => r.obj.provider);
    expect(tried).toEqual(['cuda', 'webgpu']);
  });

  it('stops when a forced provider does not start', async () => {
    const p = new OnnxPipeline({ modelDir: models, provider: 'cuda' });
    await expect(p.init(captureLogger().logger)).rejects.toThrow(/DARKROOM_ONNX_PROVIDER=cuda/);
  });

  it('stops when no model of the directory is usable', async () => {
    const dir = writeModelDir(fs.mkdtempSync(path.join(tmp, 'bad-')), [{ name: 'broken', model: Buffer.from('junk'), manifest: {} }]);
    await expect(new OnnxPipeline({ modelDir: dir, provider: 'cpu' }).init(captureLogger().logger)).rejects.toThrow(/no usable ONNX model/);
  });

  it('turns pixels into tensors and back for every layout and normalisation', () => {
    const img = { data: Uint8Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 37) % 256), width: 5, height: 3 };
    const manifests = [
      {},
      { layout: 'NHWC', range: [0, 255] },
      { channels: 'BGR', range: [-1, 1] },
      { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], outputMean: [0.485, 0.456, 0.406], outputStd: [0.229, 0.224, 0.225] },
    ];
    for (const raw of manifests) {
      const m = OnnxManifest.parse(raw);
      const back = fromTensor(toTensor(img, m), 5, 3, m);
      expect(
        Array.from(back, (v) => Math.round(v) + 0),
        JSON.stringify(raw),
      ).toEqual(Array.from(img.data));
    }
    // NCHW puts each channel in its own plane; BGR swaps the first and last.
    const t = toTensor(img, OnnxManifest.parse({ channels: 'BGR', range: [0, 255] }));
    expect([t[0], t[15], t[30]]).toEqual([img.data[2], img.data[1], img.data[0]]);
  });

  it('probes providers with the inverting model the tests write', () => {
    expect(PROBE_MODEL.equals(invertModel({ size: [8, 8] }))).toBe(true);
  });

  it('reads nvidia-smi', () => {
    expect(parseNvidiaSmi('0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n')).toEqual([
      { index: 0, name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 },
      { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 },
    ]);
    expect(parseNvidiaSmi('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.')).toEqual([]);
  });
});

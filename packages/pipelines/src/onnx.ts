import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DarkroomJobError, InvalidInputError, ONNX_MODEL_NAME, ONNX_SPEC, type OnnxParams } from '@darkroom/contracts';
import type { Logger } from '@darkroom/runtime';
import type * as Ort from 'onnxruntime-node';
import { z } from 'zod';
import { detectDevice } from './device.ts';
import { decodeInput, encodeLater, outputFormat } from './image-io.ts';
import { type RgbImage, runTiled } from './tiles.ts';
import type { Pipeline, PipelineStatus } from './types.ts';

/*
 * Any image-to-image ONNX model from a mounted directory, run by onnxruntime-node. Each model is
 * a folder `<dir>/<name>/` with `model.onnx` and `manifest.json` (or a pair `<dir>/<name>.onnx` +
 * `<dir>/<name>.json`); the manifest says how pixels become the input tensor and how the output
 * tensor becomes pixels. Sessions are created once per worker, at start.
 *
 * Execution provider (`DARKROOM_ONNX_PROVIDER=auto`): on a host with an NVIDIA GPU, CUDA when
 * onnxruntime's CUDA provider library loads, else WebGPU (Vulkan) when it starts, else the CPU;
 * on a host without one, the CPU. `cuda`, `webgpu` or `cpu` force one, and a forced one that
 * does not start stops the worker.
 */

const require = createRequire(import.meta.url);

/**
 * The probe that finds a working execution provider: a 1×1 convolution inverting an 8×8 RGB
 * image (input "image", output "inverted"), as packages/testing's `invertModel({ size: [8, 8] })`
 * writes it (a test checks they are the same bytes).
 */
export const PROBE_MODEL = Buffer.from(
  'CAcSCGRhcmtyb29tOtcBCjwKBWltYWdlCgFXCgFCEghpbnZlcnRlZBoGaW52ZXJ0IgRDb252KhUKDGtlcm5lbF9zaGFwZUABQAGgAQcSBmludmVydCozCAMIAwgBCAEQAUIBV0okAACAvwAAAAAAAAAAAAAAAAAAgL8AAAAAAAAAAAAAAAAAAIC/KhUIAxABQgFCSgwAAIA/AACAPwAAgD9aHwoFaW1hZ2USFgoUCAESEAoCCAEKAggDCgIICAoCCAhiIgoIaW52ZXJ0ZWQSFgoUCAESEAoCCAEKAggDCgIICAoCCAhCBAoAEA0=',
  'base64',
);

const Triple = z.tuple([z.number(), z.number(), z.number()]);
const Range = z.tuple([z.number(), z.number()]).refine(([a, b]) => a !== b, 'the two ends must differ');

export const OnnxManifest = z.strictObject({
  description: z.string().max(500).optional(),
  /** Input and output tensor names; default: the model's first input and output. */
  input: z.string().optional(),
  output: z.string().optional(),
  layout: z.enum(['NCHW', 'NHWC']).default('NCHW'),
  /** RGB or BGR channel order in the tensors. */
  channels: z.enum(['RGB', 'BGR']).default('RGB'),
  /** Pixel 0–255 maps linearly onto this range, then (x − mean) / std per channel. */
  range: Range.default([0, 1]),
  mean: Triple.default([0, 0, 0]),
  std: Triple.default([1, 1, 1]),
  /** How the output reads back: x · std + mean, then this range maps onto 0–255. Default: the input's. */
  outputRange: Range.optional(),
  outputMean: Triple.optional(),
  outputStd: Triple.optional(),
  /** Output edge / input edge. */
  scale: z.int().min(1).max(16).default(1),
  /** A model with a fixed input size [width, height]; default: read from the model (dynamic when symbolic). */
  size: z.tuple([z.int().min(1), z.int().min(1)]).optional(),
  /** Tile edge (input pixels, context included) for dynamic models; 0 runs the whole image at once. */
  tile: z.int().min(0).max(8192).default(512),
  /** Context pixels around each tile, thrown away after: at least the model's receptive field. */
  tilePad: z.int().min(0).max(512).default(16),
});
export type OnnxManifest = z.infer<typeof OnnxManifest>;

export type OnnxProvider = 'auto' | 'cuda' | 'webgpu' | 'cpu';

export interface OnnxOptions {
  /** The model directory; unset, the pipeline is not served. */
  modelDir: string | undefined;
  provider: OnnxProvider;
  /** For tests: where nvidia-smi is looked for. */
  nvidiaSmi?: string;
}

interface ModelFiles {
  name: string;
  model: string;
  manifest: string;
}

interface LoadedModel {
  name: string;
  manifest: OnnxManifest;
  session: Ort.InferenceSession;
  input: string;
  output: string;
  /** Rank of the input: 4 with a batch dimension, 3 without. */
  rank: number;
  fixedSize: [number, number] | undefined;
}

/** The models a directory holds, by its two layouts; names that are not model names are skipped. */
export function listModelFiles(dir: string): ModelFiles[] {
  const found = new Map<string, ModelFiles>();
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.isDirectory() || e.isSymbolicLink()) {
      const model = path.join(dir, e.name, 'model.onnx');
      const manifest = path.join(dir, e.name, 'manifest.json');
      if (ONNX_MODEL_NAME.test(e.name) && fs.existsSync(model) && fs.existsSync(manifest))
        found.set(e.name, { name: e.name, model, manifest });
    } else if (e.name.endsWith('.onnx')) {
      const name = e.name.slice(0, -'.onnx'.length);
      const manifest = path.join(dir, `${name}.json`);
      if (ONNX_MODEL_NAME.test(name) && !found.has(name) && fs.existsSync(manifest)) {
        found.set(name, { name, model: path.join(dir, e.name), manifest });
      }
    }
  }
  return [...found.values()];
}

function readManifest(file: string): OnnxManifest {
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  const parsed = OnnxManifest.safeParse(raw);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
  return parsed.data;
}

function loadOrt(): typeof Ort {
  const ort = require('onnxruntime-node') as typeof Ort;
  // Native log lines bypass the JSON logs; only real errors get through.
  ort.env.logLevel = 'error';
  return ort;
}

export class OnnxPipeline implements Pipeline<OnnxParams> {
  readonly spec = ONNX_SPEC;
  readonly #opts: OnnxOptions;
  #models = new Map<string, LoadedModel>();
  #provider: 'cuda' | 'webgpu' | 'cpu' | undefined;
  #device: string | undefined;

  constructor(opts: OnnxOptions) {
    this.#opts = opts;
  }

  /** Every model of the directory is loaded at init and stays loaded. */
  warmModels(): string[] {
    return [...this.#models.keys()];
  }

  async unavailable(): Promise<string | undefined> {
    const dir = this.#opts.modelDir;
    if (!dir) return 'DARKROOM_MODEL_DIR is not set';
    if (!fs.existsSync(dir)) return `DARKROOM_MODEL_DIR ${dir} does not exist`;
    if (listModelFiles(dir).length === 0) return `DARKROOM_MODEL_DIR ${dir} holds no model (<name>/model.onnx with <name>/manifest.json)`;
    return undefined;
  }

  /** The names of the models this worker serves, once init has run. */
  get models(): string[] {
    return [...this.#models.keys()];
  }

  get provider(): string | undefined {
    return this.#provider;
  }

  status(): PipelineStatus {
    return { models: this.models, ...(this.#device ? { device: this.#device } : {}) };
  }

  async init(logger: Logger): Promise<void> {
    const dir = this.#opts.modelDir;
    if (!dir) throw new Error('DARKROOM_MODEL_DIR is not set');
    const ort = loadOrt();
    const device = await detectDevice(this.#opts.nvidiaSmi ? { nvidiaSmi: this.#opts.nvidiaSmi } : {});
    const provider = await this.#chooseProvider(ort, device.kind === 'gpu', logger);
    this.#provider = provider;
    for (const f of listModelFiles(dir)) {
      let manifest: OnnxManifest;
      try {
        manifest = readManifest(f.manifest);
      } catch (err) {
        logger.warn({ model: f.name, err: (err as Error).message }, 'onnx model skipped: bad manifest.json');
        continue;
      }
      let session: Ort.InferenceSession;
      try {
        session = await ort.InferenceSession.create(f.model, { executionProviders: [provider], graphOptimizationLevel: 'all' });
      } catch (err) {
        logger.warn({ model: f.name, provider, err: firstLine(err) }, 'onnx model skipped: it does not load');
        continue;
      }
      const loaded = this.#describe(f.name, manifest, session);
      if (typeof loaded === 'string') {
        logger.warn({ model: f.name, err: loaded }, 'onnx model skipped');
        await session.release();
        continue;
      }
      this.#models.set(f.name, loaded);
    }
    if (this.#models.size === 0) throw new Error(`no usable ONNX model in ${dir} (see the warnings above)`);
    this.#device = provider === 'cpu' ? 'cpu' : `${provider}: ${device.description.replace(/^gpu: /, '')}`;
    logger.info({ provider, device: device.description, models: this.models }, 'onnx models loaded');
  }

  /**
   * Finds the execution provider to use by creating a session for a tiny model (a 1×1
   * convolution) and running it: CUDA needs onnxruntime's CUDA provider library and CUDA/cuDNN
   * on the host, which a CPU-only install lacks.
   */
  async #chooseProvider(ort: typeof Ort, hasGpu: boolean, logger: Logger): Promise<'cuda' | 'webgpu' | 'cpu'> {
    const wanted = this.#opts.provider;
    // WebGPU (bundled in onnxruntime-node, through Vulkan) is the GPU path when the CUDA provider
    // library is not installed; it needs a Vulkan loader and the NVIDIA Vulkan driver.
    const candidates: ('cuda' | 'webgpu' | 'cpu')[] = wanted === 'auto' ? (hasGpu ? ['cuda', 'webgpu', 'cpu'] : ['cpu']) : [wanted];
    const probe = PROBE_MODEL;
    for (const p of candidates) {
      try {
        const s = await ort.InferenceSession.create(probe, { executionProviders: [p] });
        try {
          await s.run({ image: new ort.Tensor('float32', new Float32Array(3 * 64).fill(0.25), [1, 3, 8, 8]) });
        } finally {
          await s.release();
        }
        if (p !== candidates[0]) logger.warn({ provider: p }, `onnx: using the ${p} execution provider`);
        return p;
      } catch (err) {
        if (wanted !== 'auto')
          throw new Error(`DARKROOM_ONNX_PROVIDER=${wanted}: the ${wanted} execution provider did not start: ${firstLine(err)}`);
        logger.warn({ provider: p, err: firstLine(err) }, `onnx: the ${p} execution provider did not start`);
      }
    }
    throw new Error('onnxruntime: no execution provider started');
  }

  /** Checks the manifest against the model's inputs and outputs. */
  #describe(name: string, manifest: OnnxManifest, session: Ort.InferenceSession): LoadedModel | string {
    const input = manifest.input ?? session.inputNames[0];
    const output = manifest.output ?? session.outputNames[0];
    if (!input || !session.inputNames.includes(input)) return `no input named ${manifest.input} (has ${session.inputNames.join(', ')})`;
    if (!output || !session.outputNames.includes(output))
      return `no output named ${manifest.output} (has ${session.outputNames.join(', ')})`;
    const meta = session.inputMetadata[session.inputNames.indexOf(input)];
    let rank = 4;
    let fixedSize = manifest.size;
    if (meta?.isTensor) {
      if (meta.type !== 'float32') return `input ${input} is ${meta.type}; only float32 inputs are supported`;
      rank = meta.shape.length;
      if (rank !== 3 && rank !== 4) return `input ${input} has rank ${rank}; expected 4 (batch, …) or 3`;
      const dims = meta.shape.slice(rank - 3);
      const [h, w] = manifest.layout === 'NCHW' ? [dims[1], dims[2]] : [dims[0], dims[1]];
      const c = manifest.layout === 'NCHW' ? dims[0] : dims[2];
      if (typeof c === 'number' && c !== 3) return `input ${input} has ${c} channels in layout ${manifest.layout}; expected 3`;
      if (!fixedSize && typeof w === 'number' && typeof h === 'number' && w > 0 && h > 0) fixedSize = [w, h];
    }
    if (fixedSize && manifest.tilePad * 2 >= Math.min(...fixedSize)) {
      return `tilePad ${manifest.tilePad} leaves nothing of a ${fixedSize[0]}x${fixedSize[1]} input`;
    }
    return { name, manifest, session, input, output, rank, fixedSize };
  }

  async run(input: Parameters<Pipeline<OnnxParams>['run']>[0], params: OnnxParams, ctx: Parameters<Pipeline<OnnxParams>['run']>[2]) {
    if (!input) throw new InvalidInputError('the onnx pipeline needs an input image');
    const m = this.#models.get(params.model);
    if (!m) {
      throw new InvalidInputError(`unknown model "${params.model}"; this worker has ${this.models.join(', ') || 'none'}`);
    }
    const { manifest } = m;
    const limit = ctx.limits.maxImagePixels;
    const w = input.ref.width ?? 0;
    const h = input.ref.height ?? 0;
    if (w * h * manifest.scale ** 2 > limit) {
      throw new InvalidInputError(
        `model ${m.name} would make a ${w * manifest.scale}x${h * manifest.scale} image, over the limit of ${limit} pixels`,
      );
    }
    const format = outputFormat(params.format, input);
    const { rgb, alpha } = await decodeInput(input, limit);
    ctx.signal.throwIfAborted();
    const ort = loadOrt();
    const runTile = async (tile: RgbImage): Promise<Float32Array> => {
      const feeds = { [m.input]: new ort.Tensor('float32', toTensor(tile, manifest), tensorDims(tile, manifest, m.rank)) };
      const result = await m.session.run(feeds, [m.output]);
      const out = result[m.output];
      if (!out) throw new Error(`model ${m.name} returned no ${m.output}`);
      const expected = tensorDims({ width: tile.width * manifest.scale, height: tile.height * manifest.scale }, manifest, m.rank);
      if (out.type !== 'float32' || out.dims.join('x') !== expected.join('x')) {
        throw new ModelShapeError(
          `model ${m.name}: output ${m.output} is ${out.type} ${out.dims.join('x')}; the manifest (scale ${manifest.scale}, ${manifest.layout}) means ${expected.join('x')}`,
        );
      }
      return fromTensor(out.data as Float32Array, tile.width * manifest.scale, tile.height * manifest.scale, manifest);
    };
    try {
      const pad = manifest.tilePad;
      const tiling = m.fixedSize
        ? { tile: Math.min(m.fixedSize[0], m.fixedSize[1]) - 2 * pad, pad, fixedSize: m.fixedSize }
        : manifest.tile > 0
          ? { tile: Math.max(1, manifest.tile - 2 * pad), pad }
          : { tile: Math.max(rgb.width, rgb.height), pad: 0 };
      const out = await runTiled(rgb, runTile, { scale: manifest.scale, ...tiling, progressTo: 95 }, ctx);
      ctx.signal.throwIfAborted();
      return encodeLater(out, alpha && { data: alpha, width: rgb.width, height: rgb.height }, format, ctx);
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#models.values()].map((m) => m.session.release()));
    this.#models.clear();
  }
}

/** The model's output does not have the shape its manifest promises: the model directory needs fixing, a retry cannot. */
export class ModelShapeError extends DarkroomJobError {
  constructor(message: string) {
    super('pipeline_error', message, false);
    this.name = 'ModelShapeError';
  }
}

function firstLine(err: unknown): string {
  return ((err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '').trim();
}

function tensorDims(img: { width: number; height: number }, m: OnnxManifest, rank: number): number[] {
  const chw = m.layout === 'NCHW' ? [3, img.height, img.width] : [img.height, img.width, 3];
  return rank === 4 ? [1, ...chw] : chw;
}

/** Pixels → the input tensor: channel order, range, mean/std, layout. */
export function toTensor(img: RgbImage, m: OnnxManifest): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(n * 3);
  const [lo, hi] = m.range;
  const k = (hi - lo) / 255;
  const order = m.channels === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const src = order[c]!;
    const mean = m.mean[c]!;
    const std = m.std[c]!;
    for (let i = 0; i < n; i++) {
      const v = (img.data[i * 3 + src]! * k + lo - mean) / std;
      out[m.layout === 'NCHW' ? c * n + i : i * 3 + c] = v;
    }
  }
  return out;
}

/** The output tensor → RGB floats in 0–255 space (HWC), undoing what toTensor did. */
export function fromTensor(data: Float32Array, width: number, height: number, m: OnnxManifest): Float32Array {
  const n = width * height;
  const out = new Float32Array(n * 3);
  const [lo, hi] = m.outputRange ?? m.range;
  const k = 255 / (hi - lo);
  const mean = m.outputMean ?? [0, 0, 0];
  const std = m.outputStd ?? [1, 1, 1];
  const order = m.channels === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const dst = order[c]!;
    for (let i = 0; i < n; i++) {
      const v = data[m.layout === 'NCHW' ? c * n + i : i * 3 + c]! * std[c]! + mean[c]!;
      out[i * 3 + dst] = (v - lo) * k;
    }
  }
  return out;
}

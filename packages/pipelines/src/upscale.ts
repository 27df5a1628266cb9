import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { InvalidInputError, UPSCALE_SPEC, type UpscaleParams } from '@darkroom/contracts';
import type { Logger } from '@darkroom/runtime';
import type * as TfCore from '@tensorflow/tfjs-core';
import type * as TfLayers from '@tensorflow/tfjs-layers';
import { decodeInput, encodeLater, outputFormat } from './image-io.ts';
import { type RgbImage, runTiled } from './tiles.ts';
import type { Pipeline } from './types.ts';

/*
 * ESRGAN ×2 super-resolution with the weights @upscalerjs/default-model ships (an RDN network,
 * Keras layers format: model.json + one 888 KB shard), run in process by tfjs on its WebAssembly
 * backend. Nothing is downloaded: the weights and the .wasm files are read from node_modules.
 *
 * The model takes RGB in 0–255 (NHWC) and gives RGB in 0–255 at twice the size (its
 * definition's inputRange/outputRange). Its receptive field reaches 10 input pixels, measured by
 * comparing tiled and whole-image results: tiles read 12 pixels of context, so tiling leaves no
 * seams and the result equals one pass over the whole image.
 */

export const UPSCALE_FACTOR = 2;
/** Core tile edge in input pixels: a 64 px tile with its context runs in ~150–200 ms on one core. */
export const UPSCALE_TILE = 64;
export const UPSCALE_PAD = 12;

const require = createRequire(import.meta.url);

/** The directory holding the model's model.json and weight shard, inside the installed package. */
export function upscaleModelDir(): string {
  // The package exports only its JS entry; walk up from it to the folder that has models/.
  let dir = path.dirname(require.resolve('@upscalerjs/default-model'));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'models', 'model.json'))) return path.join(dir, 'models');
    const up = path.dirname(dir);
    if (up === dir) throw new Error('@upscalerjs/default-model: models/model.json not found in the installed package');
    dir = up;
  }
}

interface Loaded {
  tf: typeof TfCore;
  model: TfLayers.LayersModel;
}

let loading: Promise<Loaded> | undefined;

/** Sets up tfjs on the wasm backend and reads the model from disk, once per process. */
export function loadUpscaleModel(): Promise<Loaded> {
  loading ??= (async () => {
    const tf = require('@tensorflow/tfjs-core') as typeof TfCore;
    const layers = require('@tensorflow/tfjs-layers') as typeof TfLayers;
    const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}${path.sep}`);
    if (!(await tf.setBackend('wasm'))) throw new Error('the tfjs wasm backend did not start');
    await tf.ready();
    const dir = upscaleModelDir();
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8')) as {
      modelTopology: object;
      weightsManifest: { paths: string[]; weights: TfCore.io.WeightsManifestEntry[] }[];
    };
    const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
    const shards = json.weightsManifest.flatMap((g) => g.paths).map((p) => fs.readFileSync(path.join(dir, p)));
    const all = Buffer.concat(shards);
    const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
    const model = await layers.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs, weightData }));
    return { tf, model };
  })();
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}

/** One synchronous pass of the network over an RGB image: RGB floats in 0–255 space, twice the size. */
export function upscaleOnce({ tf, model }: Loaded, img: RgbImage): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor4d(Float32Array.from(img.data), [1, img.height, img.width, 3]);
    const y = model.predict(x) as TfCore.Tensor;
    return y.dataSync() as Float32Array;
  });
}

let upscaleLoaded = false;

export const upscalePipeline: Pipeline<UpscaleParams> = {
  spec: UPSCALE_SPEC,

  async init(logger: Logger) {
    const { tf } = await loadUpscaleModel();
    upscaleLoaded = true;
    logger.debug({ backend: tf.getBackend() }, 'upscale model loaded');
  },

  /** The one network, loaded at init and kept. */
  warmModels() {
    return upscaleLoaded ? ['esrgan'] : [];
  },

  status() {
    return { device: 'cpu: tfjs wasm' };
  },

  async run(input, params, ctx) {
    if (!input) throw new InvalidInputError('the upscale pipeline needs an input image');
    const loaded = await loadUpscaleModel();
    const w = input.ref.width ?? 0;
    const h = input.ref.height ?? 0;
    const limit = ctx.limits.maxImagePixels;
    if (w * h * UPSCALE_FACTOR ** 2 > limit) {
      throw new InvalidInputError(
        `a ${w}x${h} image upscaled ×${UPSCALE_FACTOR} would be over the limit of ${limit} pixels; send at most ${Math.floor(limit / UPSCALE_FACTOR ** 2)} pixels`,
      );
    }
    const format = outputFormat(params.format, input);
    const { rgb, alpha } = await decodeInput(input, limit);
    ctx.signal.throwIfAborted();
    try {
      const up = await runTiled(
        rgb,
        (tile) => upscaleOnce(loaded, tile),
        { scale: UPSCALE_FACTOR, tile: UPSCALE_TILE, pad: UPSCALE_PAD, progressTo: 95 },
        ctx,
      );
      ctx.signal.throwIfAborted();
      return encodeLater(up, alpha && { data: alpha, width: rgb.width, height: rgb.height }, format, ctx);
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw err;
    }
  },
};

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { PIPELINE_SPECS, type SyntheticParams } from '@darkroom/contracts';
import sharp from 'sharp';
import type { Pipeline, PipelineContext, PipelineInput } from './types.ts';

export interface SyntheticOptions {
  /** Models kept loaded at once (DARKROOM_SYNTHETIC_WARM_MODELS); loading one more unloads the least recently used. */
  warmModels?: number;
}

/**
 * A stand-in for a GPU model, for load tests, benchmarks and demos. With a `model` param it also
 * stands for a model load: the first job of a model on this worker, or one after the worker
 * switched to other models, waits `loadMs` first and reports it as a model load.
 */
export class SyntheticPipeline implements Pipeline<SyntheticParams> {
  readonly spec = PIPELINE_SPECS.synthetic;
  readonly #capacity: number;
  /** Loaded models, least recently used first. */
  readonly #warm: string[] = [];

  constructor(opts: SyntheticOptions = {}) {
    this.#capacity = Math.max(1, opts.warmModels ?? 1);
  }

  warmModels(): string[] {
    return [...this.#warm];
  }

  // The steps stand for the model on the device. Turning its output into pixels and a PNG is
  // CPU work, done in the finish step while the device already runs the next job.
  async run(_input: PipelineInput | null, params: SyntheticParams, ctx: PipelineContext) {
    const { steps, stepMs, width, height, seed, model, loadMs } = params;
    if (model !== undefined) await this.#load(model, loadMs, ctx);
    for (let i = 1; i <= steps; i++) {
      await sleep(stepMs, ctx.signal);
      await ctx.reportProgress(Math.round((100 * i) / steps), `step ${i}/${steps}`);
    }
    ctx.signal.throwIfAborted();
    return {
      async finish() {
        const pixels = await pattern(width, height, seed, ctx.signal);
        const data = await sharp(pixels, { raw: { width, height, channels: 3 } })
          .png({ compressionLevel: 6, adaptiveFiltering: false })
          .toBuffer();
        return { data, format: 'png' as const, width, height };
      },
    };
  }

  async #load(model: string, loadMs: number, ctx: PipelineContext): Promise<void> {
    const at = this.#warm.indexOf(model);
    if (at >= 0) {
      this.#warm.splice(at, 1);
      this.#warm.push(model);
      ctx.reportModelLoad?.(0);
      return;
    }
    // Unloaded first, as a GPU's memory would require; a load cut short leaves the model unloaded.
    if (this.#warm.length >= this.#capacity) this.#warm.shift();
    const started = Date.now();
    await sleep(loadMs, ctx.signal);
    this.#warm.push(model);
    ctx.reportModelLoad?.(Date.now() - started);
  }
}

/** The pipeline with one model kept loaded. */
export const syntheticPipeline = new SyntheticPipeline();

/** Resolves after `ms` (a timer, so the event loop stays free); rejects with the signal's reason as soon as it aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * RGB pixels from the seed, integer arithmetic only so the bytes never depend on the platform.
 * Yields to the event loop every few rows: a 4096x4096 image takes a while in JS.
 */
async function pattern(width: number, height: number, seed: number, signal: AbortSignal): Promise<Buffer> {
  const rand = mulberry32(seed);
  const next = () => 1 + Math.floor(rand() * 255);
  const [k0, k1, k2, k3, k4, k5, k6] = [next(), next(), next(), next(), next(), next(), next()];
  const gx = Array.from({ length: width }, (_, x) => Math.floor((x * 255) / Math.max(1, width - 1)));
  const buf = Buffer.alloc(width * height * 3);
  const rowsPerSlice = Math.max(1, Math.floor(65536 / width));
  let o = 0;
  for (let y = 0; y < height; y++) {
    if (y % rowsPerSlice === 0 && y > 0) {
      await yieldToEventLoop();
      signal.throwIfAborted();
    }
    const gy = Math.floor((y * 255) / Math.max(1, height - 1));
    for (let x = 0; x < width; x++) {
      const g = gx[x] ?? 0;
      buf[o++] = (g + k0 + (((x >> 4) ^ (y >> 4)) & 1) * k1) & 255;
      buf[o++] = (gy + k2 + ((x * k3 + y * k4) >> 6)) & 255;
      buf[o++] = ((g ^ gy) + k5 + (((x + y) >> 5) & 1) * k6) & 255;
    }
  }
  return buf;
}

/** A small seeded PRNG (the same numbers on every platform); also drives the benchmark's workloads. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { PIPELINE_SPECS, type SyntheticParams } from '@darkroom/contracts';
import sharp from 'sharp';
import type { Pipeline } from './types.ts';

export const syntheticPipeline: Pipeline<SyntheticParams> = {
  spec: PIPELINE_SPECS.synthetic,

  // The steps stand for the model on the device. Turning its output into pixels and a PNG is
  // CPU work, done in the finish step while the device already runs the next job.
  async run(_input, params, ctx) {
    const { steps, stepMs, width, height, seed } = params;
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
  },
};

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

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

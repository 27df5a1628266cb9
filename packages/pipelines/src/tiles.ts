import { setTimeout as sleep } from 'node:timers/promises';
import type { PipelineContext } from './types.ts';

/*
 * Runs an image model over an image in tiles, so memory stays bounded whatever the image size
 * and each synchronous model call stays short: the event loop gets a turn between tiles (a
 * blocked loop cannot renew BullMQ's job locks), and a cancel or timeout is honoured there.
 *
 * Each tile is read with `pad` pixels of context on every side (clipped at the image edges), and
 * only its core is kept: with a pad at least as wide as the model's receptive field, the tiled
 * result is the same as one pass over the whole image, without seams.
 */

/** 8-bit RGB pixels, row-major, 3 bytes a pixel. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface TileOptions {
  /** Output pixels per input pixel along each axis (1 for same-size models). */
  scale: number;
  /** Core tile edge in input pixels. */
  tile: number;
  /** Context pixels read around each tile and thrown away after. */
  pad: number;
  /**
   * A model with a fixed input size: every tile is given exactly this size, the pixels past the
   * image edge repeating the edge (`tile + 2 * pad` must equal it).
   */
  fixedSize?: [width: number, height: number];
  /** Progress reported goes from `progressFrom` to `progressTo` percent. */
  progressFrom?: number;
  progressTo?: number;
}

/**
 * Runs the model on one tile: RGB in (0–255), RGB out in 0–255 space as floats, `scale` times
 * the size. May be synchronous (tfjs-wasm, onnxruntime) or not.
 */
export type TileModel = (tile: RgbImage) => Float32Array | Promise<Float32Array>;

export function tileCount(width: number, height: number, tile: number): number {
  return Math.ceil(width / tile) * Math.ceil(height / tile);
}

export async function runTiled(img: RgbImage, model: TileModel, opts: TileOptions, ctx: PipelineContext): Promise<RgbImage> {
  const { scale, tile, pad } = opts;
  const from = opts.progressFrom ?? 0;
  const to = opts.progressTo ?? 100;
  const outW = img.width * scale;
  const outH = img.height * scale;
  const out = new Uint8Array(outW * outH * 3);
  const cols = Math.ceil(img.width / tile);
  const rows = Math.ceil(img.height / tile);
  const total = cols * rows;
  let done = 0;
  for (let ty = 0; ty < rows; ty++) {
    for (let tx = 0; tx < cols; tx++) {
      ctx.signal.throwIfAborted();
      const x0 = tx * tile;
      const y0 = ty * tile;
      const x1 = Math.min(img.width, x0 + tile);
      const y1 = Math.min(img.height, y0 + tile);
      // The area read: the core plus its context, clipped to the image (or a fixed size).
      let rx0: number;
      let ry0: number;
      let rw: number;
      let rh: number;
      if (opts.fixedSize) {
        [rw, rh] = opts.fixedSize;
        rx0 = x0 - pad;
        ry0 = y0 - pad;
      } else {
        rx0 = Math.max(0, x0 - pad);
        ry0 = Math.max(0, y0 - pad);
        rw = Math.min(img.width, x1 + pad) - rx0;
        rh = Math.min(img.height, y1 + pad) - ry0;
      }
      const input = crop(img, rx0, ry0, rw, rh);
      const result = await model(input);
      if (result.length !== rw * scale * rh * scale * 3) {
        throw new Error(`the model returned ${result.length} values for a ${rw}x${rh} tile; expected ${rw * scale * rh * scale * 3}`);
      }
      // Keep the core: its place in the result is offset by the context read before it.
      const ox = (x0 - rx0) * scale;
      const oy = (y0 - ry0) * scale;
      const cw = (x1 - x0) * scale;
      const ch = (y1 - y0) * scale;
      const rowLen = rw * scale;
      for (let y = 0; y < ch; y++) {
        let src = ((oy + y) * rowLen + ox) * 3;
        let dst = ((y0 * scale + y) * outW + x0 * scale) * 3;
        for (let i = 0; i < cw * 3; i++) out[dst++] = toByte(result[src++]!);
      }
      done++;
      await ctx.reportProgress(from + ((to - from) * done) / total, `tile ${done}/${total}`);
      // A timer, not setImmediate: the loop then runs its due timers (lock renewals) and I/O
      // before the next tile, whichever phase this tile ran in.
      await sleep(0);
    }
  }
  ctx.signal.throwIfAborted();
  return { data: out, width: outW, height: outH };
}

function toByte(v: number): number {
  if (!(v > 0)) return 0; // NaN too
  if (v >= 255) return 255;
  return Math.round(v);
}

/** The pixels of a rectangle; coordinates outside the image repeat the nearest edge pixel. */
export function crop(img: RgbImage, x0: number, y0: number, w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  const inside = x0 >= 0 && y0 >= 0 && x0 + w <= img.width && y0 + h <= img.height;
  let o = 0;
  for (let y = 0; y < h; y++) {
    const sy = Math.min(img.height - 1, Math.max(0, y0 + y));
    if (inside) {
      const start = (sy * img.width + x0) * 3;
      data.set(img.data.subarray(start, start + w * 3), o);
      o += w * 3;
      continue;
    }
    for (let x = 0; x < w; x++) {
      const sx = Math.min(img.width - 1, Math.max(0, x0 + x));
      const s = (sy * img.width + sx) * 3;
      data[o++] = img.data[s]!;
      data[o++] = img.data[s + 1]!;
      data[o++] = img.data[s + 2]!;
    }
  }
  return { data, width: w, height: h };
}

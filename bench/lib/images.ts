import { sharp } from './deps.ts';

/** xorshift32: deterministic and cheap, so the inputs are the same bytes in every run. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** An RGB PNG of noise, which does not compress, so it stays about `bytes` large (~32 KB). */
export async function noisePng(bytes = 32 * 1024): Promise<{ data: Buffer; width: number; height: number }> {
  const side = Math.round(Math.sqrt(bytes / 3));
  const raw = Buffer.alloc(side * side * 3);
  const next = rng(0x5eed);
  for (let i = 0; i < raw.length; i++) raw[i] = next() & 255;
  const data = await sharp(raw, { raw: { width: side, height: side, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
  return { data, width: side, height: side };
}

/**
 * A photo-like JPEG: smooth gradients and soft shapes with fine grain, so it compresses like a
 * camera picture (a few MB at 4096×3072), not like noise or a flat colour.
 */
export async function photoJpeg(width = 4096, height = 3072, quality = 88): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  const next = rng(0xc0ffee);
  const colR = new Float64Array(width);
  const colG = new Float64Array(width);
  const colB = new Float64Array(width);
  for (let x = 0; x < width; x++) {
    const u = x / width;
    colR[x] = 90 + 70 * Math.sin(u * 5.1 + 0.3);
    colG[x] = 80 + 60 * Math.cos(u * 3.7 + 1.1);
    colB[x] = 100 + 50 * Math.sin(u * 7.3 + 2.0);
  }
  let o = 0;
  for (let y = 0; y < height; y++) {
    const v = y / height;
    const rowR = 40 * Math.cos(v * 4.3);
    const rowG = 50 * Math.sin(v * 6.1 + 0.7);
    const rowB = 35 * Math.cos(v * 2.9 + 1.9);
    for (let x = 0; x < width; x++) {
      const n = next();
      const grain = (n & 15) - 8;
      // soft diagonal bands, like light across a scene
      const band = ((x + y * 2) >> 7) & 1 ? 12 : -12;
      raw[o++] = clamp(colR[x]! + rowR + band + grain);
      raw[o++] = clamp(colG[x]! + rowG + band + ((n >> 4) & 15) - 8);
      raw[o++] = clamp(colB[x]! + rowB - band + ((n >> 8) & 15) - 8);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .blur(0.6)
    .jpeg({ quality })
    .toBuffer();
}

function clamp(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v | 0;
}

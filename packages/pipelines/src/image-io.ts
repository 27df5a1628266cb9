import type { OutputFormat } from '@darkroom/contracts';
import { InvalidInputError } from '@darkroom/contracts';
import sharp, { type Sharp } from 'sharp';
import type { RgbImage } from './tiles.ts';
import type { ComputeDone, PipelineContext, PipelineInput, PipelineOutput } from './types.ts';

/*
 * Reading inputs for and writing outputs of the model pipelines: 8-bit RGB (plus the alpha
 * channel kept aside), upright from EXIF orientation and in sRGB, as the edit pipeline reads them.
 */

export interface DecodedImage {
  rgb: RgbImage;
  /** One byte a pixel, or undefined when the input is opaque. */
  alpha: Uint8Array | undefined;
}

export async function decodeInput(input: PipelineInput, maxPixels: number): Promise<DecodedImage> {
  try {
    const { data, info } = await sharp(input.path, { limitInputPixels: maxPixels, failOn: 'truncated' })
      .autoOrient()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const { width, height, channels } = info;
    const n = width * height;
    const rgb = new Uint8Array(n * 3);
    let alpha: Uint8Array | undefined;
    if (channels === 3) rgb.set(data);
    else {
      // Grey (1–2 channels) spreads to three; the last of 2 or 4 channels is alpha.
      const a = channels === 2 || channels === 4 ? new Uint8Array(n) : undefined;
      const g = channels >= 3 ? 1 : 0;
      for (let i = 0; i < n; i++) {
        const s = i * channels;
        rgb[i * 3] = data[s]!;
        rgb[i * 3 + 1] = data[s + g]!;
        rgb[i * 3 + 2] = data[s + 2 * g]!;
        if (a) a[i] = data[s + channels - 1]!;
      }
      alpha = a;
    }
    if (alpha?.every((a) => a === 255)) alpha = undefined;
    return { rgb: { data: rgb, width, height }, alpha };
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    const message = (raw.split('\n')[0] ?? '').split(input.path).join('input').trim();
    throw new InvalidInputError(`cannot process the image: ${message || 'unknown libvips error'}`, { cause: err });
  }
}

/** The format an output is written in: the asked one, else the input's (GIF and TIFF become PNG). */
export function outputFormat(asked: OutputFormat | undefined, input: PipelineInput): OutputFormat {
  if (asked) return asked;
  const f = input.ref.format;
  return f === 'gif' || f === 'tiff' ? 'png' : f;
}

/**
 * Encodes RGB pixels, with an alpha channel scaled to the output size when the input had one
 * (and the format keeps it).
 */
export async function encodeOutput(
  rgb: RgbImage,
  alpha: { data: Uint8Array; width: number; height: number } | undefined,
  format: OutputFormat,
): Promise<PipelineOutput> {
  let img = sharp(rgb.data, { raw: { width: rgb.width, height: rgb.height, channels: 3 } });
  if (alpha && format !== 'jpeg') {
    const scaled =
      alpha.width === rgb.width && alpha.height === rgb.height
        ? Buffer.from(alpha.data.buffer, alpha.data.byteOffset, alpha.data.byteLength)
        : await sharp(alpha.data, { raw: { width: alpha.width, height: alpha.height, channels: 1 } })
            .resize(rgb.width, rgb.height, { fit: 'fill', kernel: 'lanczos3' })
            .raw()
            .toBuffer();
    img = img.joinChannel(scaled, { raw: { width: rgb.width, height: rgb.height, channels: 1 } });
  }
  const encoded = await encodeAs(img, format).toBuffer();
  return { data: encoded, format, width: rgb.width, height: rgb.height };
}

/**
 * The finish step of a model pipeline: encoding the model's output needs no device, so it runs
 * after the worker has handed the device to the next job.
 */
export function encodeLater(
  rgb: RgbImage,
  alpha: { data: Uint8Array; width: number; height: number } | undefined,
  format: OutputFormat,
  ctx: PipelineContext,
): ComputeDone {
  return {
    async finish() {
      try {
        const out = await encodeOutput(rgb, alpha, format);
        ctx.signal.throwIfAborted();
        await ctx.reportProgress(100, 'encoded');
        return out;
      } catch (err) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        throw err;
      }
    },
  };
}

function encodeAs(img: Sharp, format: OutputFormat): Sharp {
  switch (format) {
    case 'jpeg':
      return img.jpeg({ quality: 92 });
    case 'png':
      return img.png({ compressionLevel: 6 });
    case 'webp':
      return img.webp({ quality: 92 });
    case 'avif':
      return img.avif({ quality: 70 });
    case 'gif':
      return img.gif();
    case 'tiff':
      return img.tiff();
  }
}

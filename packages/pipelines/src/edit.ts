import { type EditOperation, type EditParams, type OutputFormat, PIPELINE_SPECS } from '@darkroom/contracts';
import { InvalidInputError } from '@darkroom/core';
import sharp, { type Channels, type Sharp, type SharpOptions } from 'sharp';
import type { Pipeline, PipelineContext, PipelineInput, PipelineOutput } from './types.ts';

/**
 * The image between operations: raw 8-bit pixels, one buffer per frame, all frames the same size.
 * sharp applies its operations in a fixed internal order whatever the call order, so each
 * operation runs as its own sharp step on these raw pixels; only the final step encodes.
 */
interface Pixels {
  frames: Buffer[];
  width: number;
  height: number;
  channels: Channels;
}

interface Animation {
  loop: number;
  delay: number[] | undefined;
}

type ResizeOp = Extract<EditOperation, { op: 'resize' }>;
type FormatOp = Extract<EditOperation, { op: 'format' }>;
const isFormat = (o: EditOperation): o is FormatOp => o.op === 'format';

const ANIMATED_FORMATS: readonly string[] = ['gif', 'webp'];

export const editPipeline: Pipeline<EditParams> = {
  spec: PIPELINE_SPECS.edit,

  async run(input, params, ctx) {
    if (!input) throw new InvalidInputError('the edit pipeline needs an input image');
    try {
      return await edit(input, params, ctx);
    } catch (err) {
      // Whatever failed after a cancel or timeout, the job ended because of the abort.
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw err;
    }
  },
};

async function edit(input: PipelineInput, params: EditParams, ctx: PipelineContext): Promise<PipelineOutput> {
  const ops = params.operations;
  const formatOp = ops.findLast(isFormat);
  const format: OutputFormat = formatOp?.type ?? input.ref.format;
  const limit = ctx.limits.maxImagePixels;
  const open = { limitInputPixels: limit, failOn: 'truncated' } as const;

  const meta = await vips(input, () => sharp(input.path, open).metadata());
  // Animation survives only into a format that keeps it; otherwise the first frame is the image.
  const animated = (meta.pages ?? 1) > 1 && ANIMATED_FORMATS.includes(meta.format) && ANIMATED_FORMATS.includes(format);
  let img = await decode(input, { ...open, animated });
  ctx.signal.throwIfAborted();

  for (const [i, op] of ops.entries()) {
    if (op.op !== 'format') {
      checkOp(op, img, limit, i + 1);
      img = await applyOp(input, img, op, ctx.signal);
      const pixels = img.width * img.height * img.frames.length;
      if (pixels > limit) {
        throw new InvalidInputError(
          `operation ${i + 1} (${op.op}) made a ${img.width}x${img.height} image, over the limit of ${limit} pixels`,
        );
      }
    }
    ctx.signal.throwIfAborted();
    await ctx.reportProgress(Math.round((100 * (i + 1)) / (ops.length + 1)), `operation ${i + 1}/${ops.length}: ${op.op}`);
  }

  const out = await encode(input, img, format, formatOp?.quality, animated ? { loop: meta.loop ?? 0, delay: meta.delay } : undefined);
  ctx.signal.throwIfAborted();
  await ctx.reportProgress(100, 'encoded');
  return out;
}

/** Runs sharp work; whatever libvips throws means the image (or an operation on it) cannot be processed. */
async function vips<T>(input: PipelineInput, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    const message = (raw.split('\n')[0] ?? '').split(input.path).join('input').trim();
    throw new InvalidInputError(`cannot process the image: ${message || 'unknown libvips error'}`, { cause: err });
  }
}

async function decode(input: PipelineInput, options: SharpOptions): Promise<Pixels> {
  const { data, info } = await vips(input, () =>
    sharp(input.path, options).autoOrient().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }),
  );
  const pages = options.animated ? (info.pages ?? 1) : 1;
  const height = pages > 1 ? (info.pageHeight ?? info.height) : info.height;
  const frameBytes = info.width * height * info.channels;
  const frames = Array.from({ length: pages }, (_, p) => data.subarray(p * frameBytes, (p + 1) * frameBytes));
  return { frames, width: info.width, height, channels: info.channels };
}

function fromRaw(img: Pixels, frame: Buffer): Sharp {
  return sharp(frame, { raw: { width: img.width, height: img.height, channels: img.channels } });
}

/** Rejects, before any pixel work, an operation that cannot fit the current image. */
function checkOp(op: EditOperation, img: Pixels, limit: number, n: number): void {
  if (op.op === 'crop' && (op.left + op.width > img.width || op.top + op.height > img.height)) {
    throw new InvalidInputError(
      `operation ${n} (crop): the area ${op.width}x${op.height} at (${op.left}, ${op.top}) is outside the ${img.width}x${img.height} image`,
    );
  }
  if (op.op === 'resize') {
    const [w, h] = resizedSize(img.width, img.height, op);
    if (w * h * img.frames.length > limit) {
      throw new InvalidInputError(`operation ${n} (resize) would make a ${w}x${h} image, over the limit of ${limit} pixels`);
    }
  }
}

/** Approximately the size sharp's resize produces; only used to refuse a huge result before making it. */
function resizedSize(w: number, h: number, op: ResizeOp): [number, number] {
  const { width: W, height: H, fit = 'cover' } = op;
  if (W !== undefined && H !== undefined) {
    if (fit !== 'inside' && fit !== 'outside') return [W, H];
    const s = fit === 'inside' ? Math.min(W / w, H / h) : Math.max(W / w, H / h);
    return [Math.max(1, Math.round(w * s)), Math.max(1, Math.round(h * s))];
  }
  if (W !== undefined) return [W, Math.max(1, Math.round((h * W) / w))];
  const height = H ?? h;
  return [Math.max(1, Math.round((w * height) / h)), height];
}

async function applyOp(input: PipelineInput, img: Pixels, op: EditOperation, signal: AbortSignal): Promise<Pixels> {
  const frames: Buffer[] = [];
  let next: Pixels | undefined;
  for (const frame of img.frames) {
    signal.throwIfAborted();
    const { data, info } = await vips(input, () => step(fromRaw(img, frame), op, img.channels).raw().toBuffer({ resolveWithObject: true }));
    frames.push(data);
    next ??= { frames, width: info.width, height: info.height, channels: info.channels };
  }
  if (!next) throw new InvalidInputError('the image has no frames');
  return next;
}

function step(s: Sharp, op: EditOperation, channels: number): Sharp {
  switch (op.op) {
    case 'resize':
      return s.resize({ width: op.width, height: op.height, fit: op.fit ?? 'cover' });
    case 'crop':
      return s.extract({ left: op.left, top: op.top, width: op.width, height: op.height });
    case 'rotate': {
      // A see-through background only shows if the image has an alpha channel to carry it.
      const needsAlpha = op.background !== undefined && isTranslucent(op.background) && channels % 2 === 1;
      return (needsAlpha ? s.ensureAlpha() : s).rotate(op.angle, op.background ? { background: op.background } : {});
    }
    case 'flip':
      return s.flip();
    case 'flop':
      return s.flop();
    case 'blur':
      return s.blur(op.sigma);
    case 'sharpen':
      return op.sigma === undefined ? s.sharpen() : s.sharpen({ sigma: op.sigma });
    case 'grayscale':
      return s.greyscale();
    case 'modulate':
      return s.modulate({ brightness: op.brightness, saturation: op.saturation, hue: op.hue });
    case 'tint':
      return s.tint(op.color);
    case 'format':
      return s;
  }
}

function isTranslucent(color: string): boolean {
  if (color === 'transparent') return true;
  if (color.length === 5) return !color.endsWith('f') && !color.endsWith('F');
  if (color.length === 9) return color.slice(7).toLowerCase() !== 'ff';
  return false;
}

async function encode(
  input: PipelineInput,
  img: Pixels,
  format: OutputFormat,
  quality: number | undefined,
  animation: Animation | undefined,
): Promise<PipelineOutput> {
  const pages = animation ? img.frames.length : 1;
  const first = img.frames[0];
  if (!first) throw new InvalidInputError('the image has no frames');
  const raw = pages > 1 ? Buffer.concat(img.frames) : first;
  const { data, info } = await vips(input, () => {
    let s = sharp(raw, {
      raw: { width: img.width, height: img.height * pages, channels: img.channels, ...(pages > 1 ? { pageHeight: img.height } : {}) },
    });
    const anim = animation && pages > 1 ? { loop: animation.loop, delay: animation.delay } : {};
    switch (format) {
      case 'jpeg':
        // JPEG has no alpha: flatten onto white rather than let transparent pixels turn black.
        if (img.channels % 2 === 0) s = s.flatten({ background: '#ffffff' });
        s = s.jpeg({ quality: quality ?? 80 });
        break;
      case 'png':
        // Quality is ignored for PNG: in sharp it would switch to a lossy palette.
        s = s.png();
        break;
      case 'webp':
        s = s.webp({ quality: quality ?? 80, ...anim });
        break;
      case 'avif':
        s = s.avif({ quality: quality ?? 50 });
        break;
      case 'gif':
        s = s.gif(anim);
        break;
      case 'tiff':
        s = s.tiff();
        break;
    }
    // Raw intermediates carry no EXIF/GPS/ICC, and without keepMetadata sharp writes none.
    return s.toBuffer({ resolveWithObject: true });
  });
  return { data, format, width: info.width, height: pages > 1 ? img.height : info.height };
}

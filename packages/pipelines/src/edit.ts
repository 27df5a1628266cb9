import { type EditOperation, type EditParams, InvalidInputError, type OutputFormat, PIPELINE_SPECS } from '@darkroom/contracts';
import sharp, { type Channels, type Metadata, type Sharp, type SharpOptions } from 'sharp';
import type { Pipeline, PipelineContext, PipelineInput, PipelineOutput } from './types.ts';

/**
 * The image between operations: raw 8-bit pixels, one buffer per frame, all frames the same size.
 * sharp applies its operations in a fixed internal order whatever the call order, so each
 * operation runs as its own sharp step on these raw pixels; only the final step encodes. The
 * exception is a leading resize, which sharp places right after the (EXIF) orientation as the
 * operations ask: it runs inside the decode, and with no other pixel operation the whole job is
 * one libvips pass from file to encoded bytes, as sharp used directly would do it.
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

  // The header is read only when the job's input record cannot answer: its page count, or an
  // animation's loop and delays, or the upright size where the stored one leaves a doubt.
  const mayAnimate = ANIMATED_FORMATS.includes(input.ref.format) && ANIMATED_FORMATS.includes(format);
  let meta: Metadata | undefined;
  const header = async () => (meta ??= await vips(input, () => sharp(input.path, open).metadata()));
  if (input.ref.pages === undefined || (mayAnimate && input.ref.pages > 1)) await header();
  // Animation survives only into a format that keeps it; otherwise the first frame is the image.
  const animated = meta
    ? (meta.pages ?? 1) > 1 && ANIMATED_FORMATS.includes(meta.format) && ANIMATED_FORMATS.includes(format)
    : mayAnimate && (input.ref.pages ?? 1) > 1;

  // A resize before any other pixel operation runs inside the decode, where libvips can shrink
  // a JPEG or WebP while loading it; with nothing after it, decode, resize and encode are one pass.
  const firstPixelOp = ops.findIndex((o) => o.op !== 'format');
  const leadOp = firstPixelOp >= 0 ? ops[firstPixelOp] : undefined;
  const lead = !animated && leadOp?.op === 'resize' ? leadOp : undefined;
  if (lead) checkOp(lead, await uprightSize(input, lead, limit, header), 1, limit, firstPixelOp + 1);
  const rest = ops.slice(lead ? firstPixelOp + 1 : 0);
  if (!animated && rest.every(isFormat)) {
    ctx.signal.throwIfAborted();
    const out = await vips(input, () =>
      encode(sharp(input.path, open).autoOrient(), lead, format, formatOp?.quality, { alpha: 'maybe' }).toBuffer({
        resolveWithObject: true,
      }),
    );
    const made = { data: out.data, format, width: out.info.width, height: out.info.height };
    if (lead) overLimit(made, 1, limit, lead, firstPixelOp + 1);
    ctx.signal.throwIfAborted();
    await ctx.reportProgress(100, 'encoded');
    return made;
  }

  let img = await decode(input, { ...open, animated }, lead);
  ctx.signal.throwIfAborted();
  if (lead) {
    overLimit(img, img.frames.length, limit, lead, firstPixelOp + 1);
    await ctx.reportProgress(
      Math.round((100 * (firstPixelOp + 1)) / (ops.length + 1)),
      `operation ${firstPixelOp + 1}/${ops.length}: resize`,
    );
  }
  const first = lead ? firstPixelOp + 1 : 0;
  for (const [j, op] of rest.entries()) {
    const i = first + j;
    if (op.op !== 'format') {
      checkOp(op, img, img.frames.length, limit, i + 1);
      img = await applyOp(input, img, op, ctx.signal);
      overLimit(img, img.frames.length, limit, op, i + 1);
    }
    ctx.signal.throwIfAborted();
    await ctx.reportProgress(Math.round((100 * (i + 1)) / (ops.length + 1)), `operation ${i + 1}/${ops.length}: ${op.op}`);
  }

  const m = animated ? await header() : undefined;
  const out = await encodeRaw(input, img, format, formatOp?.quality, m ? { loop: m.loop ?? 0, delay: m.delay } : undefined);
  ctx.signal.throwIfAborted();
  await ctx.reportProgress(100, 'encoded');
  return out;
}

function overLimit(img: { width: number; height: number }, frames: number, limit: number, op: EditOperation, n: number): void {
  if (img.width * img.height * frames > limit) {
    throw new InvalidInputError(`operation ${n} (${op.op}) made a ${img.width}x${img.height} image, over the limit of ${limit} pixels`);
  }
}

/**
 * The input's size once turned upright. The stored size is as the file says, before EXIF
 * orientation: when a resize of it fits the limit either way round, that is enough to know;
 * otherwise the header says which way round it is.
 */
async function uprightSize(
  input: PipelineInput,
  op: ResizeOp,
  limit: number,
  header: () => Promise<Metadata>,
): Promise<{ width: number; height: number }> {
  const { width, height } = input.ref;
  if (width && height) {
    const fits = (w: number, h: number) => {
      const [a, b] = resizedSize(w, h, op);
      return a * b <= limit;
    };
    if (fits(width, height) && fits(height, width)) return { width, height };
  }
  const m = await header();
  return { width: m.autoOrient?.width ?? m.width ?? 0, height: m.autoOrient?.height ?? m.height ?? 0 };
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

async function decode(input: PipelineInput, options: SharpOptions, resize: ResizeOp | undefined): Promise<Pixels> {
  const { data, info } = await vips(input, () => {
    const s = sharp(input.path, options).autoOrient();
    return (resize ? step(s, resize, 0) : s).toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  });
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
function checkOp(op: EditOperation, img: { width: number; height: number }, frames: number, limit: number, n: number): void {
  if (op.op === 'crop' && (op.left + op.width > img.width || op.top + op.height > img.height)) {
    throw new InvalidInputError(
      `operation ${n} (crop): the area ${op.width}x${op.height} at (${op.left}, ${op.top}) is outside the ${img.width}x${img.height} image`,
    );
  }
  if (op.op === 'resize') {
    const [w, h] = resizedSize(img.width, img.height, op);
    if (w * h * frames > limit) {
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
    case 'modulate': {
      // sharp refuses a key that is present but undefined, and every argument is optional: pass
      // only the ones given, and none at all is a no-op.
      const { op: _, ...given } = op;
      return Object.keys(given).length === 0 ? s : s.modulate(given);
    }
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

/**
 * Sets the output format on a pipeline (its last resize, if any, first), in sRGB. Nothing asks
 * for metadata, so sharp writes no EXIF/GPS/ICC.
 */
function encode(
  s: Sharp,
  resize: ResizeOp | undefined,
  format: OutputFormat,
  quality: number | undefined,
  opts: { alpha: boolean | 'maybe'; animation?: { loop: number; delay: number[] | undefined } },
): Sharp {
  let out = (resize ? step(s, resize, 0) : s).toColourspace('srgb');
  const anim = opts.animation ?? {};
  switch (format) {
    case 'jpeg':
      // JPEG has no alpha: flatten onto white rather than let transparent pixels turn black.
      if (opts.alpha) out = out.flatten({ background: '#ffffff' });
      return out.jpeg({ quality: quality ?? 80 });
    case 'png':
      // Quality is ignored for PNG: in sharp it would switch to a lossy palette.
      return out.png();
    case 'webp':
      return out.webp({ quality: quality ?? 80, ...anim });
    case 'avif':
      return out.avif({ quality: quality ?? 50 });
    case 'gif':
      return out.gif(anim);
    case 'tiff':
      return out.tiff();
  }
}

async function encodeRaw(
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
    const s = sharp(raw, {
      raw: { width: img.width, height: img.height * pages, channels: img.channels, ...(pages > 1 ? { pageHeight: img.height } : {}) },
    });
    const anim = animation && pages > 1 ? { loop: animation.loop, delay: animation.delay } : undefined;
    return encode(s, undefined, format, quality, { alpha: img.channels % 2 === 0, ...(anim ? { animation: anim } : {}) }).toBuffer({
      resolveWithObject: true,
    });
  });
  return { data, format, width: info.width, height: pages > 1 ? img.height : info.height };
}

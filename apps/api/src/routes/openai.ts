import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { type FieldError, type JobStatusBody, pipelineSpec } from '@darkroom/contracts';
import {
  FINAL_STATUSES,
  InvalidSubmit,
  idempotencyKeyOf,
  NoResult,
  type RawSubmit,
  ResultNotReady,
  UnknownPipeline,
  validateSubmit,
} from '@darkroom/jobs';
import express from 'express';
import sharp from 'sharp';
import { z } from 'zod';
import { HttpError } from '../http/problem.ts';
import { parseMultipart, type Spool, tooLarge } from '../submit/parse.ts';
import { plainJsonBody } from './jobs.ts';
import type { Call, Handler, RouteContext } from './route.ts';

/*
 * The OpenAI Images API (`/v1/images/generations`, `/v1/images/edits`) served by the queue: the
 * model names a pipeline, each image is one ordinary job submitted as `POST /v1/jobs` would (the
 * station's limits, default priority and Idempotency-Key), held until final, and answered in
 * OpenAI's body. Errors are written in OpenAI's shape by the HTTP layer (the route's `errorShape`).
 */

/**
 * A mask is taken by models that map to the comfyui inpaint workflow, which reads the area to
 * repaint from the image's alpha: the mask's alpha (transparent = edit here, as OpenAI defines
 * it) becomes the image's.
 */
const MASK_REFUSED = 'this model takes no mask; a mask needs a model that maps to the comfyui inpaint workflow';

/** How long a request holds for its jobs to become final. */
const HOLD_MS = 5 * 60_000;
const MAX_N = 10;

interface ImagesRequest {
  model: unknown;
  prompt?: unknown;
  n?: unknown;
  size?: unknown;
  response_format?: unknown;
  output_format?: unknown;
}

const invalid = (message: string, path: string) => new InvalidSubmit(message, [{ path, message }]);

const ModelAliases = z.record(
  z.string().min(1),
  z.strictObject({
    pipeline: z.string().refine((p) => pipelineSpec(p) !== undefined, 'not a pipeline'),
    params: z.record(z.string(), z.unknown()).optional(),
  }),
);
type ModelAliases = z.infer<typeof ModelAliases>;

const aliasesByFile = new Map<string, ModelAliases>();

/** The operator's model names (DARKROOM_OPENAI_MODELS), read once when the app starts; throws on any mistake. */
function modelAliases(file: string | undefined): ModelAliases {
  if (!file) return {};
  let aliases = aliasesByFile.get(file);
  if (aliases) return aliases;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`DARKROOM_OPENAI_MODELS: cannot read ${file}: ${(err as Error).message}`);
  }
  const parsed = ModelAliases.safeParse(raw);
  if (!parsed.success)
    throw new Error(`DARKROOM_OPENAI_MODELS: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  aliases = parsed.data;
  aliasesByFile.set(file, aliases);
  return aliases;
}

/** The pipeline a model names (an operator's alias first, then a pipeline name), checked against what the route serves. */
function pipelineOf(model: unknown, wantsImage: boolean, aliases: ModelAliases): { pipeline: string; base: Record<string, unknown> } {
  if (typeof model !== 'string' || model === '') throw invalid('model is required: the name of a pipeline', 'model');
  const alias = Object.hasOwn(aliases, model) ? aliases[model] : undefined;
  const pipeline = alias?.pipeline ?? model;
  const spec = pipelineSpec(pipeline);
  if (!spec) throw new UnknownPipeline(model);
  const imageOptional = 'imageOptional' in spec && spec.imageOptional === true;
  if (wantsImage && !spec.acceptsImage) throw invalid(`model ${model} takes no image; use /v1/images/generations`, 'model');
  if (!wantsImage && spec.acceptsImage && !imageOptional) throw invalid(`model ${model} needs an image; use /v1/images/edits`, 'model');
  return { pipeline, base: { ...alias?.params } };
}

/** The pipeline's params from the OpenAI fields, for the keys its params have. */
function paramsOf({ pipeline, base }: { pipeline: string; base: Record<string, unknown> }, body: ImagesRequest): Record<string, unknown> {
  const shape = (pipelineSpec(pipeline)!.params as unknown as { shape?: Record<string, unknown> }).shape ?? {};
  const params: Record<string, unknown> = { ...base };
  if (typeof body.prompt === 'string' && body.prompt !== '' && 'prompt' in shape) params.prompt = body.prompt;
  if (body.size !== undefined && body.size !== null && body.size !== 'auto') {
    const m = typeof body.size === 'string' ? /^(\d{1,5})x(\d{1,5})$/.exec(body.size) : null;
    if (!m) throw invalid('size must be WxH, e.g. 1024x1024, or auto', 'size');
    if ('width' in shape) params.width = Number(m[1]);
    if ('height' in shape) params.height = Number(m[2]);
  }
  if (body.output_format !== undefined && body.output_format !== null) {
    if (!['png', 'jpeg', 'webp'].includes(String(body.output_format)))
      throw invalid('output_format must be png, jpeg or webp', 'output_format');
    if ('format' in shape) params.format = body.output_format;
  }
  return params;
}

function countOf(n: unknown): number {
  if (n === undefined || n === null || n === '') return 1;
  const v = typeof n === 'string' && /^\d+$/.test(n) ? Number(n) : n;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_N) throw invalid(`n must be an integer from 1 to ${MAX_N}`, 'n');
  return v;
}

function responseFormatOf(v: unknown): 'b64_json' | 'url' {
  if (v === undefined || v === null || v === '') return 'b64_json';
  if (v === 'b64_json' || v === 'url') return v;
  throw invalid('response_format must be b64_json or url', 'response_format');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Submits `n` jobs, holds until they are final and answers their images. */
async function run(ctx: RouteContext, call: Call, raw: RawSubmit, body: ImagesRequest): Promise<{ created: number; data: unknown[] }> {
  const { deps, jobs, metrics } = ctx;
  const station = call.station!;
  const { req } = call;
  const n = countOf(body.n);
  const format = responseFormatOf(body.response_format);
  const key = idempotencyKeyOf(req.headers['idempotency-key']);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const valid = validateSubmit({ ...raw, errors: [...raw.errors] }, station, { webhookSecretAvailable: false });
    const idempotencyKey = key === undefined ? undefined : idempotencyKeyOf(i === 0 ? key : `${key}.${i}`);
    const submitted = await jobs.submit(valid, station, {
      ...(req.id ? { requestId: String(req.id) } : {}),
      ...(idempotencyKey ? { idempotencyKey } : {}),
    });
    if (!submitted.deduplicated) metrics.submitted.inc({ pipeline: valid.spec.name, priority: valid.priority });
    ids.push(submitted.body.id);
  }
  const finals: JobStatusBody[] = await Promise.all(
    ids.map(async (id) => {
      const body = await jobs.waitForFinal(id, { station }, HOLD_MS, call.closed());
      if (!body || !FINAL_STATUSES.has(body.status)) throw new ResultNotReady(`job ${id} is not final yet; GET /v1/jobs/${id} follows it`);
      return body;
    }),
  );
  const origin = `http://${req.headers.host ?? 'localhost'}`;
  const data = [];
  for (const job of finals) {
    if (job.status !== 'completed') {
      const why = (job as { error?: { message?: string } }).error?.message;
      throw new NoResult(`job ${job.id} ${job.status}${why ? `: ${why}` : ''}`);
    }
    if (format === 'url') {
      data.push({ url: new URL(job.links.result ?? `/v1/jobs/${job.id}/result`, origin).href });
      continue;
    }
    const loaded = await jobs.load(job.id, { station });
    if (!loaded) throw new NoResult(`job ${job.id} is gone`);
    const result = await jobs.result(loaded);
    const read = await deps.blobs.openRead(result.key);
    data.push({ b64_json: (await readAll(read.body)).toString('base64') });
  }
  return { created: Math.floor(Date.now() / 1000), data };
}

/** POST /v1/images/generations. */
export function imageGenerations(ctx: RouteContext): Handler {
  const aliases = modelAliases(ctx.deps.config.openaiModelsFile);
  const limit = 1024 * 1024;
  const json = express.json({ limit, type: () => true });
  const readJson = (req: IncomingMessage): Promise<unknown> =>
    plainJsonBody(req, limit) ??
    new Promise((resolve, reject) =>
      json(req as express.Request, undefined as unknown as express.Response, (err?: unknown) =>
        err ? reject(err) : resolve((req as express.Request).body),
      ),
    );
  return async (call) => {
    if (!/^application\/([a-z.+-]+\+)?json/i.test(call.req.headers['content-type'] ?? '')) {
      throw new HttpError('unsupported_media_type', 'send application/json');
    }
    const parsed = await readJson(call.req);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('the body must be a JSON object', 'body');
    const body = parsed as ImagesRequest;
    const target = pipelineOf(body.model, false, aliases);
    const raw: RawSubmit = { pipeline: target.pipeline, params: paramsOf(target, body), errors: [] };
    return { status: 200, json: await run(ctx, call, raw, body) };
  };
}

/** POST /v1/images/edits. */
export function imageEdits(ctx: RouteContext): Handler {
  const { deps } = ctx;
  const aliases = modelAliases(deps.config.openaiModelsFile);
  const maxUpload = deps.config.limits.maxUploadBytes;
  const spool: Spool = {
    memoryBytes: deps.config.limits.uploadMemoryBytes,
    open: () => deps.blobs.stage('upload'),
    discard: (p) => deps.blobs.discard(p),
  };
  return async (call) => {
    const { req } = call;
    if (!/^multipart\/form-data/i.test(req.headers['content-type'] ?? '')) {
      throw new HttpError('unsupported_media_type', 'send multipart/form-data with the image as a file part "image"');
    }
    if (Number(req.headers['content-length'] ?? 0) > maxUpload + 512 * 1024) throw tooLarge(maxUpload);
    const fields: Record<string, string> = {};
    const files: Record<string, Buffer> = {};
    let raw = await parseMultipart(req, maxUpload, spool, { imageParts: ['image', 'image[]'], fields, otherParts: ['mask'], files });
    const upload = raw.image;
    try {
      const body: ImagesRequest = { ...fields, model: fields.model };
      if (!raw.image) throw new InvalidSubmit('the request is invalid', [{ path: 'image', message: 'required: the image as a file part' }]);
      const target = pipelineOf(body.model, true, aliases);
      if (files.mask) {
        if (target.pipeline !== 'comfyui' || target.base.workflow !== 'inpaint') throw invalid(MASK_REFUSED, 'mask');
        const sent = raw.image;
        const image = Buffer.isBuffer(sent) ? sent : await fs.readFile(sent.path);
        const { imageSha256: _, ...rest } = raw;
        raw = { ...rest, image: await withMask(image, files.mask, deps.config.limits.maxImagePixels) };
      }
      // Each job takes its own copy of a spooled upload; several jobs share one held in memory.
      if (countOf(body.n) > 1 && raw.image && !Buffer.isBuffer(raw.image)) raw = { ...raw, image: await fs.readFile(raw.image.path) };
      const errors: FieldError[] = [...raw.errors];
      return {
        status: 200,
        json: await run(ctx, call, { ...raw, pipeline: target.pipeline, params: paramsOf(target, body), errors }, body),
      };
    } finally {
      // A queued job's spooled image was moved into place; any other answer leaves no file or object behind.
      if (upload && !Buffer.isBuffer(upload)) await deps.blobs.discard(upload.path).catch(() => {});
    }
  };
}

/** The image with the mask's alpha as its own (a PNG): where the mask is transparent is what the inpaint workflow repaints. */
async function withMask(image: Buffer, mask: Buffer, maxPixels: number): Promise<Buffer> {
  const read = (b: Buffer, param: 'image' | 'mask') =>
    sharp(b, { limitInputPixels: maxPixels })
      .autoOrient()
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true })
      .catch(() => {
        throw invalid(`${param} is not a readable image`, param);
      });
  const [img, m] = [await read(image, 'image'), await read(mask, 'mask')];
  if (img.info.width !== m.info.width || img.info.height !== m.info.height) {
    throw invalid(`mask must have the image's size (${img.info.width}x${img.info.height}), not ${m.info.width}x${m.info.height}`, 'mask');
  }
  const n = img.info.width * img.info.height;
  for (let i = 0; i < n; i++) img.data[i * 4 + 3] = m.data[i * 4 + 3]!;
  return sharp(img.data, { raw: { width: img.info.width, height: img.info.height, channels: 4 } })
    .png()
    .toBuffer();
}

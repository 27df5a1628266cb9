import { z } from 'zod';

/*
 * The catalogue of pipelines: per pipeline its params schema, whether it takes an image, and
 * its execution defaults. The API validates submits with it and the worker parses params with
 * it, so both sides agree on one definition. JSON Schema for `GET /v1/pipelines` is generated
 * from these schemas.
 */

const HEX_COLOR = /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$/;
const NAMED_COLORS = ['black', 'white', 'transparent', 'red', 'green', 'blue', 'gray', 'grey'] as const;
export const Color = z
  .string()
  .refine((s) => HEX_COLOR.test(s) || (NAMED_COLORS as readonly string[]).includes(s), {
    message: `must be a hex colour (#rgb, #rrggbb, #rrggbbaa) or one of ${NAMED_COLORS.join(', ')}`,
  })
  .meta({ description: 'Hex colour (#rgb, #rgba, #rrggbb, #rrggbbaa) or black, white, transparent, red, green, blue, gray' });

/** Largest output edge an edit may ask for; the input limits are separate (config). */
export const MAX_OUTPUT_EDGE = 16384;
const Edge = z.int().min(1).max(MAX_OUTPUT_EDGE);

export const ResizeOp = z
  .strictObject({
    op: z.literal('resize'),
    width: Edge.optional(),
    height: Edge.optional(),
    fit: z.enum(['cover', 'contain', 'fill', 'inside', 'outside']).optional(),
  })
  .refine((o) => o.width !== undefined || o.height !== undefined, {
    message: 'resize needs width, height or both',
    path: ['width'],
  });

export const CropOp = z.strictObject({
  op: z.literal('crop'),
  left: z.int().min(0).max(MAX_OUTPUT_EDGE),
  top: z.int().min(0).max(MAX_OUTPUT_EDGE),
  width: Edge,
  height: Edge,
});

export const RotateOp = z.strictObject({
  op: z.literal('rotate'),
  angle: z.number().min(-360).max(360),
  background: Color.optional(),
});

export const FlipOp = z.strictObject({ op: z.literal('flip') });
export const FlopOp = z.strictObject({ op: z.literal('flop') });
export const BlurOp = z.strictObject({ op: z.literal('blur'), sigma: z.number().min(0.3).max(1000) });
export const SharpenOp = z.strictObject({
  op: z.literal('sharpen'),
  sigma: z.number().min(0.000001).max(10).optional(),
});
export const GrayscaleOp = z.strictObject({ op: z.literal('grayscale') });
export const ModulateOp = z.strictObject({
  op: z.literal('modulate'),
  brightness: z.number().min(0).max(10).optional(),
  saturation: z.number().min(0).max(10).optional(),
  hue: z.int().min(-360).max(360).optional(),
});
export const TintOp = z.strictObject({ op: z.literal('tint'), color: Color });
export const FormatOp = z.strictObject({
  op: z.literal('format'),
  type: z.enum(['jpeg', 'png', 'webp', 'avif']),
  quality: z.int().min(1).max(100).optional(),
});

export const EditOperation = z.discriminatedUnion('op', [
  ResizeOp,
  CropOp,
  RotateOp,
  FlipOp,
  FlopOp,
  BlurOp,
  SharpenOp,
  GrayscaleOp,
  ModulateOp,
  TintOp,
  FormatOp,
]);
export type EditOperation = z.infer<typeof EditOperation>;

export const EditParams = z.strictObject({
  operations: z.array(EditOperation).max(32),
});
export type EditParams = z.infer<typeof EditParams>;

export const SyntheticParams = z.strictObject({
  steps: z.int().min(1).max(1000).default(10),
  stepMs: z.int().min(0).max(60000).default(100),
  width: z.int().min(1).max(4096).default(256),
  height: z.int().min(1).max(4096).default(256),
  seed: z
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(0),
  /** The model the job "needs": a worker pays `loadMs` the first time it runs it, and again after switching away. */
  model: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, . _ - only, at most 64')
    .optional(),
  loadMs: z.int().min(0).max(600_000).default(0),
});
export type SyntheticParams = z.infer<typeof SyntheticParams>;

/** Formats a model pipeline may write; without one the output keeps the input's format (a GIF becomes PNG). */
export const ModelOutputFormat = z.enum(['jpeg', 'png', 'webp', 'avif']);

export const UpscaleParams = z.strictObject({
  format: ModelOutputFormat.optional(),
});
export type UpscaleParams = z.infer<typeof UpscaleParams>;

/** The ComfyUI workflow templates kept in the repository (packages/pipelines/workflows/<name>.json). */
export const COMFYUI_WORKFLOWS = ['txt2img', 'img2img', 'inpaint', 'edit', 'qwen-edit', 'flux-txt2img'] as const;
export const ComfyuiWorkflow = z.enum(COMFYUI_WORKFLOWS);
export type ComfyuiWorkflow = z.infer<typeof ComfyuiWorkflow>;
/** Longest prompt text a station may send (docs/contract.md limits). */
export const MAX_PROMPT_CHARS = 2000;
const ComfyEdge = z.int().min(64).max(4096).multipleOf(8);

export const ComfyuiParams = z.strictObject({
  workflow: ComfyuiWorkflow.meta({
    description:
      'Workflow template: txt2img (no image needed), img2img (the image), inpaint (repaints where the image is transparent), edit (instruction edit of the image; the same as qwen-edit), qwen-edit (instruction edit with Qwen-Image-Edit), flux-txt2img (text to image with FLUX.1 [dev], no image needed; cfg is its guidance, and it takes no negative prompt).',
  }),
  prompt: z.string().max(MAX_PROMPT_CHARS).optional(),
  negativePrompt: z.string().max(MAX_PROMPT_CHARS).optional(),
  seed: z
    .int()
    .min(0)
    .max(2 ** 48)
    .optional()
    .meta({ description: 'Sampler seed; random when absent.' }),
  steps: z.int().min(1).max(150).optional(),
  cfg: z.number().min(0).max(30).optional(),
  width: ComfyEdge.optional().meta({ description: 'Output width (txt2img, flux-txt2img), a multiple of 8.' }),
  height: ComfyEdge.optional().meta({ description: 'Output height (txt2img, flux-txt2img), a multiple of 8.' }),
  denoise: z.number().min(0).max(1).optional(),
});
export type ComfyuiParams = z.infer<typeof ComfyuiParams>;

/** A model's name as the onnx pipeline reads it from the model directory: the name of its folder. */
export const ONNX_MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const OnnxParams = z.strictObject({
  model: z.string().regex(ONNX_MODEL_NAME, 'must be a model name: letters, digits, _ . -').meta({
    description: "A model from the worker's model directory; the workers list theirs in GET /v1/queue.",
  }),
  format: ModelOutputFormat.optional(),
});
export type OnnxParams = z.infer<typeof OnnxParams>;

export interface PipelineSpec<S extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  acceptsImage: boolean;
  /**
   * With acceptsImage: the image may also be left out (the params decide whether one is needed,
   * e.g. comfyui's txt2img). The pipeline refuses a missing image its params need.
   */
  imageOptional?: boolean;
  params: S;
  /** Attempts in all, the first included, for errors a retry may fix. */
  attempts: number;
  /**
   * The model a job needs, from its parsed params: what a worker must have loaded to run it
   * without a model load. Undefined: the job needs none (any worker is as warm as another).
   */
  modelOf?(params: z.infer<S>): string | undefined;
}

/** The model pipelines (in PIPELINE_SPECS below). */
export const UPSCALE_SPEC = {
  name: 'upscale',
  description:
    'ESRGAN super-resolution ×2 (the weights @upscalerjs/default-model ships), run in the worker with tfjs; large images are tiled. Output keeps the input format unless `format` says otherwise.',
  acceptsImage: true,
  params: UpscaleParams,
  attempts: 3,
  modelOf: () => 'esrgan',
} as const satisfies PipelineSpec<typeof UpscaleParams>;

export const COMFYUI_SPEC = {
  name: 'comfyui',
  description:
    "Diffusion and instruction edits run by a ComfyUI server beside the GPU worker, from workflow templates with named slots (image, mask, prompt, negative prompt, seed, steps, cfg, size, denoise). inpaint repaints the input image's transparent area.",
  acceptsImage: true,
  imageOptional: true,
  params: ComfyuiParams,
  attempts: 3,
  // The template names the checkpoint; its name stands for the models it loads.
  modelOf: (p: z.infer<typeof ComfyuiParams>) => p.workflow,
} as const satisfies PipelineSpec<typeof ComfyuiParams>;

export const ONNX_SPEC = {
  name: 'onnx',
  description:
    "Any image-to-image ONNX model from the worker's model directory, run by onnxruntime on the GPU (CUDA) when there is one, else on the CPU.",
  acceptsImage: true,
  params: OnnxParams,
  attempts: 3,
  modelOf: (p: z.infer<typeof OnnxParams>) => p.model,
} as const satisfies PipelineSpec<typeof OnnxParams>;

export const PIPELINE_SPECS = {
  edit: {
    name: 'edit',
    description:
      'Image edits run by libvips: a list of operations applied in order to the upright, sRGB input; output without EXIF/GPS metadata.',
    acceptsImage: true,
    params: EditParams,
    attempts: 3,
  },
  synthetic: {
    name: 'synthetic',
    description:
      'A stand-in for a GPU model, for load tests and demos: holds the worker for steps × stepMs, reports progress after each step, writes a deterministic PNG. Takes no image.',
    acceptsImage: false,
    params: SyntheticParams,
    attempts: 3,
    modelOf: (p: SyntheticParams) => p.model,
  },
  upscale: UPSCALE_SPEC,
  comfyui: COMFYUI_SPEC,
  onnx: ONNX_SPEC,
} as const satisfies Record<string, PipelineSpec>;

export type PipelineName = keyof typeof PIPELINE_SPECS;
export const PIPELINE_NAMES = Object.keys(PIPELINE_SPECS) as PipelineName[];

export function pipelineSpec(name: string): PipelineSpec | undefined {
  return Object.hasOwn(PIPELINE_SPECS, name) ? PIPELINE_SPECS[name as PipelineName] : undefined;
}

/** JSON Schema of a pipeline's params as stations write them (input side: defaults optional). */
export function paramsJsonSchema(spec: PipelineSpec): unknown {
  const schema = z.toJSONSchema(spec.params, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  return schema;
}

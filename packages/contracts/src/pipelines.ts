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
  operations: z.array(EditOperation).max(32).default([]),
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
});
export type SyntheticParams = z.infer<typeof SyntheticParams>;

export interface PipelineSpec<S extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  acceptsImage: boolean;
  params: S;
  /** Attempts in all, the first included, for errors a retry may fix. */
  attempts: number;
}

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
  },
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

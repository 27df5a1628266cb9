import {
  Color,
  ComfyuiParams,
  EditParams,
  MAX_OUTPUT_EDGE,
  MAX_PROMPT_CHARS,
  OnnxParams,
  PIPELINE_NAMES,
  PIPELINE_SPECS,
  paramsJsonSchema,
  pipelineSpec,
  SyntheticParams,
  UpscaleParams,
} from '@darkroom/contracts';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';

/** The issues of a failed parse as `{ path, code }`, dotted like the API reports them. */
function issuesOf(schema: z.ZodType, input: unknown): { path: string; code: string }[] {
  const r = schema.safeParse(input);
  if (r.success) throw new Error(`expected a failure, got ${JSON.stringify(r.data)}`);
  return r.error.issues.map((i) => ({ path: i.path.map(String).join('.'), code: i.code }));
}

describe('EditParams', () => {
  it('defaults operations to an empty list', () => {
    expect(EditParams.parse({ operations: [] })).toEqual({ operations: [] });
  });

  it('accepts one of each operation and keeps them in order', () => {
    const operations = [
      { op: 'resize', width: 800, fit: 'inside' },
      { op: 'crop', left: 0, top: 10, width: 100, height: 50 },
      { op: 'rotate', angle: -90, background: '#ffffff' },
      { op: 'flip' },
      { op: 'flop' },
      { op: 'blur', sigma: 0.3 },
      { op: 'sharpen' },
      { op: 'grayscale' },
      { op: 'modulate', brightness: 1.2, hue: 180 },
      { op: 'tint', color: 'red' },
      { op: 'format', type: 'webp', quality: 80 },
    ];
    expect(EditParams.parse({ operations })).toEqual({ operations });
  });

  it('reports a bad width at its index: operations.0.width', () => {
    expect(issuesOf(EditParams, { operations: [{ op: 'resize', width: 0 }] })).toEqual([{ path: 'operations.0.width', code: 'too_small' }]);
  });

  it('reports each bad operation at its own index', () => {
    const input = {
      operations: [
        { op: 'resize', width: 10 },
        { op: 'crop', left: -1, top: 0, width: 1, height: 1 },
        { op: 'tint', color: 'purple' },
      ],
    };
    expect(issuesOf(EditParams, input)).toEqual([
      { path: 'operations.1.left', code: 'too_small' },
      { path: 'operations.2.color', code: 'custom' },
    ]);
  });

  it('needs width or height for resize, reported at operations.N.width', () => {
    const r = EditParams.safeParse({ operations: [{ op: 'flip' }, { op: 'resize', fit: 'cover' }] });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['operations.1.width', 'resize needs width, height or both'],
    ]);
  });

  it('accepts resize with only a width or only a height', () => {
    expect(EditParams.parse({ operations: [{ op: 'resize', height: 5 }] })).toEqual({ operations: [{ op: 'resize', height: 5 }] });
    expect(EditParams.parse({ operations: [{ op: 'resize', width: 5 }] })).toEqual({ operations: [{ op: 'resize', width: 5 }] });
  });

  it('refuses edges that are not whole numbers or above the output limit', () => {
    expect(issuesOf(EditParams, { operations: [{ op: 'resize', width: 1.5 }] })).toEqual([
      { path: 'operations.0.width', code: 'invalid_type' },
    ]);
    expect(issuesOf(EditParams, { operations: [{ op: 'resize', height: MAX_OUTPUT_EDGE + 1 }] })).toEqual([
      { path: 'operations.0.height', code: 'too_big' },
    ]);
    expect(EditParams.parse({ operations: [{ op: 'resize', height: MAX_OUTPUT_EDGE }] }).operations).toHaveLength(1);
  });

  it('rejects unknown keys at the top level and inside an operation', () => {
    const top = EditParams.safeParse({ operations: [], ops: [] });
    expect(top.error?.issues).toMatchObject([{ code: 'unrecognized_keys', path: [], keys: ['ops'] }]);
    const inner = EditParams.safeParse({ operations: [{ op: 'resize', height: 5, extra: 1 }] });
    expect(inner.error?.issues).toMatchObject([{ code: 'unrecognized_keys', path: ['operations', 0], keys: ['extra'] }]);
  });

  it('rejects an unknown op at operations.N.op', () => {
    expect(issuesOf(EditParams, { operations: [{ op: 'sepia' }] })).toEqual([{ path: 'operations.0.op', code: 'invalid_union' }]);
  });

  it('rejects a bad enum value in an operation', () => {
    expect(issuesOf(EditParams, { operations: [{ op: 'resize', width: 5, fit: 'stretch' }] })).toEqual([
      { path: 'operations.0.fit', code: 'invalid_value' },
    ]);
    expect(issuesOf(EditParams, { operations: [{ op: 'format', type: 'gif' }] })).toEqual([
      { path: 'operations.0.type', code: 'invalid_value' },
    ]);
  });

  it('allows at most 32 operations', () => {
    expect(EditParams.parse({ operations: Array(32).fill({ op: 'flip' }) }).operations).toHaveLength(32);
    expect(issuesOf(EditParams, { operations: Array(33).fill({ op: 'flip' }) })).toEqual([{ path: 'operations', code: 'too_big' }]);
  });

  it('rejects operations that is not an array', () => {
    expect(issuesOf(EditParams, { operations: { op: 'flip' } })).toEqual([{ path: 'operations', code: 'invalid_type' }]);
  });
});

describe('SyntheticParams', () => {
  it('applies every default', () => {
    expect(SyntheticParams.parse({})).toEqual({ steps: 10, stepMs: 100, width: 256, height: 256, seed: 0, loadMs: 0 });
  });

  it('keeps given values and fills in the rest', () => {
    expect(SyntheticParams.parse({ steps: 3, seed: 42 })).toEqual({ steps: 3, stepMs: 100, width: 256, height: 256, seed: 42, loadMs: 0 });
  });

  it('reports every bad field, and unknown keys', () => {
    expect(issuesOf(SyntheticParams, { steps: 1.5, seed: -1, colour: 1 })).toEqual([
      { path: 'steps', code: 'invalid_type' },
      { path: 'seed', code: 'too_small' },
      { path: '', code: 'unrecognized_keys' },
    ]);
  });

  it('enforces the bounds', () => {
    expect(issuesOf(SyntheticParams, { steps: 0 })).toEqual([{ path: 'steps', code: 'too_small' }]);
    expect(issuesOf(SyntheticParams, { steps: 1001 })).toEqual([{ path: 'steps', code: 'too_big' }]);
    expect(issuesOf(SyntheticParams, { stepMs: 60001 })).toEqual([{ path: 'stepMs', code: 'too_big' }]);
    expect(issuesOf(SyntheticParams, { width: 4097 })).toEqual([{ path: 'width', code: 'too_big' }]);
    expect(issuesOf(SyntheticParams, { seed: 2 ** 31 })).toEqual([{ path: 'seed', code: 'too_big' }]);
    expect(SyntheticParams.parse({ steps: 1000, stepMs: 0, width: 1, height: 4096, seed: 2 ** 31 - 1 })).toEqual({
      steps: 1000,
      stepMs: 0,
      width: 1,
      height: 4096,
      seed: 2 ** 31 - 1,
      loadMs: 0,
    });
    expect(issuesOf(SyntheticParams, { model: 'a/b' })).toEqual([{ path: 'model', code: 'invalid_format' }]);
    expect(issuesOf(SyntheticParams, { loadMs: 600_001 })).toEqual([{ path: 'loadMs', code: 'too_big' }]);
  });

  it('does not coerce strings to numbers', () => {
    expect(issuesOf(SyntheticParams, { steps: '5' })).toEqual([{ path: 'steps', code: 'invalid_type' }]);
  });
});

describe('Color', () => {
  it.each(['#abc', '#ABCD', '#aabbcc', '#AABBCCDD', 'black', 'white', 'transparent', 'red', 'green', 'blue', 'gray', 'grey'])(
    'accepts %s',
    (c) => {
      expect(Color.safeParse(c).success).toBe(true);
    },
  );

  it.each(['', '#', '#ab', '#12345', '#1234567', '#GGG', 'abc', 'RED', 'purple', ' red', 'red '])('refuses %j', (c) => {
    const r = Color.safeParse(c);
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toBe(
      'must be a hex colour (#rgb, #rrggbb, #rrggbbaa) or one of black, white, transparent, red, green, blue, gray, grey',
    );
  });

  it('refuses non-strings with a type error', () => {
    expect(Color.safeParse(0xffffff).error?.issues[0]?.code).toBe('invalid_type');
  });
});

describe('pipeline catalogue', () => {
  it('lists edit, synthetic and the model pipelines', () => {
    expect(PIPELINE_NAMES).toEqual(['edit', 'synthetic', 'upscale', 'comfyui', 'onnx']);
    expect(pipelineSpec('edit')?.acceptsImage).toBe(true);
    expect(pipelineSpec('synthetic')?.acceptsImage).toBe(false);
    expect(pipelineSpec('upscale')?.acceptsImage).toBe(true);
    expect(pipelineSpec('comfyui')).toMatchObject({ acceptsImage: true, imageOptional: true });
    expect(pipelineSpec('onnx')?.acceptsImage).toBe(true);
  });

  it("validates the model pipelines' params", () => {
    expect(UpscaleParams.parse({})).toEqual({});
    expect(UpscaleParams.safeParse({ format: 'gif' }).success).toBe(false);
    expect(ComfyuiParams.parse({ workflow: 'txt2img', prompt: 'a cat', width: 512, height: 768 })).toMatchObject({ width: 512 });
    expect(ComfyuiParams.parse({ workflow: 'flux-txt2img', prompt: 'a cat', cfg: 3.5 })).toMatchObject({ workflow: 'flux-txt2img' });
    expect(ComfyuiParams.parse({ workflow: 'qwen-edit', prompt: 'make it night' })).toMatchObject({ workflow: 'qwen-edit' });
    expect(ComfyuiParams.safeParse({ workflow: 'nope' }).success).toBe(false);
    expect(ComfyuiParams.safeParse({ workflow: 'txt2img', prompt: 'x'.repeat(MAX_PROMPT_CHARS + 1) }).success).toBe(false);
    expect(ComfyuiParams.safeParse({ workflow: 'txt2img', width: 513 }).success).toBe(false);
    expect(ComfyuiParams.safeParse({ workflow: 'txt2img', denoise: 1.5 }).success).toBe(false);
    expect(ComfyuiParams.safeParse({ workflow: 'txt2img', extra: 1 }).success).toBe(false);
    expect(OnnxParams.parse({ model: 'real-esrgan_x4.v2' })).toEqual({ model: 'real-esrgan_x4.v2' });
    for (const model of ['../etc', '', 'a/b', '.hidden']) expect(OnnxParams.safeParse({ model }).success, model).toBe(false);
    const schema = paramsJsonSchema(PIPELINE_SPECS.comfyui) as { properties: { workflow: { enum: string[] } }; required: string[] };
    expect(schema.properties.workflow.enum).toEqual(['txt2img', 'img2img', 'inpaint', 'edit', 'qwen-edit', 'flux-txt2img']);
    expect(schema.required).toEqual(['workflow']);
  });

  it('does not resolve names inherited from Object.prototype', () => {
    expect(pipelineSpec('toString')).toBeUndefined();
    expect(pipelineSpec('__proto__')).toBeUndefined();
    expect(pipelineSpec('constructor')).toBeUndefined();
    expect(pipelineSpec('')).toBeUndefined();
  });
});

describe('paramsJsonSchema', () => {
  it('describes synthetic params as a closed object with defaults and no required fields', () => {
    expect(paramsJsonSchema(PIPELINE_SPECS.synthetic)).toEqual({
      type: 'object',
      properties: {
        steps: { default: 10, type: 'integer', minimum: 1, maximum: 1000 },
        stepMs: { default: 100, type: 'integer', minimum: 0, maximum: 60000 },
        width: { default: 256, type: 'integer', minimum: 1, maximum: 4096 },
        height: { default: 256, type: 'integer', minimum: 1, maximum: 4096 },
        seed: { default: 0, type: 'integer', minimum: 0, maximum: 2147483647 },
        model: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
        loadMs: { default: 0, type: 'integer', minimum: 0, maximum: 600000 },
      },
      additionalProperties: false,
    });
  });

  it('describes edit params with one closed object per operation', () => {
    const schema = paramsJsonSchema(PIPELINE_SPECS.edit) as {
      type: string;
      additionalProperties: boolean;
      required?: string[];
      $schema?: string;
      properties: {
        operations: {
          type: string;
          default?: unknown;
          maxItems: number;
          items: { oneOf: { properties: { op: { const: string } }; required: string[]; additionalProperties: boolean }[] };
        };
      };
    };
    expect(schema.type).toBe('object');
    expect(schema.additionalProperties).toBe(false);
    expect(schema.$schema).toBeUndefined();
    // The contract writes operations as edit's one required field.
    expect(schema.required).toEqual(['operations']);
    const ops = schema.properties.operations;
    expect([ops.type, ops.default, ops.maxItems]).toEqual(['array', undefined, 32]);
    expect(ops.items.oneOf.map((o) => o.properties.op.const)).toEqual([
      'resize',
      'crop',
      'rotate',
      'flip',
      'flop',
      'blur',
      'sharpen',
      'grayscale',
      'modulate',
      'tint',
      'format',
    ]);
    expect(ops.items.oneOf.every((o) => o.additionalProperties === false)).toBe(true);
    expect(ops.items.oneOf[1]?.required).toEqual(['op', 'left', 'top', 'width', 'height']);
    expect(ops.items.oneOf[0]?.required).toEqual(['op']);
  });

  it('returns a fresh object each time (callers may mutate it)', () => {
    const a = paramsJsonSchema(PIPELINE_SPECS.synthetic) as Record<string, unknown>;
    a.type = 'changed';
    expect((paramsJsonSchema(PIPELINE_SPECS.synthetic) as Record<string, unknown>).type).toBe('object');
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { COMFYUI_WORKFLOWS, type ComfyuiParams, type ComfyuiWorkflow, InvalidInputError } from '@darkroom/contracts';
import { z } from 'zod';
import fluxTxt2img from '../workflows/flux-txt2img.json' with { type: 'json' };
import img2img from '../workflows/img2img.json' with { type: 'json' };
import inpaint from '../workflows/inpaint.json' with { type: 'json' };
import qwenEdit from '../workflows/qwen-edit.json' with { type: 'json' };
import txt2img from '../workflows/txt2img.json' with { type: 'json' };

/*
 * ComfyUI workflow templates: a workflow in ComfyUI's API format ("Save (API Format)") and named
 * slots, each a list of node inputs that one param fills. Built-in templates live in
 * packages/pipelines/workflows/ (bundled into the worker); an operator may replace any of them
 * with a file of the same name in DARKROOM_COMFYUI_WORKFLOWS_DIR, e.g. to name the checkpoint
 * their ComfyUI has.
 *
 * A name may be an alias of another template (ALIASES): it has no file of its own and runs that
 * template, so the two cannot drift apart.
 */

export const SLOT_NAMES = ['image', 'mask', 'prompt', 'negativePrompt', 'seed', 'steps', 'cfg', 'width', 'height', 'denoise'] as const;
export type SlotName = (typeof SLOT_NAMES)[number];
/** Slots filled from params (image and mask are filled with uploaded file names). */
type ParamSlot = Exclude<SlotName, 'image' | 'mask'>;

const Target = z.strictObject({ node: z.string().min(1), input: z.string().min(1) });
const ApiNode = z.looseObject({ class_type: z.string().min(1), inputs: z.record(z.string(), z.unknown()) });

export const WorkflowTemplate = z
  .strictObject({
    description: z.string().optional(),
    /** Whether the workflow reads the input image. */
    image: z.enum(['none', 'required']),
    /** "alpha": the input's transparent area is what to repaint; it must have one. */
    mask: z.enum(['alpha']).optional(),
    /** Params the workflow cannot do without. */
    required: z.array(z.enum(['prompt', 'negativePrompt'])).default([]),
    /** The input is scaled down to at most this many pixels before upload. */
    maxInputPixels: z.int().min(4096).default(4_194_304),
    defaults: z
      .strictObject({
        prompt: z.string().optional(),
        negativePrompt: z.string().optional(),
        steps: z.int().optional(),
        cfg: z.number().optional(),
        width: z.int().optional(),
        height: z.int().optional(),
        denoise: z.number().optional(),
      })
      .default({}),
    slots: z.partialRecord(z.enum(SLOT_NAMES), z.array(Target).min(1)),
    /** The output node whose first image is the result; default: the first image of any output. */
    output: z.string().optional(),
    prompt: z.record(z.string(), ApiNode),
  })
  .superRefine((t, ctx) => {
    for (const [slot, targets] of Object.entries(t.slots)) {
      for (const target of targets ?? []) {
        if (!t.prompt[target.node])
          ctx.addIssue({ code: 'custom', path: ['slots', slot], message: `slot ${slot}: no node ${target.node}` });
      }
    }
    if (t.output && !t.prompt[t.output]) ctx.addIssue({ code: 'custom', path: ['output'], message: `no node ${t.output}` });
    if (t.image === 'required' && !t.slots.image)
      ctx.addIssue({ code: 'custom', path: ['slots'], message: 'a workflow that reads the image needs an image slot' });
    if (t.mask && !t.slots.mask) ctx.addIssue({ code: 'custom', path: ['slots'], message: 'a workflow with a mask needs a mask slot' });
  });
export type WorkflowTemplate = z.infer<typeof WorkflowTemplate>;
export type ApiPrompt = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

/**
 * `edit` is the generic name for an instruction edit, kept for the stations that use it; it runs
 * the qwen-edit template, which names the model. Should the instruction-edit model change, only
 * this line moves.
 */
export const ALIASES = { edit: 'qwen-edit' } as const satisfies Partial<Record<ComfyuiWorkflow, ComfyuiWorkflow>>;
type Aliased = keyof typeof ALIASES;

const BUILT_IN: Record<Exclude<ComfyuiWorkflow, Aliased>, unknown> = {
  txt2img,
  img2img,
  inpaint,
  'qwen-edit': qwenEdit,
  'flux-txt2img': fluxTxt2img,
};

/**
 * The templates: built-in ones, replaced by the operator's where `dir` has `<name>.json`. An alias
 * without its own file follows its target, the operator's file included. Throws naming a bad file.
 */
export function loadTemplates(dir?: string): Record<ComfyuiWorkflow, WorkflowTemplate> {
  const out = {} as Record<ComfyuiWorkflow, WorkflowTemplate>;
  for (const name of COMFYUI_WORKFLOWS) {
    const source = Object.hasOwn(ALIASES, name) ? ALIASES[name as Aliased] : (name as Exclude<ComfyuiWorkflow, Aliased>);
    const file = dir ? [name, source].map((n) => path.join(dir, `${n}.json`)).find((f) => fs.existsSync(f)) : undefined;
    const raw = file ? (JSON.parse(fs.readFileSync(file, 'utf8')) as unknown) : BUILT_IN[source];
    const parsed = WorkflowTemplate.safeParse(raw);
    if (!parsed.success) {
      const where = file ?? `built-in template ${source}`;
      throw new Error(`${where}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    }
    out[name] = parsed.data;
  }
  return out;
}

export interface FilledWorkflow {
  prompt: ApiPrompt;
  /** The values used, defaults and the drawn seed included (for logs). */
  values: Partial<Record<ParamSlot, string | number>>;
  /** Where each node input came from a slot: "node/input" → slot, to tell a station's error from the template's. */
  slotInputs: Map<string, SlotName>;
}

/**
 * A copy of the template's workflow with its slots filled: params, then the template's defaults;
 * `files` gives the uploaded image and mask names. A param the workflow has no slot for is
 * refused, as is a missing required one.
 */
export function fillTemplate(
  name: ComfyuiWorkflow,
  t: WorkflowTemplate,
  params: ComfyuiParams,
  files: { image?: string; mask?: string },
  random: () => number = Math.random,
): FilledWorkflow {
  const prompt = structuredClone(t.prompt) as ApiPrompt;
  const given = Object.entries(params).filter(([k, v]) => k !== 'workflow' && v !== undefined) as [ParamSlot, string | number][];
  const unused = given.filter(([k]) => !t.slots[k]).map(([k]) => k);
  if (unused.length > 0) {
    const takes = Object.keys(t.slots).filter((s) => s !== 'image' && s !== 'mask');
    throw new InvalidInputError(`the ${name} workflow has no ${unused.join(', ')}; it takes ${takes.join(', ')}`);
  }
  for (const r of t.required) {
    if (!(params[r] ?? t.defaults[r])?.trim()) throw new InvalidInputError(`the ${name} workflow needs a ${r}`);
  }
  const values: FilledWorkflow['values'] = {};
  const slotInputs = new Map<string, SlotName>();
  const put = (slot: SlotName, value: unknown) => {
    for (const target of t.slots[slot] ?? []) {
      prompt[target.node]!.inputs[target.input] = value;
      slotInputs.set(`${target.node}/${target.input}`, slot);
    }
  };
  for (const slot of SLOT_NAMES) {
    if (!t.slots[slot]) continue;
    if (slot === 'image' || slot === 'mask') {
      const file = files[slot];
      if (!file) throw new Error(`the ${name} workflow needs the ${slot} file`);
      put(slot, file);
      continue;
    }
    let value: string | number | undefined = params[slot] ?? t.defaults[slot as keyof WorkflowTemplate['defaults']];
    if (slot === 'seed' && value === undefined) value = Math.floor(random() * 2 ** 32);
    if (value === undefined) continue; // the template's own value stays
    values[slot] = value;
    put(slot, value);
  }
  return { prompt, values, slotInputs };
}

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BackendUnavailableError, BackendUnhealthyError, ComfyuiParams, DarkroomJobError, InvalidInputError } from '@darkroom/contracts';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { COMFY_DIALECTS, ComfyuiStandin } from '../../testing/src/comfyui-standin.ts';
import { type ComfyuiOptions, ComfyuiPipeline } from '../src/comfyui.ts';
import { ComfyClient, PromptExistsError, PromptRejectedError } from '../src/comfyui-client.ts';
import { loadTemplates } from '../src/comfyui-workflows.ts';
import { finishOutput } from '../src/types.ts';
import { captureLogger, fixture, makeCtx, makeInput, type TestCtx } from './helpers.ts';

/*
 * The comfyui pipeline against a stand-in that speaks ComfyUI's HTTP and websocket protocol:
 * slots filled, progress mapped, outputs downloaded, and each way a run can go wrong.
 */

let standin: ComfyuiStandin;
let pipeline: ComfyuiPipeline;
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-comfyui-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function start(opts: ConstructorParameters<typeof ComfyuiStandin>[0] = {}, own: Partial<ComfyuiOptions> = {}) {
  standin = await ComfyuiStandin.start({ stepMs: 5, ...opts });
  pipeline = new ComfyuiPipeline({ url: standin.url, requestTimeoutMs: 5000, pollMs: 200, cancelWaitMs: 2000, ...own });
  await pipeline.init(captureLogger().logger);
}
afterEach(async () => {
  await standin?.stop();
});

const params = (p: Partial<ComfyuiParams> & { workflow: ComfyuiParams['workflow'] }) => ComfyuiParams.parse(p);
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

/** Resolves once the context has seen a progress message matching. */
function progressSeen(ctx: TestCtx, re: RegExp): Promise<void> {
  const orig = ctx.reportProgress;
  return new Promise((resolve) => {
    ctx.reportProgress = async (percent, message) => {
      await orig(percent, message);
      if (message && re.test(message)) resolve();
    };
  });
}

describe('comfyui pipeline', () => {
  it('fills the txt2img slots, maps sampler progress and returns the image without ComfyUI metadata', async () => {
    await start({ steps: 4 });
    const ctx = makeCtx();
    const out = await finishOutput(
      await pipeline.run(
        null,
        params({
          workflow: 'txt2img',
          prompt: 'a lighthouse at dusk',
          negativePrompt: 'blurry',
          seed: 1234,
          steps: 30,
          cfg: 6.5,
          width: 640,
          height: 384,
        }),
        ctx,
      ),
    );
    const meta = await sharp(out.data).metadata();
    expect([out.format, out.width, out.height, meta.format, meta.width, meta.height]).toEqual(['png', 640, 384, 'png', 640, 384]);
    expect(meta.comments ?? []).toEqual([]);

    const [sent] = standin.prompts;
    const g = sent!.prompt;
    expect(g['6']!.inputs.text).toBe('a lighthouse at dusk');
    expect(g['7']!.inputs.text).toBe('blurry');
    expect(g['3']!.inputs).toMatchObject({ seed: 1234, steps: 30, cfg: 6.5, denoise: 1 });
    expect(g['5']!.inputs).toMatchObject({ width: 640, height: 384 });
    expect(sent!.clientId).toMatch(/^darkroom:[0-9a-f-]{36}:1$/);
    expect(g['9']!.inputs.filename_prefix).toMatch(/^darkroom\/txt2img-[0-9a-f-]{36}-1$/);

    const steps = ctx.progress.filter((p) => p.message?.startsWith('step'));
    expect(steps.map((p) => p.message)).toEqual(['step 1/4', 'step 2/4', 'step 3/4', 'step 4/4']);
    expect(steps.map((p) => Math.round(p.percent))).toEqual([30, 50, 70, 90]);
    expect(ctx.progress.at(-1)).toEqual({ percent: 100, message: 'done' });
  });

  it('uploads the input for img2img and returns what ComfyUI made of it', async () => {
    await start();
    const input = await makeInput('Landscape_5.jpg');
    const out = await finishOutput(
      await pipeline.run(input, params({ workflow: 'img2img', prompt: 'as a watercolour', denoise: 0.4 }), makeCtx()),
    );
    const loadImage = standin.prompts[0]!.prompt['10']!.inputs.image as string;
    expect(loadImage).toMatch(/^darkroom\/\d+-[0-9a-f-]+\.png \[temp\]$/);
    expect(standin.prompts[0]!.prompt['3']!.inputs.denoise).toBe(0.4);
    // The stand-in inverts the uploaded image: undo that and compare with the upright input.
    const expected = await sharp(input.path).autoOrient().removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const got = await sharp(out.data).negate().raw().toBuffer({ resolveWithObject: true });
    expect([got.info.width, got.info.height]).toEqual([expected.info.width, expected.info.height]);
    let diff = 0;
    for (let i = 0; i < got.data.length; i++) diff = Math.max(diff, Math.abs(got.data[i]! - expected.data[i]!));
    expect(diff).toBeLessThanOrEqual(1);
  });

  it('inpaints where the image is transparent: the mask made from its alpha fills the mask slot', async () => {
    await start();
    // A photo with a transparent hole (40×30 at 50,20) to repaint.
    const file = path.join(tmp, 'hole.png');
    const { data, info } = await sharp(fixture('Landscape_7.jpg'))
      .resize(160, 120)
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    for (let y = 20; y < 50; y++) for (let x = 50; x < 90; x++) data[(y * 160 + x) * 4 + 3] = 0;
    await sharp(data, { raw: { width: 160, height: 120, channels: 4 } })
      .png()
      .toFile(file);
    const input = { ...(await makeInput('with-alpha.png')), path: file };
    input.ref = { ...input.ref, width: info.width, height: info.height };
    await pipeline.run(input, params({ workflow: 'inpaint', prompt: 'a red balloon' }), makeCtx());
    const g = standin.prompts[0]!.prompt;
    const maskName = g['12']!.inputs.image as string;
    expect(maskName).toMatch(/^darkroom\/.*-mask\.png \[temp\]$/);
    expect(g['10']!.inputs.image).not.toBe(maskName);
    expect(standin.requests.filter((r) => r.path === '/upload/image')).toHaveLength(2);
    // The mask ComfyUI got: white exactly where the input is transparent.
    const [sub, name] = maskName.replace(' [temp]', '').split('/');
    const mask = await (await fetch(`${standin.url}/view?filename=${name}&subfolder=${sub}&type=temp`)).arrayBuffer();
    const m = await sharp(Buffer.from(mask)).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect([m.info.width, m.info.height, m.info.channels]).toEqual([160, 120, 1]);
    const white = [...m.data].filter((v) => v === 255).length;
    expect([white, m.data[30 * 160 + 60], m.data[5 * 160 + 5]]).toEqual([40 * 30, 255, 0]);
  });

  it('refuses inpainting an opaque image, and a missing prompt or a param the workflow lacks, before anything is sent', async () => {
    await start();
    const opaque = await makeInput('Landscape_6.jpg');
    expect(await failure(pipeline.run(opaque, params({ workflow: 'inpaint', prompt: 'x' }), makeCtx()))).toBeInstanceOf(InvalidInputError);
    const err1 = await failure(pipeline.run(opaque, params({ workflow: 'edit' }), makeCtx()));
    expect(err1).toBeInstanceOf(InvalidInputError);
    expect((err1 as Error).message).toMatch(/needs a prompt/);
    const err2 = await failure(pipeline.run(opaque, params({ workflow: 'img2img', prompt: 'x', width: 512 }), makeCtx()));
    expect((err2 as Error).message).toMatch(/img2img workflow has no width/);
    const err3 = await failure(pipeline.run(null, params({ workflow: 'img2img', prompt: 'x' }), makeCtx()));
    expect((err3 as Error).message).toMatch(/needs an input image/);
    expect(standin.requests.filter((r) => r.method === 'POST')).toEqual([]);
  });

  it('fills the edit workflow for Qwen-Image-Edit', async () => {
    await start();
    const input = await makeInput('flowers.jpeg');
    const out = await finishOutput(
      await pipeline.run(input, params({ workflow: 'edit', prompt: 'make the petals blue', seed: 7 }), makeCtx()),
    );
    expect(out.format).toBe('png');
    const g = standin.prompts[0]!.prompt;
    expect(g['6']!.inputs.prompt).toBe('make the petals blue');
    expect(g['7']!.inputs.prompt).toBe('');
    expect(g['11']!.inputs).toMatchObject({ seed: 7, steps: 20, cfg: 2.5 });
    expect(g['4']!.inputs.image).toMatch(/^darkroom\//);
  });

  it('runs qwen-edit, and edit as the same graph, at the input size', async () => {
    await start();
    const input = await makeInput('flowers.jpeg');
    const run = (workflow: 'edit' | 'qwen-edit') =>
      pipeline.run(input, params({ workflow, prompt: 'make the petals blue', seed: 7, steps: 12, cfg: 3 }), makeCtx()).then(finishOutput);
    const out = await run('qwen-edit');
    expect([out.format, out.width, out.height]).toEqual(['png', input.ref.width, input.ref.height]);
    const g = standin.prompts[0]!.prompt;
    expect(g['1']!.inputs.unet_name).toBe('qwen_image_edit_fp8_e4m3fn.safetensors');
    expect(g['6']!.inputs).toMatchObject({ prompt: 'make the petals blue', image: ['5', 0], vae: ['3', 0] });
    expect(g['11']!.inputs).toMatchObject({ seed: 7, steps: 12, cfg: 3, denoise: 1, latent_image: ['8', 0] });
    expect(g['13']!.inputs.filename_prefix).toMatch(/^darkroom\/qwen-edit-/);

    const viaEdit = await run('edit');
    expect([viaEdit.width, viaEdit.height]).toEqual([input.ref.width, input.ref.height]);
    // Only the uploaded file's name differs.
    const withoutUpload = (p: typeof g) => ({ ...p, '4': { ...p['4']!, inputs: {} }, '13': { ...p['13']!, inputs: {} } });
    expect(withoutUpload(standin.prompts[1]!.prompt)).toEqual(withoutUpload(g));
  });

  it('fills flux-txt2img: cfg is the FluxGuidance guidance, the sampler keeps cfg 1, the image has the requested size', async () => {
    await start();
    const out = await finishOutput(
      await pipeline.run(
        null,
        params({ workflow: 'flux-txt2img', prompt: 'a fox in the snow', seed: 99, steps: 8, cfg: 2.5, width: 512, height: 768 }),
        makeCtx(),
      ),
    );
    expect([out.format, out.width, out.height]).toEqual(['png', 512, 768]);
    const g = standin.prompts[0]!.prompt;
    expect(g['6']!.inputs.text).toBe('a fox in the snow');
    expect(g['10']!.inputs).toEqual({ conditioning: ['6', 0], guidance: 2.5 });
    expect(g['3']!.inputs).toMatchObject({ seed: 99, steps: 8, cfg: 1, sampler_name: 'euler', scheduler: 'simple', positive: ['10', 0] });
    expect(g['5']).toEqual({ class_type: 'EmptySD3LatentImage', inputs: { width: 512, height: 768, batch_size: 1 } });
    expect(g['2']!.inputs).toMatchObject({ clip_name1: 'clip_l.safetensors', clip_name2: 't5xxl_fp8_e4m3fn.safetensors', type: 'flux' });

    await pipeline.run(null, params({ workflow: 'flux-txt2img', prompt: 'x' }), makeCtx());
    expect(standin.prompts[1]!.prompt['10']!.inputs.guidance).toBe(3.5);
    expect(standin.prompts[1]!.prompt['5']!.inputs).toMatchObject({ width: 1024, height: 1024 });
    const err = await failure(pipeline.run(null, params({ workflow: 'flux-txt2img', prompt: 'x', negativePrompt: 'blur' }), makeCtx()));
    expect((err as Error).message).toMatch(/flux-txt2img workflow has no negativePrompt/);
  });

  it('tells the station when ComfyUI refuses a value it sent (invalid_input)', async () => {
    await start({ maxSteps: 50 });
    const err = await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x', steps: 80 }), makeCtx()));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toMatch(/steps: Value 80 bigger than max of 50/);
  });

  it('fails without retry when ComfyUI lacks what the template names (the operator must fix it)', async () => {
    await start({ models: ['some_other_model.safetensors'] });
    const err = await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(err).toBeInstanceOf(DarkroomJobError);
    expect(err).toMatchObject({ code: 'pipeline_error', retryable: false });
    expect((err as Error).message).toMatch(/node 4 \(CheckpointLoaderSimple\) ckpt_name: Value not in list/);
  });

  it('fails a node error while running as pipeline_error, retrying only out-of-memory, without ComfyUI paths', async () => {
    await start();
    expect(pipeline.warmModels()).toEqual([]);
    await finishOutput(await pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(pipeline.warmModels()).toEqual(['txt2img']); // the last finished workflow's models stay loaded
    standin.scenarios.push('execution_error', 'oom');
    const err = await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(err).toMatchObject({ code: 'pipeline_error', retryable: false });
    expect((err as Error).message).toMatch(/node 3 \(KSampler\).*RuntimeError/);
    expect((err as Error).message).not.toMatch(/\/opt|ComfyUI\/comfy/);
    const oom = await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(oom).toMatchObject({ code: 'pipeline_error', retryable: true });
    expect((oom as Error).message).toMatch(/out of GPU memory/);
    expect(pipeline.warmModels()).toEqual([]); // ComfyUI was asked to unload them
  });

  it('treats a server that dies mid-prompt as unavailable (retried)', async () => {
    await start();
    standin.scenario = 'die';
    const err = await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(/ComfyUI went away|refused/);
  });

  it('treats a refused connection and a 5xx as unavailable', async () => {
    const port = await closedPort();
    const down = new ComfyuiPipeline({ url: `http://127.0.0.1:${port}`, requestTimeoutMs: 2000 });
    const { logger, records } = captureLogger();
    await down.init(logger); // not fatal: jobs wait and retry
    expect(records.some((r) => r.level === 'warn' && /not reachable/.test(r.msg ?? ''))).toBe(true);
    const err = await failure(down.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(/refused the connection/);
    expect((err as Error).message).not.toMatch(/127\.0\.0\.1/);

    await start();
    standin.failPromptWith = 500;
    expect(await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()))).toBeInstanceOf(
      BackendUnavailableError,
    );
  });

  it('reports the ComfyUI device, and is not served without DARKROOM_COMFYUI_URL', async () => {
    await start();
    expect(pipeline.status().device).toMatch(/^comfyui: cuda:0 NVIDIA Stand-in GPU \(24576 MiB\)$/);
    expect(await new ComfyuiPipeline({ url: undefined, requestTimeoutMs: 1000 }).unavailable()).toBe('DARKROOM_COMFYUI_URL is not set');
    expect(await pipeline.unavailable()).toBeUndefined();
  });
});

describe('comfyui templates', () => {
  it('are all valid, each with the slots its params need', () => {
    const t = loadTemplates();
    expect(Object.keys(t)).toEqual(['txt2img', 'img2img', 'inpaint', 'edit', 'qwen-edit', 'flux-txt2img']);
    expect(Object.keys(t.txt2img.slots).sort()).toEqual(['cfg', 'height', 'negativePrompt', 'prompt', 'seed', 'steps', 'width']);
    expect(Object.keys(t['flux-txt2img'].slots).sort()).toEqual(['cfg', 'height', 'prompt', 'seed', 'steps', 'width']);
    expect(t.inpaint.slots.mask).toBeDefined();
    expect(t['qwen-edit'].prompt['6']!.class_type).toBe('TextEncodeQwenImageEdit');
    // edit is an alias: the very same template as qwen-edit, not a copy that could drift.
    expect(t.edit).toEqual(t['qwen-edit']);
  });

  it('each save their result as darkroom/<template file name>', () => {
    const t = loadTemplates();
    for (const [name, template] of Object.entries(t)) {
      const saves = Object.values(template.prompt).filter((n) => n.class_type === 'SaveImage');
      const file = name === 'edit' ? 'qwen-edit' : name;
      expect(
        saves.map((n) => n.inputs.filename_prefix),
        name,
      ).toEqual([`darkroom/${file}`]);
      expect(fs.existsSync(new URL(`../workflows/${file}.json`, import.meta.url)), name).toBe(true);
    }
  });

  it("follow the operator's qwen-edit.json for edit, unless edit.json replaces edit alone", () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'wf-'));
    const own = structuredClone(loadTemplates()['qwen-edit']) as { prompt: Record<string, { inputs: Record<string, unknown> }> };
    own.prompt['1']!.inputs.unet_name = 'qwen_image_edit_bf16.safetensors';
    fs.writeFileSync(path.join(dir, 'qwen-edit.json'), JSON.stringify(own));
    const followed = loadTemplates(dir);
    expect([followed.edit.prompt['1']!.inputs.unet_name, followed['qwen-edit'].prompt['1']!.inputs.unet_name]).toEqual([
      'qwen_image_edit_bf16.safetensors',
      'qwen_image_edit_bf16.safetensors',
    ]);
    own.prompt['1']!.inputs.unet_name = 'my_edit_model.safetensors';
    fs.writeFileSync(path.join(dir, 'edit.json'), JSON.stringify(own));
    const apart = loadTemplates(dir);
    expect([apart.edit.prompt['1']!.inputs.unet_name, apart['qwen-edit'].prompt['1']!.inputs.unet_name]).toEqual([
      'my_edit_model.safetensors',
      'qwen_image_edit_bf16.safetensors',
    ]);
  });

  it('can be replaced by the operator, and a bad replacement is named', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'wf-'));
    const own = structuredClone(loadTemplates().txt2img) as { prompt: Record<string, { inputs: Record<string, unknown> }> };
    own.prompt['4']!.inputs.ckpt_name = 'my_model.safetensors';
    fs.writeFileSync(path.join(dir, 'txt2img.json'), JSON.stringify(own));
    expect(loadTemplates(dir).txt2img.prompt['4']!.inputs.ckpt_name).toBe('my_model.safetensors');
    fs.writeFileSync(
      path.join(dir, 'edit.json'),
      JSON.stringify({ image: 'required', slots: { prompt: [{ node: '99', input: 'text' }] }, prompt: {} }),
    );
    expect(() => loadTemplates(dir)).toThrow(/edit\.json.*slot prompt: no node 99/);
  });
});

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const txt = (p: Partial<ComfyuiParams> = {}) => params({ workflow: 'txt2img', prompt: 'x', width: 64, height: 64, ...p });
function jobCtx(id = `job-${Math.random().toString(36).slice(2)}`, attempt = 1): TestCtx {
  return Object.assign(makeCtx(), { job: { id, attempt } });
}

describe.each(COMFY_DIALECTS)('comfyui against a %s server', (dialect) => {
  it('finishes, with progress that only goes up though every node with a bar restarts it, and leaves no history behind', async () => {
    await start({ dialect, steps: 3 });
    const ctx = makeCtx();
    const out = await finishOutput(await pipeline.run(null, txt(), ctx));
    expect([out.width, out.height]).toEqual([64, 64]);
    const steps = ctx.progress.filter((p) => p.message?.startsWith('step')).map((p) => p.message);
    // The sampler's three steps; the VAE decode's own 1/2 and 2/2 would go backwards and are not reported.
    expect(steps).toEqual(['step 1/3', 'step 2/3', 'step 3/3']);
    const percents = ctx.progress.map((p) => p.percent);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(standin.historyIds).toEqual([]);
    expect(standin.finished).toMatchObject([{ status: 'success' }]);
  });

  it('decides from the history when the end comes without its reason (a missed execution_error)', async () => {
    await start({ dialect });
    standin.drop.add('execution_error');
    standin.scenarios.push('execution_error');
    const err = await failure(pipeline.run(null, txt(), makeCtx()));
    expect(err).toMatchObject({ code: 'pipeline_error', retryable: false });
    expect((err as Error).message).toMatch(/node 3 \(KSampler\).*RuntimeError/);
    await waitUntil(() => standin.historyIds.length === 0);
  });

  it('sends a prompt whose answer was lost only once', async () => {
    await start({ dialect });
    standin.dropNextPromptAnswer = true;
    const out = await finishOutput(await pipeline.run(null, txt(), makeCtx()));
    expect(out.width).toBe(64);
    expect(standin.prompts).toHaveLength(1);
    expect(standin.finished).toHaveLength(1);
  });

  it('interrupts its running prompt on cancel', async () => {
    await start({ dialect });
    standin.scenario = 'hang';
    const ctx = makeCtx();
    const reason = new Error('cancelled');
    const running = progressSeen(ctx, /^step 2\//);
    const pending = pipeline.run(null, txt(), ctx);
    await running;
    ctx.controller.abort(reason);
    expect(await failure(pending)).toBe(reason);
    expect(standin.interrupts).toEqual([standin.prompts[0]!.promptId]);
    expect(standin.finished).toMatchObject([{ status: 'interrupted' }]);
    expect(standin.queueLength).toBe(0);
    expect(standin.historyIds).toEqual([]);
  });

  it("takes its waiting prompt off the queue on cancel, never stopping another client's running prompt", async () => {
    await start({ dialect });
    standin.scenarios.push('hang');
    const foreign = standin.queueForeign(loadTemplates().txt2img.prompt as never);
    await waitUntil(() => standin.runningPromptId === foreign);
    const ctx = makeCtx();
    const reason = new Error('timeout');
    const queued = progressSeen(ctx, /queued in ComfyUI/);
    const pending = pipeline.run(null, txt(), ctx);
    await queued;
    ctx.controller.abort(reason);
    expect(await failure(pending)).toBe(reason);
    expect(standin.globalInterrupts).toBe(0);
    expect(standin.runningPromptId).toBe(foreign);
    expect(standin.queueLength).toBe(1);
    const ours = standin.prompts.at(-1)!.promptId;
    if (dialect === 'current') expect(standin.interrupts).toEqual([ours]);
    else expect([standin.deletes, standin.interrupts]).toEqual([[ours], []]);
  });

  it('ends on a server that restarts mid-prompt and forgets it (retried as unavailable)', async () => {
    await start({ dialect });
    standin.scenarios.push('forget');
    const err = await failure(pipeline.run(null, txt(), makeCtx()));
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(/lost the prompt|went away/);
  });
});

describe('comfyui behaviours', () => {
  it('waits for the history when execution_success comes before it is written', async () => {
    await start({ dialect: '2025', historyDelayMs: 400 }, { pollMs: 60_000 });
    const out = await finishOutput(await pipeline.run(null, txt(), makeCtx()));
    expect(out.width).toBe(64);
    const id = standin.prompts[0]!.promptId;
    expect(standin.requests.filter((r) => r.path === `/history/${id}`).length).toBeGreaterThan(1);
  });

  it('follows a server that sends no execution messages at all, from its history', async () => {
    await start({ silent: true });
    const out = await finishOutput(await pipeline.run(null, txt(), makeCtx()));
    expect(out.width).toBe(64);
  });

  it('is interrupted outside the sampler too (between nodes, in the VAE decode), and says so', async () => {
    await start({ steps: 2, stepMs: 40 });
    const ctx = makeCtx();
    const reason = new Error('cancelled');
    const sampled = progressSeen(ctx, /^step 2\/2/);
    const pending = pipeline.run(null, txt(), ctx);
    await sampled;
    ctx.controller.abort(reason);
    expect(await failure(pending)).toBe(reason);
    expect(standin.finished).toMatchObject([{ status: 'interrupted' }]);
  });

  it('never gets an earlier job’s file from the node cache: each attempt names its own outputs', async () => {
    await start();
    await finishOutput(await pipeline.run(null, txt({ seed: 5 }), jobCtx('a')));
    // The operator cleans the output folder; the same request again must still give an image.
    for (const f of standin.files.filter((k) => k.startsWith('output/'))) standin.deleteFile(f);
    const out = await finishOutput(await pipeline.run(null, txt({ seed: 5 }), jobCtx('b')));
    expect(out.width).toBe(64);
    expect(standin.finished.map((f) => f.cached)).toEqual([false, false]);
    expect(standin.prompts.map((p) => p.prompt['9']!.inputs.filename_prefix)).toEqual(['darkroom/txt2img-a-1', 'darkroom/txt2img-b-1']);
  });

  it('reads node_errors that come with a 200 (an output left out) and reports them', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'wf-'));
    const own = structuredClone(loadTemplates().txt2img) as {
      prompt: Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    };
    own.prompt['20'] = { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'missing.safetensors' } };
    own.prompt['21'] = { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['20', 2] } };
    own.prompt['22'] = { class_type: 'SaveImage', inputs: { images: ['21', 0], filename_prefix: 'darkroom/extra' } };
    fs.writeFileSync(path.join(dir, 'txt2img.json'), JSON.stringify({ ...own, output: '9' }));
    await start({}, { workflowsDir: dir });
    const ctx = makeCtx();
    const { logger, records } = captureLogger();
    ctx.logger = logger;
    const out = await finishOutput(await pipeline.run(null, txt(), ctx));
    expect(out.width).toBe(64);
    expect(ctx.progress.find((p) => p.message?.startsWith('queued'))?.message).toMatch(
      /outputs left out: node 20 \(CheckpointLoaderSimple\): Value not in list/,
    );
    expect(records.some((r) => r.level === 'warn' && /left outputs out/.test(r.msg ?? ''))).toBe(true);
  });

  it('reconnects its websocket with the credential a current server announced, and finishes', async () => {
    await start({ dialect: 'current', steps: 6, stepMs: 40 });
    const ctx = makeCtx();
    const running = progressSeen(ctx, /^step 2\//);
    const pending = pipeline.run(null, txt(), ctx);
    await running;
    standin.dropSockets();
    const out = await finishOutput(await pending);
    expect(out.width).toBe(64);
    expect(standin.credentialAuths).toBe(1);
    expect(ctx.progress.some((p) => p.message === 'step 6/6')).toBe(true);
  });

  it('stops the prompt an earlier attempt of the job left queued', async () => {
    await start();
    standin.hold = true;
    const earlier = standin.queueForeign(loadTemplates().txt2img.prompt as never, 'darkroom:j1:1');
    const other = standin.queueForeign(loadTemplates().txt2img.prompt as never, 'darkroom:j10:1');
    const pending = pipeline.run(null, txt(), jobCtx('j1', 2));
    await waitUntil(() => standin.prompts.length === 1);
    standin.release();
    await finishOutput(await pending);
    expect(standin.interrupts).toContain(earlier);
    expect(standin.interrupts).not.toContain(other);
    expect(standin.finished.map((f) => f.promptId)).not.toContain(earlier);
  });

  it('asks ComfyUI to free memory after running out of it, and retries', async () => {
    await start();
    standin.scenarios.push('oom');
    const err = await failure(pipeline.run(null, txt(), makeCtx()));
    expect(err).toMatchObject({ code: 'pipeline_error', retryable: true });
    expect((err as Error).message).toMatch(/out of GPU memory in node 3 \(KSampler\)/);
    expect(standin.requests.filter((r) => r.path === '/free')).toEqual([
      { method: 'POST', path: '/free', body: { unload_models: true, free_memory: true } },
    ]);
  });

  it('marks a backend whose GPU keeps failing unhealthy, hands its jobs back, and takes them again once a probe passes', async () => {
    await start({}, { unhealthyAfter: 3 });
    standin.scenarios.push('cuda_error');
    const first = await failure(pipeline.run(null, txt(), makeCtx()));
    expect(first).toMatchObject({ code: 'pipeline_error', retryable: true });
    expect((first as Error).message).toMatch(/CUDA error in node 3 \(KSampler\)/);
    expect(pipeline.status().backend).toMatchObject({ kind: 'comfyui', healthy: true, version: '0.36.0' });
    // The device stays broken: every prompt fails with it until ComfyUI is restarted.
    expect(await failure(pipeline.run(null, txt(), makeCtx()))).not.toBeInstanceOf(BackendUnhealthyError);
    const third = await failure(pipeline.run(null, txt(), makeCtx()));
    expect(third).toBeInstanceOf(BackendUnhealthyError);
    const sent = standin.prompts.length;
    expect(await failure(pipeline.run(null, txt(), makeCtx()))).toBeInstanceOf(BackendUnhealthyError);
    expect(standin.prompts).toHaveLength(sent);
    expect(pipeline.status().backend).toMatchObject({ healthy: false, reason: expect.stringMatching(/3 GPU failures in a row/) });
    expect(await pipeline.probe()).toBe(false);
    standin.cudaBroken = false;
    expect(await pipeline.probe()).toBe(true);
    expect(pipeline.status().backend).toMatchObject({ healthy: true });
    expect((await finishOutput(await pipeline.run(null, txt(), makeCtx()))).width).toBe(64);
  });

  it('a long run leaves the history as it was, and no input outside the temp folder', async () => {
    await start({ steps: 1, stepMs: 1, historyDelayMs: 1 });
    // Another client's finished prompt stays.
    const foreign = standin.queueForeign(loadTemplates().txt2img.prompt as never);
    await waitUntil(() => standin.historyIds.includes(foreign));
    const input = await makeInput('flowers.jpeg');
    for (let i = 0; i < 200; i++) {
      const p = i % 2 ? txt({ seed: i }) : params({ workflow: 'img2img', prompt: 'x', seed: i });
      await finishOutput(await pipeline.run(i % 2 ? null : input, p, makeCtx()));
    }
    expect(standin.finished.filter((f) => f.status === 'success')).toHaveLength(201);
    expect(standin.historyIds).toEqual([foreign]);
    expect(standin.files.filter((f) => f.startsWith('input/'))).toEqual([]);
    expect(standin.files.filter((f) => f.startsWith('temp/')).length).toBeGreaterThanOrEqual(100);
  }, 60_000);
});

describe('comfyui client', () => {
  it('chooses the prompt id on current servers: a UUID, once', async () => {
    await start({ dialect: 'current', hold: undefined } as never);
    standin.hold = true;
    const client = new ComfyClient(standin.url, 2000);
    const prompt = loadTemplates().txt2img.prompt;
    const signal = AbortSignal.timeout(2000);
    expect(await failure(client.queuePrompt(prompt, 'c', 'not-a-uuid', signal))).toBeInstanceOf(PromptRejectedError);
    const id = crypto.randomUUID();
    expect((await client.queuePrompt(prompt, 'c', id, signal)).promptId).toBe(id);
    expect(await failure(client.queuePrompt(prompt, 'c', id, signal))).toBeInstanceOf(PromptExistsError);
    expect(await client.findPrompt(id, 'c')).toBe(id);
  });

  it('finds a prompt an older server named itself, by the client id it was queued for', async () => {
    await start({ dialect: 'legacy' });
    standin.hold = true;
    const client = new ComfyClient(standin.url, 2000);
    const asked = crypto.randomUUID();
    const { promptId } = await client.queuePrompt(loadTemplates().txt2img.prompt, 'mine', asked, AbortSignal.timeout(2000));
    expect(promptId).not.toBe(asked);
    expect(await client.findPrompt(asked, 'mine')).toBe(promptId);
    expect(await client.findPrompt(asked, 'someone-else')).toBeUndefined();
  });
});

describe('comfyui stand-in', () => {
  const post = (path: string, body: unknown) =>
    fetch(`${standin.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('answers an identical prompt from its node cache: execution_cached for all, the earlier file, no executing', async () => {
    await start({ historyDelayMs: 1 });
    const prompt = loadTemplates().txt2img.prompt;
    const a = (await (await post('/prompt', { prompt })).json()) as { prompt_id: string };
    const b = (await (await post('/prompt', { prompt })).json()) as { prompt_id: string };
    await waitUntil(() => standin.finished.length === 2);
    const h = (await (await fetch(`${standin.url}/history`)).json()) as Record<
      string,
      { outputs: unknown; status: { messages: [string, { nodes?: string[] }][] } }
    >;
    expect(h[b.prompt_id]!.outputs).toEqual(h[a.prompt_id]!.outputs);
    expect(standin.finished.map((f) => f.cached)).toEqual([false, true]);
    expect(h[b.prompt_id]!.status.messages.find(([t]) => t === 'execution_cached')![1].nodes).toHaveLength(Object.keys(prompt).length);
  });

  it('keeps at most historyMax prompts, oldest dropped first', async () => {
    await start({ historyMax: 2, historyDelayMs: 1, steps: 1, stepMs: 1 });
    const ids = [1, 2, 3].map((seed) =>
      standin.queueForeign({
        ...loadTemplates().txt2img.prompt,
        '3': { ...loadTemplates().txt2img.prompt['3']!, inputs: { ...loadTemplates().txt2img.prompt['3']!.inputs, seed } },
      } as never),
    );
    await waitUntil(() => standin.finished.length === 3);
    expect(standin.historyIds).toEqual(ids.slice(1));
  });

  it('accepts a prompt with some outputs invalid: 200 with their node_errors', async () => {
    await start();
    const prompt = structuredClone(loadTemplates().txt2img.prompt) as Record<
      string,
      { class_type: string; inputs: Record<string, unknown> }
    >;
    prompt['20'] = { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'missing.safetensors' } };
    prompt['21'] = { class_type: 'SaveImage', inputs: { images: ['20', 0] } };
    const res = await post('/prompt', { prompt });
    const body = (await res.json()) as { node_errors: Record<string, { dependent_outputs: string[] }> };
    expect(res.status).toBe(200);
    expect(body.node_errors['20']!.dependent_outputs).toEqual(['21']);
  });
});

async function waitUntil(check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

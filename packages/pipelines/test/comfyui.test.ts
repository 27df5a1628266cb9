import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BackendUnavailableError, ComfyuiParams, DarkroomJobError, InvalidInputError } from '@darkroom/contracts';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ComfyuiStandin } from '../../testing/src/comfyui-standin.ts';
import { ComfyuiPipeline } from '../src/comfyui.ts';
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

async function start(opts: ConstructorParameters<typeof ComfyuiStandin>[0] = {}) {
  standin = await ComfyuiStandin.start({ stepMs: 5, ...opts });
  pipeline = new ComfyuiPipeline({ url: standin.url, requestTimeoutMs: 5000, pollMs: 200, cancelWaitMs: 2000 });
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
    expect(sent!.clientId).toMatch(/^[0-9a-f-]{36}$/);

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
    expect(loadImage).toMatch(/^darkroom\/\d+-[0-9a-f-]+\.png$/);
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
    expect(maskName).toMatch(/^darkroom\/.*-mask\.png$/);
    expect(g['10']!.inputs.image).not.toBe(maskName);
    expect(standin.requests.filter((r) => r.path === '/upload/image')).toHaveLength(2);
    // The mask ComfyUI got: white exactly where the input is transparent.
    const [sub, name] = maskName.split('/');
    const mask = await (await fetch(`${standin.url}/view?filename=${name}&subfolder=${sub}&type=input`)).arrayBuffer();
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
    standin.scenarios.push('execution_error', 'oom');
    const err = await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(err).toMatchObject({ code: 'pipeline_error', retryable: false });
    expect((err as Error).message).toMatch(/node 3 \(KSampler\).*RuntimeError/);
    expect((err as Error).message).not.toMatch(/\/opt|ComfyUI\/comfy/);
    const oom = await failure(pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), makeCtx()));
    expect(oom).toMatchObject({ code: 'pipeline_error', retryable: true });
    expect((oom as Error).message).toMatch(/out of GPU memory/);
  });

  it('interrupts its running prompt on cancel, and only that prompt', async () => {
    await start();
    standin.scenario = 'hang';
    const ctx = makeCtx();
    const reason = new Error('cancelled');
    const running = progressSeen(ctx, /^step 2\//);
    const pending = pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), ctx);
    await running;
    ctx.controller.abort(reason);
    expect(await failure(pending)).toBe(reason);
    expect(standin.interrupts).toEqual([standin.prompts[0]!.promptId]);
    expect(standin.queueLength).toBe(0);
    const hist = await (await fetch(`${standin.url}/history/${standin.prompts[0]!.promptId}`)).json();
    expect(JSON.stringify(hist)).toMatch(/execution_interrupted/);
  });

  it('takes a prompt that has not started off the queue on cancel, without interrupting anything', async () => {
    await start();
    standin.hold = true;
    const ctx = makeCtx();
    const reason = new Error('timeout');
    const queued = progressSeen(ctx, /queued in ComfyUI/);
    const pending = pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x' }), ctx);
    await queued;
    ctx.controller.abort(reason);
    expect(await failure(pending)).toBe(reason);
    expect(standin.deletes).toEqual([standin.prompts[0]!.promptId]);
    expect(standin.interrupts).toEqual([]);
    expect(standin.queueLength).toBe(0);
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
    expect(Object.keys(t)).toEqual(['txt2img', 'img2img', 'inpaint', 'edit']);
    expect(Object.keys(t.txt2img.slots).sort()).toEqual(['cfg', 'height', 'negativePrompt', 'prompt', 'seed', 'steps', 'width']);
    expect(t.inpaint.slots.mask).toBeDefined();
    expect(t.edit.prompt['6']!.class_type).toBe('TextEncodeQwenImageEdit');
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

describe('comfyui protocol generations', () => {
  for (const dialect of ['legacy', 'progress_state', 'silent'] as const) {
    it(`finishes with a ${dialect} server`, async () => {
      await start({ dialect, steps: 3 });
      const ctx = makeCtx();
      const out = await finishOutput(await pipeline.run(null, params({ workflow: 'txt2img', prompt: 'x', width: 64, height: 64 }), ctx));
      expect([out.width, out.height]).toEqual([64, 64]);
      const steps = ctx.progress.filter((p) => p.message?.startsWith('step')).map((p) => p.message);
      expect(steps).toEqual(dialect === 'silent' ? [] : ['step 1/3', 'step 2/3', 'step 3/3']);
    });
  }
});

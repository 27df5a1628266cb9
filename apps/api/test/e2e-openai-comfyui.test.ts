import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ComfyuiStandin, STATIONS, type System, startSystem } from '@darkroom/testing';
import OpenAI, { type APIError, BadRequestError, toFile } from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * `images.edit` of the official OpenAI client against models an operator maps to ComfyUI
 * workflows (a stand-in ComfyUI server behind a real worker): an instruction edit, and an
 * inpaint whose area comes from OpenAI's `mask`.
 */

let sys: System;
let comfy: ComfyuiStandin;
let client: OpenAI;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-openai-comfy-'));
const modelsFile = path.join(dir, 'models.json');

beforeAll(async () => {
  fs.writeFileSync(
    modelsFile,
    JSON.stringify({
      'qwen-image-edit': { pipeline: 'comfyui', params: { workflow: 'qwen-edit' } },
      'sd-inpaint': { pipeline: 'comfyui', params: { workflow: 'inpaint' } },
    }),
  );
  comfy = await ComfyuiStandin.start({ steps: 2, stepMs: 10 });
  sys = await startSystem({
    apiEnv: { DARKROOM_OPENAI_MODELS: modelsFile },
    workerEnv: { DARKROOM_WORKER_PIPELINES: 'comfyui', DARKROOM_COMFYUI_URL: comfy.url },
  });
  client = new OpenAI({ apiKey: STATIONS.alpha.key, baseURL: `${sys.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await sys?.stop();
  await comfy?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const photo = () =>
  sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 120, b: 40 } } })
    .png()
    .toBuffer();

describe('the OpenAI SDK on ComfyUI workflows', () => {
  it('edits with an instruction-edit model: the prompt reaches the workflow, the image keeps its size', async () => {
    const res = await client.images.edit({
      model: 'qwen-image-edit',
      prompt: 'make it blue',
      image: await toFile(await photo(), 'in.png', { type: 'image/png' }),
    });
    const meta = await sharp(Buffer.from(res.data![0]!.b64_json!, 'base64')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 40, 30]);
    expect(comfy.prompts.at(-1)!.prompt['6']!.inputs.prompt).toBe('make it blue');
  }, 60_000);

  it("inpaints where OpenAI's mask is transparent", async () => {
    // Transparent in a 10×8 square at (5, 4): the area to repaint.
    const { data, info } = await sharp({ create: { width: 40, height: 30, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 1 } } })
      .raw()
      .toBuffer({ resolveWithObject: true });
    for (let y = 4; y < 12; y++) for (let x = 5; x < 15; x++) data[(y * 40 + x) * 4 + 3] = 0;
    const mask = await sharp(data, { raw: { width: info.width, height: info.height, channels: 4 } })
      .png()
      .toBuffer();
    const res = await client.images.edit({
      model: 'sd-inpaint',
      prompt: 'a red balloon',
      image: await toFile(await photo(), 'in.png', { type: 'image/png' }),
      mask: await toFile(mask, 'mask.png', { type: 'image/png' }),
    });
    const meta = await sharp(Buffer.from(res.data![0]!.b64_json!, 'base64')).metadata();
    expect([meta.width, meta.height]).toEqual([40, 30]);
    // The mask ComfyUI got: white exactly where OpenAI's mask is transparent.
    const key = comfy.files.filter((f) => f.endsWith('-mask.png')).at(-1)!;
    const [, sub, name] = /^temp\/(.*)\/([^/]+)$/.exec(key)!;
    const got = Buffer.from(await (await fetch(`${comfy.url}/view?type=temp&subfolder=${sub}&filename=${name}`)).arrayBuffer());
    const m = await sharp(got).toColourspace('b-w').raw().toBuffer();
    expect([...m].filter((v) => v === 255).length).toBe(80);
  }, 60_000);

  it('refuses a mask for a model that takes none, and one of another size, naming the param', async () => {
    const mask = await toFile(
      await sharp({ create: { width: 40, height: 30, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
        .png()
        .toBuffer(),
      'mask.png',
      { type: 'image/png' },
    );
    const none = (await client.images
      .edit({ model: 'qwen-image-edit', prompt: 'x', image: await toFile(await photo(), 'in.png'), mask })
      .catch((e: unknown) => e)) as APIError;
    expect(none).toBeInstanceOf(BadRequestError);
    expect(none.param).toBe('mask');
    const small = await toFile(
      await sharp({ create: { width: 4, height: 4, channels: 4, background: '#0000' } })
        .png()
        .toBuffer(),
      'm.png',
    );
    const sized = (await client.images
      .edit({ model: 'sd-inpaint', prompt: 'x', image: await toFile(await photo(), 'in.png'), mask: small })
      .catch((e: unknown) => e)) as APIError;
    expect(sized).toBeInstanceOf(BadRequestError);
    expect(sized.param).toBe('mask');
    expect(sized.message).toMatch(/40x30/);
  }, 60_000);
});

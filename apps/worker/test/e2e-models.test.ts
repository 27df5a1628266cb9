import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody, WorkerInfo } from '@darkroom/contracts';
import {
  ADMIN_TOKEN,
  ComfyuiStandin,
  fixture,
  fixturePath,
  type System,
  spawnApp,
  startSystem,
  waitFor,
  writeTestModels,
} from '@darkroom/testing';
import type * as TfCore from '@tensorflow/tfjs-core';
import type * as TfLayers from '@tensorflow/tfjs-layers';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, waitForFinal } from '../../api/test/helpers.ts';

/*
 * The model pipelines end to end, through the api and a worker process as a station uses them:
 * upscale (the ESRGAN network in the worker), onnx (a model directory the test writes) and
 * comfyui (a stand-in ComfyUI server speaking its HTTP and websocket protocol). The worker is
 * given the backends through its environment only and serves, by default, every pipeline its
 * host can.
 */

let sys: System;
let comfy: ComfyuiStandin;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-models-'));
  const modelDir = writeTestModels(path.join(tmp, 'models'));
  comfy = await ComfyuiStandin.start({ steps: 4, stepMs: 30 });
  sys = await startSystem({
    env: { DARKROOM_RETRY_BACKOFF_MS: '300', DARKROOM_JOB_TIMEOUT_SECONDS: '30' },
    workerEnv: { DARKROOM_COMFYUI_URL: comfy.url, DARKROOM_MODEL_DIR: modelDir, DARKROOM_COMFYUI_REQUEST_TIMEOUT_MS: '3000' },
  });
});
afterAll(async () => {
  await sys?.stop();
  await comfy?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const admin = { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;

async function submitImage(pipeline: string, params: object, image?: Buffer) {
  const res = await submit(sys, multipart({ pipeline, params: JSON.stringify(params) }, image ? { data: image } : undefined));
  expect(res.status).toBe(202);
  return ((await res.json()) as JobStatusBody).id;
}

async function result(id: string): Promise<Buffer> {
  const res = await sys.fetch(`/v1/jobs/${id}/result`);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

describe('a worker with model backends', () => {
  it('serves every pipeline its host can and reports device, models and model load time in /v1/queue', async () => {
    const body = (await (await sys.fetch('/v1/queue', admin)).json()) as { pipelines: { name: string; workers: WorkerInfo[] }[] };
    for (const name of ['edit', 'synthetic', 'upscale', 'comfyui', 'onnx']) {
      const p = body.pipelines.find((q) => q.name === name);
      expect(
        p?.workers.map((w) => w.name),
        name,
      ).toEqual(['w1']);
    }
    const w = body.pipelines.find((p) => p.name === 'onnx')!.workers[0]!;
    expect(w.pipelines).toEqual(['edit', 'synthetic', 'upscale', 'comfyui', 'onnx']);
    expect(w.device).toMatch(/^(cpu \(|gpu: )/);
    expect(w.modelLoadMs).toBeGreaterThan(0);
    expect(w.models).toEqual({ onnx: ['invert', 'nearest2x'] });
    expect(w.pipelineDevices).toMatchObject({ upscale: 'cpu: tfjs wasm', comfyui: 'comfyui: cuda:0 NVIDIA Stand-in GPU (24576 MiB)' });
    expect(w.pipelineDevices?.onnx).toMatch(/^(cpu|cuda: .+)$/);
  });

  it('leaves out, and says why, the pipelines whose backend is not configured', async () => {
    const w = await sys.addWorker({ DARKROOM_WORKER_NAME: 'plain', DARKROOM_COMFYUI_URL: '', DARKROOM_MODEL_DIR: '' });
    expect(w.output()).toMatch(/"pipeline":"comfyui","reason":"DARKROOM_COMFYUI_URL is not set"/);
    expect(w.output()).toMatch(/"pipeline":"onnx","reason":"DARKROOM_MODEL_DIR is not set"/);
    expect(w.output()).toMatch(/"pipelines":\["edit","synthetic","upscale"\].*"msg":"worker ready"/);
    await w.stop('SIGTERM');
  });

  it('stops at start, naming the variable, when a pipeline it is told to serve has no backend', async () => {
    const h = spawnApp('worker', { ...sys.env, DARKROOM_WORKER_NAME: 'strict', DARKROOM_WORKER_PIPELINES: 'upscale,comfyui' });
    const exit = await h.exited;
    expect(exit.code).toBe(78);
    expect(h.output()).toMatch(/DARKROOM_WORKER_PIPELINES names comfyui, but DARKROOM_COMFYUI_URL is not set/);
  });
});

describe('upscale', () => {
  it("doubles the image with the ESRGAN network: the network's own output, not a resize", async () => {
    const width = 90;
    const height = 70;
    const png = await sharp(fixture('Landscape_8.jpg')).resize(width, height, { fit: 'fill' }).png().toBuffer();
    const id = await submitImage('upscale', {}, png);
    const final = await waitForFinal(sys, id, 'alpha', 60_000);
    expect(final.status).toBe('completed');
    expect(final.result).toMatchObject({ contentType: 'image/png', width: width * 2, height: height * 2 });
    const out = await sharp(await result(id))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect([out.info.width, out.info.height, out.info.channels]).toEqual([width * 2, height * 2, 3]);

    // The same network, run here over the whole image from the package's weights.
    const rgb = await sharp(png).removeAlpha().raw().toBuffer();
    const expected = await esrgan(rgb, width, height);
    let max = 0;
    for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(out.data[i]! - expected[i]!));
    expect(max).toBeLessThanOrEqual(1);
    const bicubic = await sharp(rgb, { raw: { width, height, channels: 3 } })
      .resize(width * 2, height * 2, { kernel: 'cubic' })
      .raw()
      .toBuffer();
    let sum = 0;
    for (let i = 0; i < bicubic.length; i++) sum += Math.abs(out.data[i]! - bicubic[i]!);
    expect(sum / bicubic.length).toBeGreaterThan(1.5);
  });
});

describe('onnx', () => {
  it('runs a model from the model directory: the inverting convolution inverts every pixel', async () => {
    const id = await submitImage('onnx', { model: 'invert' }, fixture('with-alpha.png'));
    const final = await waitForFinal(sys, id);
    expect(final.status).toBe('completed');
    const got = await sharp(await result(id))
      .raw()
      .toBuffer({ resolveWithObject: true });
    const src = await sharp(fixturePath('with-alpha.png')).raw().toBuffer({ resolveWithObject: true });
    expect([got.info.width, got.info.height, got.info.channels]).toEqual([src.info.width, src.info.height, 4]);
    let wrong = 0;
    for (let i = 0; i < src.data.length; i += 4) {
      for (let c = 0; c < 3; c++) if (got.data[i + c] !== 255 - src.data[i + c]!) wrong++;
      if (got.data[i + 3] !== src.data[i + 3]) wrong++;
    }
    expect(wrong).toBe(0);
  });

  it('fails a model the worker does not have as invalid_input, at once', async () => {
    const id = await submitImage('onnx', { model: 'missing' }, fixture('with-alpha.png'));
    const final = await waitForFinal(sys, id);
    expect(final).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'invalid_input' } });
    expect(final.error!.message).toMatch(/unknown model "missing"; this worker has invert, nearest2x/);
  });
});

const require = createRequire(import.meta.url);

/** The ESRGAN network over a whole image, from @upscalerjs/default-model's files, with tfjs on wasm. */
async function esrgan(rgb: Buffer, width: number, height: number): Promise<Uint8Array> {
  const tf = require('@tensorflow/tfjs-core') as typeof TfCore;
  const tfl = require('@tensorflow/tfjs-layers') as typeof TfLayers;
  const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
  await tf.setBackend('wasm');
  let dir = path.dirname(require.resolve('@upscalerjs/default-model'));
  while (!fs.existsSync(path.join(dir, 'models', 'model.json'))) dir = path.dirname(dir);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'models', 'model.json'), 'utf8'));
  const bin = fs.readFileSync(path.join(dir, 'models', json.weightsManifest[0].paths[0]));
  const model = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    }),
  );
  return tf.tidy(() => {
    const y = model.predict(tf.tensor4d(Float32Array.from(rgb), [1, height, width, 3])) as TfCore.Tensor;
    return Uint8Array.from(y.dataSync(), (v) => Math.max(0, Math.min(255, Math.round(v))));
  });
}

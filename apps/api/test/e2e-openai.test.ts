import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { STATIONS, type System, startSystem } from '@darkroom/testing';
import OpenAI, { APIError, AuthenticationError, BadRequestError, toFile } from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The OpenAI Images API as the official SDK calls it, against a real api and worker: each image
 * is a Darkroom job, and errors come back as the SDK's own error classes.
 */

let sys: System;
let client: OpenAI;
const modelsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-openai-')), 'models.json');
beforeAll(async () => {
  fs.writeFileSync(modelsFile, JSON.stringify({ 'gpt-image-1': { pipeline: 'synthetic', params: { steps: 2, stepMs: 0, seed: 7 } } }));
  sys = await startSystem({ workers: 1, apiEnv: { DARKROOM_OPENAI_MODELS: modelsFile } });
  client = new OpenAI({ apiKey: STATIONS.alpha.key, baseURL: `${sys.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await sys?.stop();
});

describe('the OpenAI SDK', () => {
  it('generates with synthetic: the b64 PNG has the size asked for, and the jobs are the station’s', async () => {
    const res = await client.images.generate({ model: 'synthetic', prompt: 'a test card', size: '96x64', n: 2 });
    expect(res.data).toHaveLength(2);
    for (const image of res.data ?? []) {
      const meta = await sharp(Buffer.from(image.b64_json!, 'base64')).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 96, 64]);
    }
    expect(res.created).toBeGreaterThan(0);
  });

  it('serves an operator’s model name (DARKROOM_OPENAI_MODELS) as its pipeline', async () => {
    const res = await client.images.generate({ model: 'gpt-image-1', prompt: 'x', size: '40x30', response_format: 'url' });
    const id = /\/v1\/jobs\/([^/]+)\/result$/.exec(res.data![0]!.url!)![1]!;
    const job = (await (await sys.fetch(`/v1/jobs/${id}`)).json()) as { pipeline: string; params?: unknown };
    expect(job.pipeline).toBe('synthetic');
    const image = await sys.fetch(`/v1/jobs/${id}/result`);
    const meta = await sharp(Buffer.from(await image.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([40, 30]);
  });

  it('answers a url to the job’s result route, which the job status lists', async () => {
    const res = await client.images.generate({ model: 'synthetic', prompt: 'x', size: '32x32', response_format: 'url' });
    const url = new URL(res.data![0]!.url!);
    const id = /^\/v1\/jobs\/([^/]+)\/result$/.exec(url.pathname)![1]!;
    const job = (await (await sys.fetch(`/v1/jobs/${id}`)).json()) as { status: string; pipeline: string };
    expect(job).toMatchObject({ status: 'completed', pipeline: 'synthetic' });
    const image = await sys.fetch(url.pathname);
    expect((await sharp(Buffer.from(await image.arrayBuffer())).metadata()).width).toBe(32);
  });

  it('makes one job for a repeated Idempotency-Key', async () => {
    const headers = { 'Idempotency-Key': `openai-${Date.now()}` };
    const params = { model: 'synthetic', prompt: 'x', size: '16x16', response_format: 'url' } as const;
    const a = await client.images.generate(params, { headers });
    const b = await client.images.generate(params, { headers });
    expect(b.data![0]!.url).toBe(a.data![0]!.url);
  });

  it('edits with upscale: the output is twice the input’s size', async () => {
    const input = await sharp({ create: { width: 24, height: 16, channels: 3, background: { r: 200, g: 40, b: 90 } } })
      .png()
      .toBuffer();
    const res = await client.images.edit({
      model: 'upscale',
      prompt: 'sharper',
      image: await toFile(input, 'in.png', { type: 'image/png' }),
    });
    const meta = await sharp(Buffer.from(res.data![0]!.b64_json!, 'base64')).metadata();
    expect([meta.width, meta.height]).toEqual([48, 32]);
  }, 120_000);

  it('makes variations with upscale, n jobs for n images', async () => {
    const input = await sharp({ create: { width: 10, height: 12, channels: 3, background: { r: 10, g: 140, b: 90 } } })
      .png()
      .toBuffer();
    const res = await client.images.createVariation({
      model: 'upscale',
      n: 2,
      image: await toFile(input, 'in.png', { type: 'image/png' }),
    });
    expect(res.data).toHaveLength(2);
    for (const image of res.data ?? []) {
      const meta = await sharp(Buffer.from(image.b64_json!, 'base64')).metadata();
      expect([meta.width, meta.height]).toEqual([20, 24]);
    }
  }, 120_000);

  it('raises AuthenticationError for a wrong key', async () => {
    const wrong = new OpenAI({ apiKey: 'not-a-station-key', baseURL: `${sys.url}/v1`, maxRetries: 0 });
    const err = await wrong.images.generate({ model: 'synthetic', prompt: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as AuthenticationError).status).toBe(401);
  });

  it('raises APIError with a message for an unknown model, and says a retry cannot help', async () => {
    const err = await client.images.generate({ model: 'dall-e-9', prompt: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    const e = err as APIError;
    expect(e.status).toBe(404);
    expect(e.message).toContain('unknown pipeline "dall-e-9"');
    expect(e.error).toMatchObject({ type: 'invalid_request_error', code: 'not_found', param: null });
    expect(e.headers?.get('x-should-retry')).toBe('false');
  });

  it('refuses a model of the wrong kind, naming the param', async () => {
    const err = (await client.images.generate({ model: 'upscale', prompt: 'x' }).catch((e: unknown) => e)) as APIError;
    expect(err.status).toBe(400);
    expect(err.param).toBe('model');
    expect(err.message).toContain('needs an image');
  });

  it('accepts and ignores `user`; refuses a mask, naming the param', async () => {
    const input = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const image = () => toFile(input, 'in.png', { type: 'image/png' });
    const res = await client.images.edit({ model: 'upscale', prompt: 'x', user: 'end-user-42', image: await image() });
    expect((await sharp(Buffer.from(res.data![0]!.b64_json!, 'base64')).metadata()).width).toBe(16);
    const err = (await client.images
      .edit({ model: 'upscale', prompt: 'x', image: await image(), mask: await toFile(input, 'mask.png', { type: 'image/png' }) })
      .catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.param).toBe('mask');
    expect(err.headers?.get('x-should-retry')).toBe('false');
  }, 120_000);
});

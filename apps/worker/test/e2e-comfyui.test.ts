import type { JobStatusBody, QueueBody, WorkerInfo } from '@darkroom/contracts';
import { ADMIN_TOKEN, COMFY_DIALECTS, ComfyuiStandin, fixture, type System, startSystem, waitFor } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, waitForFinal } from '../../api/test/helpers.ts';

/*
 * The comfyui pipeline end to end, through the api and a worker process, against a stand-in of
 * each generation of ComfyUI's server: what a station sees (status, progress, result image,
 * failures) and what the ComfyUI server is left with (no history, no inputs outside temp).
 */

async function submitImage(sys: System, params: object, image?: Buffer) {
  const res = await submit(sys, multipart({ pipeline: 'comfyui', params: JSON.stringify(params) }, image ? { data: image } : undefined));
  expect(res.status).toBe(202);
  return ((await res.json()) as JobStatusBody).id;
}

const admin = { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;

/** Each worker serving comfyui, as /v1/queue shows it. */
async function comfyWorkers(sys: System): Promise<WorkerInfo[]> {
  const body = (await (await sys.fetch('/v1/queue', admin)).json()) as QueueBody;
  return body.pipelines.find((p) => p.name === 'comfyui')?.workers ?? [];
}

async function status(sys: System, id: string): Promise<JobStatusBody> {
  return (await (await sys.fetch(`/v1/jobs/${id}`)).json()) as JobStatusBody;
}

describe.each(COMFY_DIALECTS)('comfyui against a %s ComfyUI', (dialect) => {
  let sys: System;
  let comfy: ComfyuiStandin;

  beforeAll(async () => {
    comfy = await ComfyuiStandin.start({ dialect, steps: 4, stepMs: 30 });
    sys = await startSystem({
      env: { DARKROOM_RETRY_BACKOFF_MS: '200', DARKROOM_JOB_TIMEOUT_SECONDS: '30' },
      workerEnv: { DARKROOM_WORKER_PIPELINES: 'comfyui', DARKROOM_COMFYUI_URL: comfy.url, DARKROOM_COMFYUI_REQUEST_TIMEOUT_MS: '3000' },
    });
  });
  afterAll(async () => {
    await sys?.stop();
    await comfy?.stop();
  });

  it('runs txt2img with its progress and stores the image; ComfyUI keeps no history of it', async () => {
    const id = await submitImage(sys, { workflow: 'txt2img', prompt: 'a lighthouse', seed: 42, width: 320, height: 256 });
    const seen: number[] = [];
    const final = await waitFor(
      async () => {
        const s = await status(sys, id);
        if (s.progress) seen.push(s.progress.percent);
        return ['completed', 'failed', 'cancelled'].includes(s.status) ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 10, what: 'txt2img job' },
    );
    expect(final.status).toBe('completed');
    expect(final.result).toMatchObject({ contentType: 'image/png', width: 320, height: 256 });
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    const out = await sharp(Buffer.from(await (await sys.fetch(`/v1/jobs/${id}/result`)).arrayBuffer())).metadata();
    expect([out.format, out.width, out.height]).toEqual(['png', 320, 256]);
    const sent = comfy.prompts.at(-1)!;
    expect(sent.prompt['6']!.inputs.text).toBe('a lighthouse');
    expect(sent.clientId).toBe(`darkroom:${id}:1`);
    await waitFor(() => comfy.historyIds.length === 0, { what: 'the history entry deleted' });
  });

  it("shows the backend's version, memory and health in /v1/queue", async () => {
    const [w] = await comfyWorkers(sys);
    expect(w!.backends?.comfyui).toMatchObject({
      kind: 'comfyui',
      version: { legacy: '0.3.10', '2025': '0.3.60', current: '0.36.0' }[dialect],
      healthy: true,
      vramTotalBytes: 25769803776,
      vramFreeBytes: 24696061952,
    });
  });

  it('runs img2img on the uploaded image, uploaded to the temp folder', async () => {
    const png = await sharp(fixture('Landscape_1.jpg')).resize(120, 80).png().toBuffer();
    const id = await submitImage(sys, { workflow: 'img2img', prompt: 'a watercolour' }, png);
    expect((await waitForFinal(sys, id)).status).toBe('completed');
    const got = await sharp(Buffer.from(await (await sys.fetch(`/v1/jobs/${id}/result`)).arrayBuffer()))
      .negate()
      .raw()
      .toBuffer();
    expect(Buffer.compare(got, await sharp(png).raw().toBuffer())).toBe(0);
    expect(comfy.files.filter((f) => f.startsWith('input/'))).toEqual([]);
  });

  it('cancels a running prompt: ComfyUI stops that prompt', async () => {
    comfy.scenarios.push('hang');
    const id = await submitImage(sys, { workflow: 'txt2img', prompt: 'slow' });
    await waitFor(async () => (await status(sys, id)).progress?.message?.startsWith('step') ?? false, {
      timeoutMs: 20_000,
      what: 'the prompt to run',
    });
    expect((await sys.fetch(`/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(202);
    expect((await waitForFinal(sys, id)).status).toBe('cancelled');
    await waitFor(() => comfy.finished.at(-1)?.status === 'interrupted', { what: 'the interrupt' });
    expect(comfy.interrupts).toContain(comfy.prompts.at(-1)!.promptId);
    expect(comfy.queueLength).toBe(0);
  });

  it('fails a node error as pipeline_error without retrying, and retries running out of GPU memory', async () => {
    comfy.scenarios.push('execution_error');
    const failed = await waitForFinal(sys, await submitImage(sys, { workflow: 'txt2img', prompt: 'x' }));
    expect(failed).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'pipeline_error' } });
    expect(failed.error!.message).toMatch(/KSampler/);
    comfy.scenarios.push('oom');
    const retried = await waitForFinal(sys, await submitImage(sys, { workflow: 'txt2img', prompt: 'x', width: 64, height: 64 }));
    expect(retried).toMatchObject({ status: 'completed', attempts: 2 });
    expect(comfy.requests.some((r) => r.path === '/free')).toBe(true);
  });

  it('survives a lost answer to POST /prompt without running the prompt twice', async () => {
    const before = comfy.prompts.length;
    comfy.dropNextPromptAnswer = true;
    const final = await waitForFinal(sys, await submitImage(sys, { workflow: 'txt2img', prompt: 'x', width: 64, height: 64 }));
    expect(final).toMatchObject({ status: 'completed', attempts: 1 });
    expect(comfy.prompts.length - before).toBe(1);
  });
});

describe('an unhealthy ComfyUI', () => {
  let sys: System;
  let broken: ComfyuiStandin;
  let healthy: ComfyuiStandin;

  beforeAll(async () => {
    broken = await ComfyuiStandin.start({ steps: 2, stepMs: 10 });
    healthy = await ComfyuiStandin.start({ steps: 2, stepMs: 10 });
    healthy.hold = true;
    broken.cudaBroken = true;
    sys = await startSystem({
      env: { DARKROOM_RETRY_BACKOFF_MS: '100', DARKROOM_JOB_ATTEMPTS: '5' },
      workerEnv: {
        DARKROOM_WORKER_PIPELINES: 'comfyui',
        DARKROOM_COMFYUI_REQUEST_TIMEOUT_MS: '3000',
        DARKROOM_COMFYUI_UNHEALTHY_AFTER: '2',
        DARKROOM_BACKEND_PROBE_MS: '200',
      },
      workers: 0,
    });
    await sys.addWorker({ DARKROOM_COMFYUI_URL: broken.url });
  });
  afterAll(async () => {
    await sys?.stop();
    await broken?.stop();
    await healthy?.stop();
  });

  it('stops taking jobs on a worker whose GPU keeps failing; they wait for another worker, and it takes them again once it recovers', async () => {
    const ids = [await submitImage(sys, { workflow: 'txt2img', prompt: 'a', width: 64, height: 64 })];
    await waitFor(async () => broken.prompts.length >= 2, { timeoutMs: 20_000, what: 'two failures' });
    await waitFor(async () => sys.workers[0]!.output().includes('pipeline paused on this worker'), { what: 'the pause' });
    const sent = broken.prompts.length;
    ids.push(await submitImage(sys, { workflow: 'txt2img', prompt: 'b', width: 64, height: 64 }));
    await new Promise((r) => setTimeout(r, 1000));
    await waitFor(
      async () => {
        const b = (await comfyWorkers(sys))[0]?.backends?.comfyui;
        return b?.healthy === false && /2 GPU failures in a row/.test(b.reason ?? '');
      },
      { timeoutMs: 15_000, what: '/v1/queue to show the backend unhealthy' },
    );
    // Queued, not failed, and the broken backend got nothing more.
    for (const id of ids) expect((await status(sys, id)).status).toBe('queued');
    expect(broken.prompts).toHaveLength(sent);

    await sys.addWorker({ DARKROOM_COMFYUI_URL: healthy.url });
    healthy.release();
    for (const id of ids) expect(await waitForFinal(sys, id)).toMatchObject({ status: 'completed' });

    broken.cudaBroken = false;
    await waitFor(async () => sys.workers[0]!.output().includes('pipeline resumed on this worker'), { what: 'the resume' });
    await waitFor(async () => (await comfyWorkers(sys)).find((w) => w.name === 'w1')?.backends?.comfyui?.healthy === true, {
      timeoutMs: 15_000,
      what: '/v1/queue to show the backend healthy again',
    });
  });
});

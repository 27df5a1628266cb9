import { PIPELINE_NAMES, SyntheticParams } from '@darkroom/contracts';
import { ConfigError } from '@darkroom/runtime';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { editPipeline } from '../src/edit.ts';
import { createPipelines, startPipelines } from '../src/registry.ts';
import { SyntheticPipeline, syntheticPipeline } from '../src/synthetic.ts';
import { finishOutput } from '../src/types.ts';
import { captureLogger, makeCtx } from './helpers.ts';

const run = async (params: Partial<SyntheticParams>, ctx = makeCtx()) =>
  finishOutput(await syntheticPipeline.run(null, SyntheticParams.parse(params), ctx));

describe('synthetic', () => {
  it('writes a PNG of the asked size and reports every step', async () => {
    const ctx = makeCtx();
    const out = await run({ steps: 4, stepMs: 1, width: 123, height: 45, seed: 7 }, ctx);
    const meta = await sharp(out.data).metadata();
    expect([out.format, meta.format, out.width, out.height, meta.width, meta.height]).toEqual(['png', 'png', 123, 45, 123, 45]);
    expect(ctx.progress).toEqual([
      { percent: 25, message: 'step 1/4' },
      { percent: 50, message: 'step 2/4' },
      { percent: 75, message: 'step 3/4' },
      { percent: 100, message: 'step 4/4' },
    ]);
  });

  it('is deterministic: same params, same bytes; another seed, other bytes', async () => {
    const a = await run({ steps: 1, stepMs: 0, width: 64, height: 48, seed: 42 });
    const b = await run({ steps: 1, stepMs: 0, width: 64, height: 48, seed: 42 });
    const c = await run({ steps: 1, stepMs: 0, width: 64, height: 48, seed: 43 });
    expect(a.data.equals(b.data)).toBe(true);
    expect(a.data.equals(c.data)).toBe(false);
  });

  it('stops with the abort reason when aborted mid-run', async () => {
    const ctx = makeCtx();
    const reason = new Error('cancelled by station');
    const pending = run({ steps: 100, stepMs: 50 }, ctx);
    setTimeout(() => ctx.controller.abort(reason), 120);
    await expect(pending).rejects.toBe(reason);
    const reported = ctx.progress.length;
    expect(reported).toBeGreaterThan(0);
    expect(ctx.progress.at(-1)?.percent ?? 0).toBeLessThan(100);
    await new Promise((r) => setTimeout(r, 200));
    expect(ctx.progress.length).toBe(reported);
  });
});

describe('synthetic models', () => {
  it('pays loadMs the first time it runs a model and after switching away, keeping the warm set it is allowed', async () => {
    const p = new SyntheticPipeline({ warmModels: 2 });
    const loads: number[] = [];
    const run = async (model: string) => {
      const ctx = makeCtx();
      ctx.reportModelLoad = (ms) => loads.push(ms);
      await finishOutput(await p.run(null, SyntheticParams.parse({ steps: 1, stepMs: 0, width: 4, height: 4, model, loadMs: 80 }), ctx));
    };
    await run('a'); // cold
    await run('a'); // warm
    await run('b'); // cold, a and b loaded
    await run('a'); // warm
    await run('c'); // cold: unloads b (least recently used)
    await run('b'); // cold again
    expect(loads.map((ms) => (ms >= 70 ? 'cold' : ms === 0 ? 'warm' : `?${ms}`))).toEqual(['cold', 'warm', 'cold', 'warm', 'cold', 'cold']);
    expect(p.warmModels()).toEqual(['c', 'b']);
  });

  it('reports no model load without a model', async () => {
    const p = new SyntheticPipeline();
    const ctx = makeCtx();
    let called = false;
    ctx.reportModelLoad = () => {
      called = true;
    };
    await finishOutput(await p.run(null, SyntheticParams.parse({ steps: 1, stepMs: 0, width: 4, height: 4 }), ctx));
    expect([called, p.warmModels()]).toEqual([false, []]);
  });
});

describe('registry', () => {
  it('has one pipeline per catalogue entry', () => {
    const all = createPipelines({
      comfyui: { url: undefined, requestTimeoutMs: 1000 },
      onnx: { modelDir: undefined, provider: 'auto' },
      synthetic: {},
    });
    expect(Object.keys(all)).toEqual(PIPELINE_NAMES);
    expect(all.edit).toBe(editPipeline);
    expect(all.synthetic).toBeInstanceOf(SyntheticPipeline);
    for (const [name, p] of Object.entries(all)) expect(p.spec.name).toBe(name);
  });

  it('serves by default what the host can, and stops when a named pipeline cannot run', async () => {
    const all = createPipelines({
      comfyui: { url: undefined, requestTimeoutMs: 1000 },
      onnx: { modelDir: undefined, provider: 'auto' },
      synthetic: {},
    });
    const { logger, records } = captureLogger();
    const started = await startPipelines(all, ['edit', 'synthetic', 'comfyui', 'onnx'], false, logger);
    expect(started.map((s) => s.pipeline.spec.name)).toEqual(['edit', 'synthetic']);
    const skipped = records.filter((r) => r.msg === 'pipeline not served on this host').map((r) => [r.obj.pipeline, r.obj.reason]);
    expect(skipped).toEqual([
      ['comfyui', 'DARKROOM_COMFYUI_URL is not set'],
      ['onnx', 'DARKROOM_MODEL_DIR is not set'],
    ]);
    await expect(startPipelines(all, ['edit', 'onnx'], true, logger)).rejects.toThrow(
      new ConfigError('DARKROOM_WORKER_PIPELINES names onnx, but DARKROOM_MODEL_DIR is not set'),
    );
  });
});

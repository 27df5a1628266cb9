import { PIPELINE_NAMES, type PipelineName } from '@darkroom/contracts';
import { type Config, ConfigError, type Logger } from '@darkroom/runtime';
import { type ComfyuiOptions, ComfyuiPipeline } from './comfyui.ts';
import { editPipeline } from './edit.ts';
import { type OnnxOptions, OnnxPipeline } from './onnx.ts';
import { type SyntheticOptions, SyntheticPipeline } from './synthetic.ts';
import type { Pipeline, PipelineStatus } from './types.ts';
import { upscalePipeline } from './upscale.ts';

export interface PipelineSettings {
  comfyui: ComfyuiOptions;
  onnx: OnnxOptions;
  synthetic: SyntheticOptions;
}

export function pipelineSettings(config: Config): PipelineSettings {
  const m = config.models;
  return {
    comfyui: {
      url: m.comfyuiUrl,
      requestTimeoutMs: m.comfyuiRequestTimeoutMs,
      workflowsDir: m.comfyuiWorkflowsDir,
      unhealthyAfter: m.comfyuiUnhealthyAfter,
    },
    onnx: { modelDir: m.modelDir, provider: m.onnxProvider },
    synthetic: { warmModels: m.syntheticWarmModels },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: each pipeline has its own params type; the worker parses them with spec.params.
export type AnyPipeline = Pipeline<any>;

/** One instance of every pipeline of the catalogue, configured. */
export function createPipelines(settings: PipelineSettings): Record<PipelineName, AnyPipeline> {
  return {
    edit: editPipeline,
    synthetic: new SyntheticPipeline(settings.synthetic),
    upscale: upscalePipeline,
    comfyui: new ComfyuiPipeline(settings.comfyui),
    onnx: new OnnxPipeline(settings.onnx),
  };
}

export interface StartedPipeline {
  pipeline: AnyPipeline;
  /** Time its init took (model loading), in ms. */
  initMs: number;
}

/**
 * The pipelines a worker serves, initialised. Named in DARKROOM_WORKER_PIPELINES (`explicit`):
 * each must be servable and start, or the worker stops with a ConfigError saying why. Not
 * named: every pipeline this host can serve — one whose backend is not configured is left out,
 * as is one whose start fails — and the log says which and why.
 */
export async function startPipelines(
  all: Record<string, AnyPipeline>,
  names: readonly string[],
  explicit: boolean,
  logger: Logger,
): Promise<StartedPipeline[]> {
  const started: StartedPipeline[] = [];
  for (const name of names) {
    const pipeline = Object.hasOwn(all, name) ? all[name] : undefined;
    if (!pipeline) throw new ConfigError(`DARKROOM_WORKER_PIPELINES: unknown pipeline ${name}; known: ${PIPELINE_NAMES.join(', ')}`);
    const reason = await pipeline.unavailable?.();
    if (reason) {
      if (explicit) throw new ConfigError(`DARKROOM_WORKER_PIPELINES names ${name}, but ${reason}`);
      logger.info({ pipeline: name, reason }, 'pipeline not served on this host');
      continue;
    }
    const t = performance.now();
    try {
      await pipeline.init?.(logger.child({ pipeline: name }));
    } catch (err) {
      const message = (err as Error).message;
      if (explicit) throw new ConfigError(`pipeline ${name} did not start: ${message}`);
      logger.error({ pipeline: name, err: message }, 'pipeline not served: it did not start');
      continue;
    }
    const initMs = Math.round(performance.now() - t);
    logger.info({ pipeline: name, ms: initMs, ...(await pipelineStatus(pipeline)) }, 'pipeline ready');
    started.push({ pipeline, initMs });
  }
  return started;
}

/**
 * A pipeline's status, or undefined when it has none, throws, or takes longer than `timeoutMs`:
 * a slow backend check must not hold up the heartbeat that carries every other figure.
 */
export async function pipelineStatus(pipeline: AnyPipeline, timeoutMs = 2000): Promise<PipelineStatus | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(() => pipeline.status?.()),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      }),
    ]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

import type { BlobRef, OutputFormat, PipelineSpec } from '@darkroom/contracts';
import type { Logger } from '@darkroom/core';

/** The input image as the worker hands it to a pipeline: a local file and what the API learned of it. */
export interface PipelineInput {
  path: string;
  ref: BlobRef & { pages?: number };
}

export interface PipelineContext {
  /** Aborted on cancel, timeout or forced shutdown; `signal.reason` says which. Pipelines must stop promptly. */
  signal: AbortSignal;
  /** Progress in percent (0–100) with an optional human message, e.g. "step 4/10". */
  reportProgress(percent: number, message?: string): Promise<void>;
  logger: Logger;
  limits: { maxImagePixels: number };
}

export interface PipelineOutput {
  data: Buffer;
  format: OutputFormat;
  width: number;
  height: number;
}

/**
 * A pipeline plugin. `params` arrive already parsed by `spec.params` (defaults applied).
 * Throw InvalidInputError for input a retry cannot fix, BackendUnavailableError for transient
 * trouble; anything else fails the attempt as `pipeline_error` and is retried.
 */
/** What a worker tells about a pipeline in its heartbeat. */
export interface PipelineStatus {
  /** Where it runs, when that is not the worker's own device (e.g. "cuda: NVIDIA H100 …"). */
  device?: string;
  /** The models it serves (onnx). */
  models?: string[];
}

export interface Pipeline<P = unknown> {
  spec: PipelineSpec;
  /**
   * Why this host cannot serve the pipeline (its backend is not configured), or undefined when it
   * can. Asked before init: a worker serves by default every pipeline its host can.
   */
  unavailable?(): Promise<string | undefined>;
  /** Loads models or warms caches once per worker process, before the first job. */
  init?(logger: Logger): Promise<void>;
  /** For the heartbeat, after init. */
  status?(): PipelineStatus;
  run(input: PipelineInput | null, params: P, ctx: PipelineContext): Promise<PipelineOutput>;
  close?(): Promise<void>;
}

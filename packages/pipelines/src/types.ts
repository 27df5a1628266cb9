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
export interface Pipeline<P = unknown> {
  spec: PipelineSpec;
  /** Loads models or warms caches once per worker process, before the first job. */
  init?(logger: Logger): Promise<void>;
  run(input: PipelineInput | null, params: P, ctx: PipelineContext): Promise<PipelineOutput>;
  close?(): Promise<void>;
}

import type { BackendStatus, BlobRef, OutputFormat, PipelineSpec } from '@darkroom/contracts';
import type { Logger } from '@darkroom/runtime';

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
  /** The job and which attempt this is (1 for the first), for names a backend keeps per attempt. */
  job?: { id: string; attempt: number };
  /**
   * How long the model this job needs took to load onto the device before it could run (0 when
   * it was loaded already): shown on the job (coldStart, modelLoadMs) and counted in the
   * station's usage as part of its device time. Called once per run, when known.
   */
  reportModelLoad?(ms: number): void;
}

export interface PipelineOutput {
  data: Buffer;
  format: OutputFormat;
  width: number;
  height: number;
}

/**
 * What `run` returns when the part that needs the device (the model) is done and what is left
 * (encoding, downloading) needs only the CPU. The worker releases the job's device slot, lets the
 * next job's compute start, and calls `finish` once. `finish` still runs under the job's context:
 * its `signal` aborts on cancel, timeout and forced shutdown, and it may report progress.
 */
export interface ComputeDone {
  finish(): Promise<PipelineOutput>;
}

/** A pipeline that cannot split its work returns the output itself; one that can returns ComputeDone. */
export type PipelineResult = PipelineOutput | ComputeDone;

export function isComputeDone(result: PipelineResult): result is ComputeDone {
  return typeof (result as Partial<ComputeDone>).finish === 'function';
}

/** The output, running the finish step when there is one (for callers that do not share a device). */
export async function finishOutput(result: PipelineResult): Promise<PipelineOutput> {
  return isComputeDone(result) ? result.finish() : result;
}

/** What a worker tells about a pipeline in its heartbeat. */
export interface PipelineStatus {
  /** Where it runs, when that is not the worker's own device (e.g. "cuda: NVIDIA H100 …"). */
  device?: string;
  /** The models it serves (onnx). */
  models?: string[];
  /** The backend it runs on and whether it is healthy; no URLs or host addresses (stations see it in /v1/queue). */
  backend?: BackendStatus;
}

/**
 * A pipeline plugin. `params` arrive already parsed by `spec.params` (defaults applied).
 * Throw InvalidInputError for input a retry cannot fix, BackendUnavailableError for transient
 * trouble; anything else fails the attempt as `pipeline_error` and is retried.
 */
export interface Pipeline<P = unknown> {
  spec: PipelineSpec;
  /**
   * Why this host cannot serve the pipeline (its backend is not configured), or undefined when it
   * can. Asked before init: a worker serves by default every pipeline its host can.
   */
  unavailable?(): Promise<string | undefined>;
  /** Loads models or warms caches once per worker process, before the first job. */
  init?(logger: Logger): Promise<void>;
  /**
   * For the heartbeat, after init: asked again at every beat (every 5 s), so it should answer from
   * what the pipeline already knows. A promise that takes longer than 2 s is not waited for.
   */
  status?(): PipelineStatus | Promise<PipelineStatus>;
  /**
   * After run threw BackendUnhealthyError: whether the backend is healthy again. The worker takes
   * none of the pipeline's jobs until this resolves true.
   */
  probe?(): Promise<boolean>;
  /** The models loaded now (warm): jobs needing one of them run without a model load. */
  warmModels?(): string[];
  /**
   * Runs the job while it holds one of the worker's device slots. Returns the output, or, when
   * the rest of the work needs no device, `ComputeDone` with that rest as its finish step.
   */
  run(input: PipelineInput | null, params: P, ctx: PipelineContext): Promise<PipelineResult>;
  close?(): Promise<void>;
}

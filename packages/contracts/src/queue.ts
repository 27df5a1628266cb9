import { z } from 'zod';
import { Priority } from './priority.ts';

/** One GPU as the worker's `nvidia-smi` reads it; a figure the driver does not report (`[N/A]`) is left out. */
export const GpuReport = z.object({
  index: z.number().int(),
  name: z.string(),
  memoryTotalMiB: z.number().int().optional(),
  memoryUsedMiB: z.number().int().optional(),
  /** Share of the last sample period a kernel ran, 0–100. */
  utilizationPercent: z.number().optional(),
});
export type GpuReport = z.infer<typeof GpuReport>;

/**
 * The backend a pipeline runs on (e.g. a ComfyUI server, an ONNX Runtime provider), as the
 * pipeline last found it. No addresses: stations can read it.
 */
export const BackendStatus = z.object({
  kind: z.string(),
  version: z.string().optional(),
  healthy: z.boolean(),
  /** Why it is not healthy. */
  reason: z.string().optional(),
  vramTotalBytes: z.number().int().optional(),
  vramFreeBytes: z.number().int().optional(),
  /** When the pipeline last checked (ISO 8601). */
  checkedAt: z.string(),
});
export type BackendStatus = z.infer<typeof BackendStatus>;

export const WorkerInfo = z.object({
  name: z.string(),
  pipelines: z.array(z.string()),
  activeJobs: z.number().int(),
  processed: z.number().int(),
  failed: z.number().int(),
  lastSeen: z.string(),
  /** What the worker computes on: its GPUs with their memory ("gpu: NVIDIA H100 80GB HBM3 (81559 MiB)"), else its CPU. */
  device: z.string(),
  concurrency: z.number().int().optional(),
  /** Where pipelines run when not on the worker itself or not as plain CPU work, e.g. onnx → "cuda: NVIDIA …", comfyui → its server's GPU. */
  pipelineDevices: z.record(z.string(), z.string()).optional(),
  /** The models a pipeline serves (onnx: the names of the model directory's usable models). */
  models: z.record(z.string(), z.array(z.string())).optional(),
  /** Time the worker spent loading its pipelines' models at start, in ms. */
  modelLoadMs: z.number().int().optional(),
  /** Per pipeline, the models this worker (one device) has loaded now: jobs needing them start without a model load. */
  warmModels: z.record(z.string(), z.array(z.string())).optional(),
  /** The worker's GPUs, read every DARKROOM_GPU_POLL_SECONDS; absent where there is no `nvidia-smi` or it fails. */
  gpus: z.array(GpuReport).optional(),
  /** Per pipeline, the backend it runs on, for the pipelines that report one; fresh at every heartbeat. */
  backends: z.record(z.string(), BackendStatus).optional(),
});
export type WorkerInfo = z.infer<typeof WorkerInfo>;

/** What `POST /v1/admin/pipelines/{name}/purge` answers. */
export const PurgeBody = z.object({
  pipeline: z.string(),
  /** Jobs that had not started, now `cancelled`. */
  cancelled: z.int().nonnegative(),
});
export type PurgeBody = z.infer<typeof PurgeBody>;

export const PipelineQueueInfo = z.object({
  name: z.string(),
  paused: z.boolean(),
  waiting: z.object({
    critical: z.number().int(),
    high: z.number().int(),
    normal: z.number().int(),
    low: z.number().int(),
    total: z.number().int(),
  }),
  active: z.number().int(),
  completed: z.number().int(),
  failed: z.number().int(),
  workers: z.array(WorkerInfo),
  avgProcessingMs: z.number().nullable(),
  throughputPerMinute: z.number().nullable(),
});
export type PipelineQueueInfo = z.infer<typeof PipelineQueueInfo>;

export const QueueBody = z.object({
  pipelines: z.array(PipelineQueueInfo),
  limits: z.object({
    maxUploadBytes: z.number().int().nullable(),
    maxImageEdge: z.number().int().nullable(),
    maxImagePixels: z.number().int().nullable(),
    maxQueueSize: z.number().int().nullable(),
    station: z
      .object({
        name: z.string(),
        maxPending: z.number().int().nullable(),
        maxPriority: Priority,
        pending: z.number().int(),
      })
      .optional(),
  }),
});
export type QueueBody = z.infer<typeof QueueBody>;

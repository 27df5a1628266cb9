import { z } from 'zod';
import { Priority } from './priority.ts';

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
});
export type WorkerInfo = z.infer<typeof WorkerInfo>;

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

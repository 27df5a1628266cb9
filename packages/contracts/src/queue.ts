import { z } from 'zod';
import { Priority } from './priority.ts';

export const WorkerInfo = z.object({
  name: z.string(),
  pipelines: z.array(z.string()),
  activeJobs: z.number().int(),
  processed: z.number().int(),
  failed: z.number().int(),
  lastSeen: z.string(),
  device: z.string(),
  concurrency: z.number().int().optional(),
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

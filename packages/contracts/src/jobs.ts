import { z } from 'zod';
import { Priority } from './priority.ts';
import type { WebhookEventName } from './webhook-events.ts';

export const JOB_STATUSES = ['queued', 'active', 'completed', 'failed', 'cancelled'] as const;
export const JobStatus = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof JobStatus>;

/** Why a job failed (docs/contract.md, `error.code`). */
export const FAILURE_CODES = ['invalid_input', 'pipeline_error', 'timeout', 'expired', 'worker_lost', 'backend_unavailable'] as const;
export const FailureCode = z.enum(FAILURE_CODES);
export type FailureCode = z.infer<typeof FailureCode>;

/** Formats the server accepts as input, judged by content. */
export const INPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff'] as const;
export const InputFormat = z.enum(INPUT_FORMATS);
export type InputFormat = z.infer<typeof InputFormat>;

export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff'] as const;
export const OutputFormat = z.enum(OUTPUT_FORMATS);
export type OutputFormat = z.infer<typeof OutputFormat>;

export const CONTENT_TYPES: Record<OutputFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  gif: 'image/gif',
  tiff: 'image/tiff',
};

export const FILE_EXTENSIONS: Record<OutputFormat, string> = {
  jpeg: 'jpg',
  png: 'png',
  webp: 'webp',
  avif: 'avif',
  gif: 'gif',
  tiff: 'tiff',
};

/** A stored image: where it is in the blob store and what it is. */
export const BlobRef = z.object({
  key: z.string(),
  bytes: z.number().int().nonnegative(),
  sha256: z.string(),
  format: OutputFormat,
  contentType: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
});
export type BlobRef = z.infer<typeof BlobRef>;

/** What the API puts in the BullMQ job; the worker reads it. Versioned for rolling upgrades. */
export interface JobData {
  v: 1;
  station: string;
  pipeline: string;
  priority: Priority;
  params: Record<string, unknown>;
  /** `sourceUrl`: where an input sent by `imageUrl` was fetched from (origin and path only: a query may carry an access signature). */
  input?: BlobRef & { pages?: number; sourceUrl?: string };
  webhookUrl?: string;
  /** The events `webhookUrl` is told of; absent: DEFAULT_WEBHOOK_EVENTS. */
  webhookEvents?: WebhookEventName[];
  /** Execution limit, decided at submit so every worker applies the same one. */
  timeoutMs: number;
  /** The job's own queue time-to-live, when its station set one; else the operator's applies. */
  ttlMs?: number;
  requestId?: string;
  /** The model the job needs (its pipeline's modelOf), for workers that prefer jobs of models they have loaded. */
  model?: string;
  /** How its latest attempt started: whether the worker had to load the model first, and for how long. */
  run?: { coldStart: boolean; modelLoadMs: number };
  /** The failed or cancelled job this one queues again (`POST /v1/jobs/{id}/retry`). */
  retryOf?: string;
}

/** The job's return value: the output image's metadata. */
export type JobResultData = BlobRef;

export const JobLinks = z.object({ self: z.string(), result: z.string(), events: z.string() });

export const JobResultBody = z.object({
  url: z.string(),
  contentType: z.string(),
  width: z.int().positive(),
  height: z.int().positive(),
  bytes: z.int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

export const JobStatusBody = z.object({
  id: z.string(),
  status: JobStatus,
  pipeline: z.string(),
  priority: Priority,
  position: z.number().int().positive().optional(),
  estimatedWaitSeconds: z.int().nonnegative().nullable().optional(),
  progress: z.object({ percent: z.number().min(0).max(100), message: z.string().optional() }).optional(),
  attempts: z.int().nonnegative(),
  createdAt: z.iso.datetime(),
  startedAt: z.iso.datetime().optional(),
  finishedAt: z.iso.datetime().optional(),
  durationMs: z.int().nonnegative().optional(),
  /** Started jobs of pipelines with models: whether the worker had to load the model first. */
  coldStart: z.boolean().optional(),
  /** How long that model load took. */
  modelLoadMs: z.int().nonnegative().optional(),
  result: JobResultBody.optional(),
  error: z.object({ code: FailureCode, message: z.string() }).optional(),
  links: JobLinks,
  deduplicated: z.boolean().optional(),
  cancelRequested: z.boolean().optional(),
  /** The job this one is a retry of. */
  retryOf: z.string().optional(),
  /** The job that retried this one. */
  retriedBy: z.string().optional(),
});
export type JobStatusBody = z.infer<typeof JobStatusBody>;

export const JobListBody = z.object({
  jobs: z.array(JobStatusBody),
  /** Listing (no `ids`): where the next page starts, `null` after the last one. Absent with `ids`. */
  nextCursor: z.string().nullable().optional(),
});

/** Most jobs one page of `GET /v1/jobs` holds, and how many it holds unless told. */
export const JOB_LIST_MAX_LIMIT = 100;
export const JOB_LIST_DEFAULT_LIMIT = 20;

/** Ids are opaque to stations; this pattern lets the API refuse junk before touching Redis. */
export const JOB_ID_PATTERN = /^[a-z][a-z0-9-]{0,31}_[0-9a-z]{20,32}$/;

// The job system: the one writer of a job's Redis state, and the only code that knows BullMQ's internals.
export { admit, backlogRetryAfter, jittered, tooManyPending } from './admission.ts';
export { AFFINITY_SCAN, type AffinityOptions, preferWarm } from './affinity.ts';
export {
  type BlobEntry,
  type BlobStore,
  blobKeys,
  FsBlobStore,
  type LocalBlob,
  type StagedWrite,
  sha256Hex,
} from './blob-store.ts';
export { jobsInProgress, PRIORITY_SCORE_SPAN, priorityScoreRange } from './bullmq.ts';
export { queueEntry, waitingByPriority } from './counts.ts';
export { DeviceSlots, type Lease } from './device-slots.ts';
export { DeviceWorker } from './device-worker.ts';
export { endWaitingJob } from './end-waiting.ts';
export {
  BlobNotFound,
  BlobStoreUnavailable,
  BudgetExceeded,
  IdempotencyConflict,
  ImageTooLarge,
  InvalidImage,
  InvalidSubmit,
  JobExpired,
  JobNotFound,
  JobStateConflict,
  JobsError,
  NoResult,
  PriorityNotAllowed,
  QueueFull,
  ReplicasUnavailable,
  ResultNotReady,
  StationBusy,
  StoreUnavailable,
  UnknownPipeline,
  UnsupportedImage,
} from './errors.ts';
export { EventHub, type JobChange } from './events.ts';
export {
  CLAIM_LEASE_MS,
  canonicalJson,
  claimIdempotencyKey,
  fingerprint,
  IDEMPOTENCY_TTL_SECONDS,
  idempotencyKeyOf,
} from './idempotency.ts';
export { newJobId, pipelineOfJobId } from './ids.ts';
export { decodeJobCursor, encodeJobCursor, type JobCursor, type JobListQuery } from './job-list.ts';
export { type BullState, CANCELLED_REASON, finishedState, jobLinks, statusOf, toStatusBody } from './job-view.ts';
export { sysKeys } from './keys.ts';
export { type FinalHow, JobLifecycle, type JobReader, type LifecycleDeps } from './lifecycle.ts';
export { Maintenance } from './maintenance.ts';
export { openBlobStore } from './open-blob-store.ts';
export { type DarkroomQueue, EVENTS_MAX_LEN, QueueRegistry, queueOptions } from './queues.ts';
export { S3BlobStore, type S3BlobStoreOptions } from './s3-blob-store.ts';
export { type Deps, FINAL_STATUSES, JobService, type LoadedJob } from './service.ts';
export type { Station, Viewer } from './station.ts';
export {
  estimateWaitSeconds,
  type PipelineStats,
  recordCompletion,
  recordModelLoad,
  removeHeartbeat,
  StatsReader,
  WORKER_STALE_MS,
  type WorkerHeartbeat,
  writeHeartbeat,
} from './stats.ts';
export { type RawSubmit, type ValidSubmit, validateSubmit } from './submit.ts';
export { createJobSystem } from './system.ts';
export {
  checkBudget,
  daysBetween,
  deviceSecondsToday,
  readUsage,
  recordUsage,
  secondsToUtcMidnight,
  USAGE_RETENTION_DAYS,
  type UsageEntry,
  usageModel,
  utcDay,
} from './usage.ts';
export { createWebhookQueue, enqueueFinalWebhook, type WebhookQueue } from './webhook-queue.ts';

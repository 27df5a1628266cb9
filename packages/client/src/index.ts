// For a station's webhook receiver: check `Darkroom-Signature` (or the Standard Webhooks
// headers) against the raw body.
export {
  STANDARD_WEBHOOK_ID_HEADER,
  STANDARD_WEBHOOK_SIGNATURE_HEADER,
  STANDARD_WEBHOOK_TIMESTAMP_HEADER,
  standardWebhookSecret,
  verifyStandardWebhook,
  verifyWebhookSignature,
  WEBHOOK_DELIVERY_HEADER,
  WEBHOOK_EVENT_HEADER,
  WEBHOOK_SIGNATURE_HEADER,
} from '@darkroom/contracts/webhook-signature';
export type { ImageInput } from './body.ts';
export {
  type CallOptions,
  DarkroomClient,
  type DarkroomClientOptions,
  type JobList,
  type JobPage,
  type ListJobsOptions,
  type ParamsOf,
  type PipelineInfo,
  type PipelineList,
  type SubmitOptions,
} from './client.ts';
export type { JobStatus, JobStatusBody, Priority, Problem, ProblemCode, QueueBody, WebhookEventName } from './contract-types.ts';
export type { DownloadOptions, DownloadResult } from './download.ts';
export { DarkroomError, DarkroomNetworkError, DarkroomTimeoutError } from './errors.ts';
export { backoffDelay, DEFAULT_RETRY, parseRetryAfter, type RetryOptions } from './retry.ts';
export { readEventStream, type SseEvent } from './sse.ts';
export type { RetryEvent } from './transport.ts';
export { isFinal, type WaitOptions } from './wait.ts';

export {
  signWebhook,
  verifyWebhookSignature,
  WEBHOOK_DELIVERY_HEADER,
  WEBHOOK_EVENT_HEADER,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_USER_AGENT,
} from '@darkroom/contracts';
export {
  createWebhookProcessor,
  type DeliverWebhookOptions,
  deliverWebhook,
  WEBHOOK_DEFAULT_ATTEMPTS,
  WEBHOOK_DEFAULT_BACKOFF_MS,
  WEBHOOK_DEFAULT_RETENTION_SECONDS,
  WEBHOOK_DEFAULT_TIMEOUT_MS,
  WEBHOOK_EVENTS,
  WEBHOOK_MAX_RESPONSE_BYTES,
  WEBHOOK_QUEUE,
  type WebhookEvent,
  type WebhookJobData,
  WebhookPermanentError,
  type WebhookProcessor,
  type WebhookResult,
  WebhookRetryableError,
  webhookJobId,
  webhookJobOptions,
} from './delivery.ts';
export { checkWebhookTarget, isPublicAddress, type LookupFn, type WebhookTargetCheck, webhookAddressRange } from './vetting.ts';

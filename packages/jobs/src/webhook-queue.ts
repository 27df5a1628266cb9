import { DEFAULT_WEBHOOK_EVENTS, type JobData, type JobResultData, type JobStatusBody, type WebhookEventName } from '@darkroom/contracts';
import type { Config } from '@darkroom/runtime';
import {
  WEBHOOK_QUEUE,
  type WebhookEvent,
  type WebhookJobData,
  type WebhookResult,
  webhookJobId,
  webhookJobOptions,
} from '@darkroom/webhooks';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { EVENTS_MAX_LEN } from './queues.ts';

/*
 * Webhooks are delivered from their own queue so a slow or failing receiver never delays a job.
 * Whoever ends a job (the worker, or the API cancelling or expiring a waiting one) enqueues its
 * delivery with an id derived from the job's, so a job announces its final state once. A job
 * that asked for `started` also hears when a worker first takes it.
 */

export type WebhookQueue = Queue<WebhookJobData, WebhookResult>;

export function createWebhookQueue(config: Config, connection: Redis): WebhookQueue {
  return new Queue<WebhookJobData, WebhookResult>(WEBHOOK_QUEUE, {
    connection,
    prefix: config.prefix,
    streams: { events: { maxLen: EVENTS_MAX_LEN } },
  });
}

const EVENT_OF: Record<string, WebhookEventName | undefined> = {
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
};

/** Whether a job's webhook announces `event`: the events it asked for, else the final ones. */
export function wantsWebhookEvent(data: JobData, event: WebhookEventName): boolean {
  return !!data.webhookUrl && (data.webhookEvents ?? DEFAULT_WEBHOOK_EVENTS).includes(event);
}

/** Queues the final-state webhook of a job that asked for it; does nothing otherwise. */
export async function enqueueFinalWebhook(
  queue: WebhookQueue,
  config: Config,
  job: Job<JobData, JobResultData>,
  body: JobStatusBody,
): Promise<void> {
  const event = EVENT_OF[body.status];
  if (!event || !wantsWebhookEvent(job.data, event)) return;
  await enqueue(queue, config, job, event, body, 'final');
}

/** Queues the `job.started` webhook of a job that asked for it (once per job, whatever retries). */
export async function enqueueStartedWebhook(
  queue: WebhookQueue,
  config: Config,
  job: Job<JobData, JobResultData>,
  body: JobStatusBody,
): Promise<void> {
  if (!wantsWebhookEvent(job.data, 'started')) return;
  await enqueue(queue, config, job, 'started', body, 'started');
}

async function enqueue(
  queue: WebhookQueue,
  config: Config,
  job: Job<JobData, JobResultData>,
  name: WebhookEventName,
  body: JobStatusBody,
  kind: 'final' | 'started',
): Promise<void> {
  const event: WebhookEvent = `job.${name}`;
  await queue.add(
    event,
    { url: job.data.webhookUrl!, station: job.data.station, jobId: job.id!, event, body: JSON.stringify(body) },
    {
      ...webhookJobOptions({
        attempts: config.webhooks.attempts,
        backoffMs: config.webhooks.backoffMs,
        retentionSeconds: config.limits.retentionSeconds,
      }),
      jobId: webhookJobId(job.id!, kind),
    },
  );
}

import type { JobData, JobResultData, JobStatusBody } from '@darkroom/contracts';
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
 * delivery with an id derived from the job's, so a job announces its final state once.
 */

export type WebhookQueue = Queue<WebhookJobData, WebhookResult>;

export function createWebhookQueue(config: Config, connection: Redis): WebhookQueue {
  return new Queue<WebhookJobData, WebhookResult>(WEBHOOK_QUEUE, {
    connection,
    prefix: config.prefix,
    streams: { events: { maxLen: EVENTS_MAX_LEN } },
  });
}

const EVENT_OF: Record<string, WebhookEvent | undefined> = {
  completed: 'job.completed',
  failed: 'job.failed',
  cancelled: 'job.cancelled',
};

/** Queues the final-state webhook of a job that asked for one; does nothing otherwise. */
export async function enqueueFinalWebhook(
  queue: WebhookQueue,
  config: Config,
  job: Job<JobData, JobResultData>,
  body: JobStatusBody,
): Promise<void> {
  const event = EVENT_OF[body.status];
  if (!job.data.webhookUrl || !event) return;
  await queue.add(
    event,
    { url: job.data.webhookUrl, station: job.data.station, jobId: job.id!, event, body: JSON.stringify(body) },
    {
      ...webhookJobOptions({
        attempts: config.webhooks.attempts,
        backoffMs: config.webhooks.backoffMs,
        retentionSeconds: config.limits.retentionSeconds,
      }),
      jobId: webhookJobId(job.id!),
    },
  );
}

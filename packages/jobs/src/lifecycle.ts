import type { JobData, JobResultData } from '@darkroom/contracts';
import type { Config, Logger } from '@darkroom/runtime';
import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { finishedState, toStatusBody } from './job-view.ts';
import { sysKeys } from './keys.ts';
import { enqueueFinalWebhook, enqueueStartedWebhook, type WebhookQueue, wantsWebhookEvent } from './webhook-queue.ts';

/*
 * The end of a job, written once. Whichever way a job becomes final (completed or failed on a
 * worker, cancelled or expired while waiting), `finalizeJob` runs after BullMQ has recorded it:
 * the job leaves its station's pending set, a cancel flag left for it is dropped, watchers in this
 * process are woken, and its webhook (if it asked for one) is queued with the job's final body as
 * stored, so a webhook carries exactly what a status request shows. No other code does these.
 */

/** What can read a job back: a Queue, or the Worker that ran it. */
export type JobReader = Parameters<typeof Job.fromId>[0];

export type FinalHow = 'completed' | 'failed' | 'cancelled' | 'expired';

export interface LifecycleDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  webhooks: WebhookQueue;
  /** Wakes the watchers of a job in this process (the api's event hub); the worker has none. */
  notify?: (id: string) => void;
}

export class JobLifecycle {
  readonly #d: LifecycleDeps;
  readonly #keys: ReturnType<typeof sysKeys>;

  constructor(deps: LifecycleDeps) {
    this.#d = deps;
    this.#keys = sysKeys(deps.config.prefix);
  }

  /**
   * `job` is the job as its ender saw it (its data names the station and webhook); `queue` reads
   * it back for the webhook body. Never throws: a job is final whatever happens here, and a
   * pending entry left behind is pruned when the station's count is next read.
   */
  async finalizeJob(queue: JobReader, job: Job<JobData, JobResultData>, how: FinalHow): Promise<void> {
    const { redis, logger, config } = this.#d;
    const id = job.id!;
    try {
      await redis.multi().srem(this.#keys.pending(job.data.station), id).del(this.#keys.cancelRequested(id)).exec();
    } catch (err) {
      logger.warn({ err, jobId: id }, 'pending entry not released');
    }
    this.#d.notify?.(id);
    if (!job.data.webhookUrl) return;
    try {
      const stored = (await Job.fromId(queue, id)) as Job<JobData, JobResultData> | undefined;
      const state = stored ? finishedState(stored) : undefined;
      if (!stored || !state) return;
      await enqueueFinalWebhook(this.#d.webhooks, config, stored, toStatusBody(stored, state));
    } catch (err) {
      logger.warn({ err, jobId: id, how }, 'webhook not queued');
    }
  }

  /**
   * A worker took `job` (BullMQ's `active`): queues its `job.started` webhook when it asked for
   * one and this is its first attempt. Never throws: a missed notice must not stop the job.
   */
  async jobStarted(job: Job<JobData, JobResultData>): Promise<void> {
    if (!wantsWebhookEvent(job.data, 'started') || (job.attemptsStarted ?? 1) > 1) return;
    try {
      await enqueueStartedWebhook(this.#d.webhooks, this.#d.config, job, toStatusBody(job, 'active'));
    } catch (err) {
      this.#d.logger.warn({ err, jobId: job.id }, 'started webhook not queued');
    }
  }
}

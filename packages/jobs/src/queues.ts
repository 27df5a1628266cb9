import { type JobData, type JobResultData, PIPELINE_NAMES } from '@darkroom/contracts';
import type { Config } from '@darkroom/runtime';
import { Queue, type QueueOptions } from 'bullmq';
import type { Redis } from 'ioredis';

export type DarkroomQueue = Queue<JobData, JobResultData>;

/*
 * The events stream's maxLen is written to the queue's meta hash by whichever Queue was built
 * last, so every Queue anywhere (API, dashboard, workers) must pass this same value.
 */
export const EVENTS_MAX_LEN = 2000;

export function queueOptions(config: Config, connection: Redis): QueueOptions {
  return {
    connection,
    prefix: config.prefix,
    streams: { events: { maxLen: EVENTS_MAX_LEN } },
    defaultJobOptions: {
      attempts: config.jobs.attempts,
      backoff: { type: 'exponential', delay: config.jobs.backoffMs },
      // Retention is Darkroom's maintenance (it also removes blobs and leaves a tombstone); BullMQ's
      // own age-based removal is only a backstop for when no API has run maintenance for a day.
      removeOnComplete: { age: config.limits.retentionSeconds + 86400 },
      removeOnFail: { age: config.limits.retentionSeconds + 86400 },
    },
  };
}

/** One queue per pipeline, built once per process on a shared connection. */
export class QueueRegistry {
  readonly #queues = new Map<string, DarkroomQueue>();

  constructor(config: Config, connection: Redis, names: readonly string[] = PIPELINE_NAMES) {
    for (const name of names) {
      this.#queues.set(name, new Queue<JobData, JobResultData>(name, queueOptions(config, connection)));
    }
  }

  get(name: string): DarkroomQueue | undefined {
    return this.#queues.get(name);
  }

  all(): DarkroomQueue[] {
    return [...this.#queues.values()];
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.all().map((q) => q.close()));
  }
}

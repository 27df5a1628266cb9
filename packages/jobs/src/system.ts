import { PIPELINE_NAMES } from '@darkroom/contracts';
import type { Config, Logger } from '@darkroom/runtime';
import type { Redis } from 'ioredis';
import type { BlobStore } from './blob-store.ts';
import { EventHub } from './events.ts';
import { JobLifecycle } from './lifecycle.ts';
import { QueueRegistry } from './queues.ts';
import type { Deps } from './service.ts';
import { StatsReader } from './stats.ts';
import { createWebhookQueue, type WebhookQueue } from './webhook-queue.ts';

/**
 * The job system on one Redis connection, as a producer (the api) runs it: a queue per pipeline,
 * their stats, the event hub, the webhook queue and the lifecycle that ends jobs. `close()` stops
 * what it started; the connection and the blob store stay the caller's.
 */
export function createJobSystem(opts: {
  config: Config;
  logger: Logger;
  redis: Redis;
  blobs: BlobStore;
  checkWebhookTarget?: Deps['checkWebhookTarget'];
}): Deps & { webhooks: WebhookQueue; close(): Promise<void> } {
  const { config, logger, redis, blobs } = opts;
  const queues = new QueueRegistry(config, redis);
  const events = new EventHub(config, redis, PIPELINE_NAMES, logger);
  const webhooks = createWebhookQueue(config, redis);
  const lifecycle = new JobLifecycle({ config, logger, redis, webhooks, notify: (id) => events.notify(id) });
  return {
    config,
    logger,
    redis,
    blobs,
    queues,
    stats: new StatsReader(redis, config.prefix, PIPELINE_NAMES),
    events,
    lifecycle,
    webhooks,
    ...(opts.checkWebhookTarget ? { checkWebhookTarget: opts.checkWebhookTarget } : {}),
    async close() {
      await events.close();
      await webhooks.close();
      await queues.close();
    },
  };
}

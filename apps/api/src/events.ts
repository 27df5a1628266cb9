import type { Config, Logger } from '@darkroom/core';
import { QueueEvents } from 'bullmq';

/*
 * One subscription per API process to every pipeline's BullMQ event stream, fanned out to the
 * requests watching a job (SSE streams, `?wait` submits). A thousand watchers cost one blocking
 * read per pipeline, not a thousand pollers. Watchers are told "something changed" and reload
 * the job themselves; after a reconnect to Redis every watcher is told to reload, since events
 * may have been missed meanwhile.
 */

export type JobChange = 'progress' | 'state' | 'resync';
type Listener = (change: JobChange) => void;

const STATE_EVENTS = ['waiting', 'active', 'completed', 'failed', 'delayed', 'removed', 'retries-exhausted'] as const;

export class EventHub {
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #sources: QueueEvents[] = [];
  readonly #logger: Logger;
  #resyncTimer: NodeJS.Timeout | undefined;

  constructor(config: Config, pipelines: readonly string[], logger: Logger) {
    this.#logger = logger;
    for (const name of pipelines) {
      // Its own connection: QueueEvents blocks on XREAD, which the API's fail-fast connection must not.
      const qe = new QueueEvents(name, {
        connection: {
          url: config.redisUrl,
          maxRetriesPerRequest: null,
          retryStrategy: (n: number) => Math.min(100 * 2 ** Math.min(n, 6), 2000),
        },
        prefix: config.prefix,
        blockingTimeout: 5000,
      });
      qe.on('progress', ({ jobId }) => this.#emit(jobId, 'progress'));
      for (const ev of STATE_EVENTS) qe.on(ev, ({ jobId }: { jobId: string }) => this.#emit(jobId, 'state'));
      // After a connection error, events may have been missed: every watcher reloads once it is back.
      qe.on('error', (err) => {
        logger.debug({ err: err.message, pipeline: name }, 'event stream error');
        clearTimeout(this.#resyncTimer);
        this.#resyncTimer = setTimeout(() => this.#resyncAll(), 2000);
      });
      this.#sources.push(qe);
    }
  }

  /** Calls `listener` on every change of the job until the returned function is called. */
  watch(jobId: string, listener: Listener): () => void {
    let set = this.#listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.#listeners.set(jobId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(jobId) === set) this.#listeners.delete(jobId);
    };
  }

  get watchedJobs(): number {
    return this.#listeners.size;
  }

  /** Lets a change made by this process (a cancel) reach its own watchers at once. */
  notify(jobId: string, change: JobChange = 'state'): void {
    this.#emit(jobId, change);
  }

  #emit(jobId: string, change: JobChange): void {
    const set = this.#listeners.get(jobId);
    if (!set) return;
    for (const l of [...set]) {
      try {
        l(change);
      } catch (err) {
        this.#logger.warn({ err, jobId }, 'job watcher failed');
      }
    }
  }

  #resyncAll(): void {
    for (const id of [...this.#listeners.keys()]) this.#emit(id, 'resync');
  }

  async close(): Promise<void> {
    clearTimeout(this.#resyncTimer);
    await Promise.allSettled(this.#sources.map((s) => s.close()));
  }
}

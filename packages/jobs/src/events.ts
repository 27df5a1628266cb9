import { type Config, createRedis, type Logger } from '@darkroom/runtime';
import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { pipelineOfJobId } from './ids.ts';

/*
 * One subscription per API process to a pipeline's BullMQ event stream, fanned out to the
 * requests watching its jobs (SSE streams, `?wait` submits). A thousand watchers cost one
 * blocking read per pipeline, not a thousand pollers. Watchers are told "something changed" and
 * reload the job themselves; after a reconnect to Redis every watcher is told to reload, since
 * events may have been missed meanwhile.
 *
 * A pipeline's subscription runs only while something watches one of its jobs (and a while
 * after): with nobody watching, an API taking thousands of submits a second would otherwise read
 * and parse two events back for every job it queued.
 */

export type JobChange = 'progress' | 'state' | 'resync';
type Listener = (change: JobChange) => void;

const STATE_EVENTS = ['waiting', 'active', 'completed', 'failed', 'delayed', 'removed', 'retries-exhausted'] as const;
/** How long a subscription outlives its last watcher, so watchers that come and go do not churn it. */
const IDLE_CLOSE_MS = 60_000;

interface Source {
  watchers: number;
  idle: NodeJS.Timeout | undefined;
  events: QueueEvents | undefined;
  /** The blocking connection the events are read on: its own, closed with it. */
  conn: Redis | undefined;
  started: Promise<void>;
  closed: boolean;
}

export class EventHub {
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #sources = new Map<string, Source>();
  readonly #config: Config;
  readonly #redis: Redis;
  readonly #pipelines: ReadonlySet<string>;
  readonly #logger: Logger;
  readonly #resyncTimers = new Map<string, NodeJS.Timeout>();
  readonly #idleCloseMs: number;

  constructor(config: Config, redis: Redis, pipelines: readonly string[], logger: Logger, opts: { idleCloseMs?: number } = {}) {
    this.#idleCloseMs = opts.idleCloseMs ?? IDLE_CLOSE_MS;
    this.#config = config;
    this.#redis = redis;
    this.#pipelines = new Set(pipelines);
    this.#logger = logger;
  }

  /** Calls `listener` on every change of the job until the returned function is called. */
  watch(jobId: string, listener: Listener): () => void {
    let set = this.#listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.#listeners.set(jobId, set);
    }
    set.add(listener);
    const pipeline = pipelineOfJobId(jobId);
    this.#retain(pipeline);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(jobId) === set) this.#listeners.delete(jobId);
      this.#release(pipeline);
    };
  }

  get watchedJobs(): number {
    return this.#listeners.size;
  }

  /** Pipelines whose event stream this process is reading now. */
  get subscribed(): string[] {
    return [...this.#sources.keys()];
  }

  /** Lets a change made by this process (a cancel) reach its own watchers at once. */
  notify(jobId: string, change: JobChange = 'state'): void {
    this.#emit(jobId, change);
  }

  #retain(pipeline: string): void {
    if (!this.#pipelines.has(pipeline)) return;
    let source = this.#sources.get(pipeline);
    if (!source) {
      source = this.#start(pipeline);
      this.#sources.set(pipeline, source);
    }
    source.watchers++;
    clearTimeout(source.idle);
    source.idle = undefined;
  }

  #release(pipeline: string): void {
    const source = this.#sources.get(pipeline);
    if (!source) return;
    source.watchers--;
    if (source.watchers > 0) return;
    source.idle = setTimeout(() => {
      if (source.watchers > 0 || this.#sources.get(pipeline) !== source) return;
      this.#sources.delete(pipeline);
      void this.#stop(source);
    }, this.#idleCloseMs);
    source.idle.unref();
  }

  /**
   * Reads the stream from its current end, then has the pipeline's watchers reload: a change
   * before that point shows in their reload, every later one comes as an event.
   */
  #start(pipeline: string): Source {
    const source: Source = { watchers: 0, idle: undefined, events: undefined, conn: undefined, started: Promise.resolve(), closed: false };
    const connect = async () => {
      const key = `${this.#config.prefix}:${pipeline}:events`;
      const last = await this.#redis.xrevrange(key, '+', '-', 'COUNT', 1);
      if (source.closed) return;
      // Its own connection: QueueEvents blocks on XREAD, which the API's fail-fast connection must not.
      const conn = createRedis(this.#config.redis, 'blocking');
      conn.on('error', () => {});
      source.conn = conn;
      const qe = new QueueEvents(pipeline, {
        connection: conn,
        prefix: this.#config.prefix,
        blockingTimeout: 5000,
        // An empty stream: from its start, which loses nothing either.
        lastEventId: last[0]?.[0] ?? '0',
      });
      source.events = qe;
      qe.on('progress', ({ jobId }) => this.#emit(jobId, 'progress'));
      for (const ev of STATE_EVENTS) qe.on(ev, ({ jobId }: { jobId: string }) => this.#emit(jobId, 'state'));
      // After a connection error, events may have been missed: every watcher reloads once it is back.
      qe.on('error', (err) => {
        this.#logger.debug({ err: err.message, pipeline }, 'event stream error');
        this.#resyncLater(pipeline);
      });
      this.#resync(pipeline);
    };
    const attempt = () => {
      source.started = connect().catch((err) => {
        // Redis away: watchers fall back to their own slow polls until this succeeds.
        this.#logger.debug({ err: err?.message, pipeline }, 'event stream could not be opened; retrying');
        if (!source.closed) setTimeout(attempt, 2000).unref();
      });
    };
    attempt();
    return source;
  }

  async #stop(source: Source): Promise<void> {
    source.closed = true;
    clearTimeout(source.idle);
    await source.started;
    await source.events?.close().catch(() => {});
    await source.conn?.quit().catch(() => source.conn?.disconnect());
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

  #resync(pipeline: string): void {
    for (const id of [...this.#listeners.keys()]) if (pipelineOfJobId(id) === pipeline) this.#emit(id, 'resync');
  }

  #resyncLater(pipeline: string): void {
    clearTimeout(this.#resyncTimers.get(pipeline));
    this.#resyncTimers.set(
      pipeline,
      setTimeout(() => {
        this.#resyncTimers.delete(pipeline);
        this.#resync(pipeline);
      }, 2000).unref(),
    );
  }

  async close(): Promise<void> {
    for (const t of this.#resyncTimers.values()) clearTimeout(t);
    const sources = [...this.#sources.values()];
    this.#sources.clear();
    await Promise.allSettled(sources.map((s) => this.#stop(s)));
  }
}

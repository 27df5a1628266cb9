import { JOB_ID_PATTERN, type JobData, type JobResultData, type JobStatusBody, priorityRank } from '@darkroom/contracts';
import {
  type BlobStore,
  type BullState,
  blobKeys,
  type Config,
  type DarkroomQueue,
  estimateWaitSeconds,
  finishedState,
  inspectImage,
  type Logger,
  newJobId,
  pipelineOfJobId,
  type QueueRegistry,
  type StatsReader,
  sysKeys,
  toStatusBody,
} from '@darkroom/core';
import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Station } from './auth/stations.ts';
import { HttpError } from './http/problem.ts';
import type { ValidSubmit } from './submit/validate.ts';

export interface Deps {
  config: Config;
  logger: Logger;
  redis: Redis;
  queues: QueueRegistry;
  blobs: BlobStore;
  stats: StatsReader;
}

export type LoadedJob = { queue: DarkroomQueue; job: Job<JobData, JobResultData>; state: BullState };

/** Who is asking: a station sees only its own jobs; the admin credential sees all. */
export type Viewer = { station: Station } | { admin: true };

const QUEUED_STATES = new Set(['prioritized', 'waiting', 'delayed', 'paused', 'waiting-children']);

export class JobService {
  readonly #d: Deps;

  constructor(deps: Deps) {
    this.#d = deps;
  }

  /** Accepts a validated submit: checks the image and queue room, stores the input, queues the job. */
  async submit(v: ValidSubmit, station: Station, requestId: string | undefined): Promise<JobStatusBody> {
    const { config, queues, blobs, logger } = this.#d;
    const queue = queues.get(v.spec.name)!;
    let input: JobData['input'];
    if (v.image) {
      const r = await inspectImage(v.image, config.limits);
      if (!r.ok) {
        throw r.failure.kind === 'unsupported'
          ? new HttpError(415, 'unsupported_media_type', r.failure.detail)
          : new HttpError(422, 'invalid_image', r.failure.detail);
      }
      input = { key: '', bytes: v.image.length, sha256: '', ...r.info };
    }
    await this.#checkRoom(queue);

    const id = newJobId(v.spec.name);
    if (input && v.image) {
      input.key = blobKeys.input(id);
      const stored = await blobs.put(input.key, v.image);
      input.sha256 = stored.sha256;
    }
    const data: JobData = {
      v: 1,
      station: station.name,
      pipeline: v.spec.name,
      priority: v.priority,
      params: v.params,
      ...(input ? { input } : {}),
      ...(v.webhookUrl ? { webhookUrl: v.webhookUrl } : {}),
      timeoutMs: config.limits.jobTimeoutMs,
      ...(requestId ? { requestId } : {}),
    };
    let job: Job<JobData, JobResultData>;
    const pendingKey = sysKeys(config.prefix).pending(station.name);
    try {
      // Counted before the add so a crash between the two overstates (and is reconciled) rather than understates.
      await this.#d.redis.sadd(pendingKey, id);
      job = await queue.add(v.spec.name, data, {
        jobId: id,
        priority: priorityRank(v.priority),
        attempts: Math.min(v.spec.attempts, config.jobs.attempts),
      });
    } catch (err) {
      if (input) await blobs.delete(input.key).catch(() => {});
      await this.#d.redis.srem(pendingKey, id).catch(() => {});
      throw err;
    }
    logger.info({ jobId: id, pipeline: v.spec.name, station: station.name, priority: v.priority }, 'job queued');
    return this.view({ queue, job, state: 'prioritized' });
  }

  async #checkRoom(queue: DarkroomQueue): Promise<void> {
    const max = this.#d.config.limits.maxQueueSize;
    if (max === null) return;
    const counts = await queue.getJobCounts('prioritized', 'waiting');
    const waiting = (counts.prioritized ?? 0) + (counts.waiting ?? 0);
    if (waiting >= max) {
      const stats = await this.#d.stats.get(queue.name);
      const per = stats.avgProcessingMs && stats.slots ? stats.avgProcessingMs / stats.slots / 1000 : 5;
      const retryAfter = Math.min(120, Math.max(1, Math.ceil(per)));
      throw new HttpError(429, 'queue_full', `the ${queue.name} queue holds its limit of ${max} waiting jobs; retry later`, {
        headers: { 'Retry-After': String(retryAfter) },
      });
    }
  }

  /** The job if it exists and the viewer may see it; otherwise undefined (answered 404 alike). */
  async load(id: string, viewer: Viewer): Promise<LoadedJob | undefined> {
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    const queue = this.#d.queues.get(pipelineOfJobId(id));
    if (!queue) return undefined;
    const job = (await Job.fromId(queue, id)) as Job<JobData, JobResultData> | undefined;
    if (!job?.data?.station) return undefined;
    if ('station' in viewer && job.data.station !== viewer.station.name) return undefined;
    const state = finishedState(job) ?? (await queue.getJobState(id));
    if (state === 'unknown') return undefined;
    return { queue, job, state };
  }

  async view({ queue, job, state }: LoadedJob): Promise<JobStatusBody> {
    if (!QUEUED_STATES.has(state)) return toStatusBody(job, state);
    const position = await this.#position(queue, job.id!, state);
    const stats = await this.#d.stats.get(queue.name);
    return toStatusBody(job, state, { position, estimatedWaitSeconds: estimateWaitSeconds(position, stats) });
  }

  /** 1 = next to start. Prioritized jobs are a sorted set in start order, so this is one ZRANK. */
  async #position(queue: DarkroomQueue, id: string, state: BullState): Promise<number> {
    const key = queue.toKey('prioritized');
    if (state === 'prioritized') {
      const rank = await this.#d.redis.zrank(key, id);
      if (rank !== null) return rank + 1;
    }
    // Waiting to retry (delayed) or in flux: it joins behind everything queued now.
    return (await this.#d.redis.zcard(key)) + 1;
  }

  /**
   * The station's waiting + active jobs. The set can hold ids of jobs that ended by a path that
   * did not remove them (a worker lost before it could, a job removed from the dashboard), so
   * those are dropped here.
   */
  async pendingCount(station: string): Promise<number> {
    const key = sysKeys(this.#d.config.prefix).pending(station);
    const ids = await this.#d.redis.smembers(key);
    if (ids.length === 0) return 0;
    const multi = this.#d.redis.multi();
    for (const id of ids) {
      const q = this.#d.queues.get(pipelineOfJobId(id));
      multi.hmget(q ? q.toKey(id) : `${this.#d.config.prefix}:none:${id}`, 'finishedOn', 'timestamp');
    }
    const res = (await multi.exec()) ?? [];
    const stale = ids.filter((_, i) => {
      const [finishedOn, timestamp] = (res[i]?.[1] ?? []) as (string | null)[];
      return Boolean(finishedOn) || !timestamp;
    });
    if (stale.length > 0) await this.#d.redis.srem(key, ...stale);
    return ids.length - stale.length;
  }

  async getMany(ids: string[], viewer: Viewer): Promise<JobStatusBody[]> {
    const loaded = await Promise.all(ids.map((id) => this.load(id, viewer)));
    return Promise.all(loaded.filter((l): l is LoadedJob => l !== undefined).map((l) => this.view(l)));
  }
}

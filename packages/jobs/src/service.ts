import { JOB_ID_PATTERN, type JobData, type JobResultData, type JobStatusBody, pipelineSpec, priorityRank } from '@darkroom/contracts';
import { imageByteLength, inspectImage } from '@darkroom/images';
import type { Config, Logger } from '@darkroom/runtime';
import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { admit, tooManyPending } from './admission.ts';
import { type BlobStore, blobKeys, sha256Hex } from './blob-store.ts';
import { queueClient } from './bullmq.ts';
import { endWaitingJob } from './end-waiting.ts';
import {
  BlobNotFound,
  IdempotencyConflict,
  InvalidImage,
  JobExpired,
  JobNotFound,
  JobStateConflict,
  NoResult,
  PriorityNotAllowed,
  QueueFull,
  ReplicasUnavailable,
  ResultNotReady,
  StoreUnavailable,
  UnsupportedImage,
} from './errors.ts';
import type { EventHub } from './events.ts';
import { fairPlace } from './fair.ts';
import { claimIdempotencyKey, fingerprint, peekIdempotencyKey } from './idempotency.ts';
import { newJobId, pipelineOfJobId } from './ids.ts';
import { cursorEntry, encodeJobCursor, entryCursor, type JobListQuery } from './job-list.ts';
import { type BullState, CANCELLED_REASON, finishedState, RETRIED_BY_FIELD, toStatusBody } from './job-view.ts';
import { sysKeys } from './keys.ts';
import type { JobLifecycle } from './lifecycle.ts';
import { luaCommand } from './lua.ts';
import type { DarkroomQueue, QueueRegistry } from './queues.ts';
import type { Station, Viewer } from './station.ts';
import { estimateWaitSeconds, type StatsReader } from './stats.ts';
import type { ValidSubmit } from './submit.ts';
import { checkBudget } from './usage.ts';

export interface Deps {
  config: Config;
  logger: Logger;
  redis: Redis;
  queues: QueueRegistry;
  blobs: BlobStore;
  stats: StatsReader;
  events: EventHub;
  /** Ends every job that becomes final here (cancelled or expired while waiting). */
  lifecycle: JobLifecycle;
  /** Refuses a webhook URL whose host resolves to a forbidden address (InvalidSubmit at `webhookUrl`). */
  checkWebhookTarget?: (url: string) => Promise<void>;
}

export type LoadedJob = {
  queue: DarkroomQueue;
  job: Job<JobData, JobResultData>;
  state: BullState;
  /** Its ZRANK among prioritized jobs, when read with the job. */
  rank?: number;
  /** The job that retried this one, when one did. */
  retriedBy?: string;
};

/** What a submit that queues a job again (a retry) carries beside the request. */
export interface RetryOf {
  /** The failed or cancelled job queued again; its hash gets the link to the new one. */
  job: LoadedJob;
  /** Its stored input image, copied to the new job's key. */
  input?: NonNullable<JobData['input']>;
}

export const FINAL_STATUSES = new Set(['completed', 'failed', 'cancelled']);
const QUEUED_STATES = new Set(['prioritized', 'waiting', 'delayed', 'paused', 'waiting-children']);

/** Jobs read per pass of a purge. */
const PURGE_BATCH = 500;
/** Most index entries one page of a listing looks at, whatever it finds: a request stays cheap. */
const LIST_SCAN_MAX = 500;
/** Index entries read at once while a filter may drop some. */
const LIST_BATCH = 100;

export class JobService {
  readonly #d: Deps;
  readonly #keys: ReturnType<typeof sysKeys>;

  constructor(deps: Deps) {
    this.#d = deps;
    this.#keys = sysKeys(deps.config.prefix);
  }

  /**
   * Accepts a validated submit: checks the image, honours the Idempotency-Key, checks queue
   * room and the station's pending limit, stores the input and queues the job. Any answered
   * error leaves nothing behind: no job, no file, no claimed key, no pending slot.
   */
  async submit(
    v: ValidSubmit,
    station: Station,
    opts: { requestId?: string; idempotencyKey?: string; retryOf?: RetryOf } = {},
  ): Promise<{ body: JobStatusBody; deduplicated: boolean }> {
    const { config, queues, blobs, logger, redis } = this.#d;
    const queue = queues.get(v.spec.name)!;
    const retryOf = opts.retryOf;
    let input: JobData['input'];
    // A retry's image was inspected when it was first submitted: its description is kept, under the new key.
    if (retryOf?.input) input = { ...retryOf.input, key: '' };
    else if (v.image) {
      const r = await inspectImage(v.image, config.limits);
      if (!r.ok) {
        throw r.failure.kind === 'unsupported' ? new UnsupportedImage(r.failure.detail) : new InvalidImage(r.failure.detail);
      }
      input = {
        key: '',
        bytes: imageByteLength(v.image),
        sha256: '',
        ...r.info,
        ...(v.imageUrl ? { sourceUrl: sourceOf(v.imageUrl) } : {}),
      };
    }

    const id = newJobId(v.spec.name);
    const undo: (() => Promise<unknown>)[] = [];
    try {
      if (opts.idempotencyKey) {
        const take = () => claimIdempotencyKey(redis, config.prefix, station.name, opts.idempotencyKey!, fingerprint(v), id);
        let claim = await take();
        // A stale claim without its job: the process that took the key died before creating it.
        if (claim.kind === 'existing' && claim.stale && !(await this.load(claim.jobId, { station })))
          claim = (await claim.takeOver()) ?? (await take());
        if (claim.kind === 'existing') return { body: await this.#original(claim.jobId, station), deduplicated: true };
        undo.push(claim.release);
      }
      // Before any room is claimed: a station past its daily GPU time takes none.
      await checkBudget(redis, config.prefix, station);
      if (retryOf) undo.push(await this.#linkRetry(retryOf.job, id));
      const pendingKey = this.#keys.pending(station.name);
      const limited = station.maxPending !== null || config.limits.maxQueueSize !== null;
      if (limited) {
        await this.#admit(queue, station, id);
        undo.push(() => redis.srem(pendingKey, id));
      }

      if (input && retryOf?.input) {
        const key = blobKeys.input(id);
        input.key = key;
        await blobs.copy(retryOf.input.key, key).catch((err: Error) => {
          if (err instanceof BlobNotFound) throw new JobExpired('the job’s input image has been removed; it cannot be retried');
          logger.error({ err, jobId: id }, 'input image could not be copied');
          throw new StoreUnavailable();
        });
        undo.push(() => blobs.delete(key));
      } else if (input && v.image) {
        input.key = blobKeys.input(id);
        const image = v.image;
        input.sha256 = v.imageSha256 ?? (Buffer.isBuffer(image) ? sha256Hex(image) : image.sha256);
        const stored = Buffer.isBuffer(image)
          ? blobs.create(input.key, image, { sync: config.fsyncInputs })
          : blobs.adopt(image.path, input.key, { sync: config.fsyncInputs });
        await stored.catch((err: NodeJS.ErrnoException) => {
          logger.error({ err, jobId: id }, 'input image could not be stored');
          throw new StoreUnavailable();
        });
        const key = input.key;
        undo.push(() => blobs.delete(key));
      }
      const model = v.spec.modelOf?.(v.params);
      const data: JobData = {
        v: 1,
        station: station.name,
        pipeline: v.spec.name,
        priority: v.priority,
        params: v.params,
        ...(input ? { input } : {}),
        ...(v.webhookUrl ? { webhookUrl: v.webhookUrl } : {}),
        ...(v.webhookUrl && v.webhookEvents ? { webhookEvents: v.webhookEvents } : {}),
        timeoutMs: v.timeoutSeconds ? v.timeoutSeconds * 1000 : config.limits.jobTimeoutMs,
        ...(v.ttlSeconds ? { ttlMs: v.ttlSeconds * 1000 } : {}),
        ...(opts.requestId ? { requestId: opts.requestId } : {}),
        ...(model !== undefined ? { model } : {}),
        ...(retryOf ? { retryOf: retryOf.job.job.id! } : {}),
      };
      const job = new Job<JobData, JobResultData>(
        queue,
        v.spec.name,
        data,
        { ...queue.defaultJobOptions, priority: priorityRank(v.priority), attempts: Math.min(v.spec.attempts, config.jobs.attempts) },
        id,
      );
      // One round trip: the pending entry (when no limit claimed it above), the job and its
      // position are written back to back on the queue's connection, which keeps their order.
      const client = await queueClient(queue);
      if (!limited) undo.push(() => redis.srem(pendingKey, id));
      const indexKey = this.#keys.jobIndex(station.name);
      let indexEntry: Promise<string | null> | undefined;
      undo.push(async () => {
        const entry = await indexEntry?.catch(() => null);
        if (entry) await redis.xdel(indexKey, entry);
      });
      // Corked, they leave in one write: a syscall each cost as much as the rest of a submit.
      const socket = client.status === 'ready' ? client.stream : undefined;
      socket?.cork();
      const claim = limited ? undefined : client.sadd(pendingKey, id);
      const add = job.addJob(client as never);
      // The station's listing, in the same write (no round trip more) and after the job, so a
      // listing never finds the entry before its job.
      indexEntry = client.xadd(indexKey, '*', 'j', id);
      const place = config.jobs.fairShare
        ? fairPlace(client, queue, id, priorityRank(v.priority), station.name, station.weight)
        : client.zrank(queue.toKey('prioritized'), id);
      const sent = [claim, add, indexEntry, place] as const;
      // Maintenance expires a job with its own time-to-live from here (it scans only for the operator's).
      const ownTtl = data.ttlMs ? client.zadd(this.#keys.ownTtl(v.spec.name), job.timestamp + data.ttlMs, id) : undefined;
      socket?.uncork();
      await ownTtl?.catch((err: Error) => logger.warn({ err, jobId: id }, 'own time-to-live not recorded'));
      const [claimed, added, indexed, ranked] = await Promise.allSettled(sent);
      if (added.status === 'rejected') throw added.reason;
      if (config.redis.minReplicas > 0) {
        // Answered 202 only once the job is on enough replicas to outlive its master's loss.
        undo.push(() => this.#withdraw(queue, id));
        await this.#awaitReplicas(client, id);
      }
      // The job stands; a pending entry that did not land only leaves the station's count low.
      if (claimed.status === 'rejected') logger.warn({ err: claimed.reason, jobId: id }, 'pending entry not recorded');
      if (indexed.status === 'rejected') logger.warn({ err: indexed.reason, jobId: id }, 'job not indexed for listing');
      logger.info({ jobId: id, pipeline: v.spec.name, station: station.name, priority: v.priority }, 'job queued');
      undo.length = 0; // queued: from here on the job stands, whatever happens to this answer
      const rank = ranked.status === 'fulfilled' ? ranked.value : null;
      // A worker may have taken it already, and Redis may go away before the stats can be read:
      // the job is queued either way, so the answer is a 202, with as much as is known.
      const body =
        typeof rank === 'number'
          ? await this.view({ queue, job, state: 'prioritized', rank }).catch(() => toStatusBody(job, 'prioritized'))
          : ((await this.reload(id, { station }).catch(() => undefined)) ?? toStatusBody(job, 'prioritized'));
      return { body, deduplicated: false };
    } catch (err) {
      for (const u of undo.reverse()) await u().catch(() => {});
      throw err;
    }
  }

  /**
   * The job an Idempotency-Key already names for this same request, looked up before the submit
   * does costly work (fetching its image by URL); undefined when there is none yet, and then
   * `submit` claims the key as usual. IdempotencyConflict for a different request.
   */
  async findIdempotent(v: ValidSubmit, station: Station, idempotencyKey: string): Promise<JobStatusBody | undefined> {
    const { redis, config } = this.#d;
    const jobId = await peekIdempotencyKey(redis, config.prefix, station.name, idempotencyKey, fingerprint(v));
    const loaded = jobId ? await this.load(jobId, { station }) : undefined;
    return loaded ? { ...(await this.view(loaded)), deduplicated: true } : undefined;
  }

  /**
   * Waits (Redis WAIT, on the connection that wrote the job) until the job reached
   * DARKROOM_REDIS_MIN_REPLICAS replicas; ReplicasUnavailable when it did not in time.
   */
  async #awaitReplicas(client: Redis, id: string): Promise<void> {
    const { minReplicas, replicaTimeoutMs } = this.#d.config.redis;
    const acked = Number(await client.call('WAIT', minReplicas, replicaTimeoutMs));
    if (acked >= minReplicas) return;
    this.#d.logger.warn({ jobId: id, replicas: acked, wanted: minReplicas }, 'job not replicated in time; withdrawn');
    throw new ReplicasUnavailable();
  }

  /** Takes back a job that was written but not accepted: removed, or cancelled if a worker took it meanwhile. */
  async #withdraw(queue: DarkroomQueue, id: string): Promise<void> {
    if (await queue.remove(id)) return;
    await this.#abortActive(id);
  }

  /**
   * Asks whichever worker holds the job to abort it: a message for the worker listening now, and
   * a flag for one that misses the message or picks the job up again later.
   */
  async #abortActive(id: string): Promise<void> {
    const { redis, config } = this.#d;
    await redis.set(this.#keys.cancelRequested(id), '1', 'EX', Math.ceil(config.limits.jobTimeoutMs / 1000) + 3600);
    await redis.publish(this.#keys.cancelChannel, id);
  }

  /** The job an Idempotency-Key names. Its creator may still be adding it: wait a moment. */
  async #original(jobId: string, station: Station): Promise<JobStatusBody> {
    for (let i = 0; i < 100; i++) {
      const loaded = await this.load(jobId, { station });
      if (loaded) return { ...(await this.view(loaded)), deduplicated: true };
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new IdempotencyConflict('a request with this Idempotency-Key is still being processed; retry shortly', { retryAfterSeconds: 1 });
  }

  /** Room in the queue and in the station's share, claimed for `id` in one round trip; QueueFull or StationBusy otherwise. */
  async #admit(queue: DarkroomQueue, station: Station, id: string): Promise<void> {
    const { redis, config } = this.#d;
    const keys = { pending: this.#keys.pending(station.name), prioritized: queue.toKey('prioritized'), wait: queue.toKey('wait') };
    const limits = { maxPending: station.maxPending, maxQueue: config.limits.maxQueueSize };
    let result = await admit(redis, keys, id, limits);
    if (result === 'station_full') {
      // Drop ids of jobs that ended without leaving the set, then try once more.
      await this.pendingCount(station.name);
      result = await admit(redis, keys, id, limits);
    }
    if (result === 'admitted') return;
    const stats = await this.#d.stats.get(queue.name);
    if (result === 'station_full') throw tooManyPending(station, await this.pendingCount(station.name), stats);
    const per = stats.avgProcessingMs && stats.slots ? stats.avgProcessingMs / stats.slots / 1000 : 5;
    const retryAfter = Math.min(120, Math.max(1, Math.ceil(per)));
    throw new QueueFull(`the ${queue.name} queue holds its limit of ${limits.maxQueue} waiting jobs; retry later`, {
      retryAfterSeconds: retryAfter,
    });
  }

  /**
   * The job if it exists and the viewer may see it; undefined otherwise. A job removed after its
   * retention throws JobExpired for its own station (and the admin), undefined for anyone else.
   */
  async load(id: string, viewer: Viewer): Promise<LoadedJob | undefined> {
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    const queue = this.#d.queues.get(pipelineOfJobId(id));
    if (!queue) return undefined;
    // The rank travels with the job read (one round trip): a queued job's state and position follow from the two.
    const ranked = this.#d.redis.zrank(queue.toKey('prioritized'), id).catch(() => null);
    const linked = this.#d.redis.hget(queue.toKey(id), RETRIED_BY_FIELD).catch(() => null);
    const job = (await Job.fromId(queue, id)) as Job<JobData, JobResultData> | undefined;
    const rank = await ranked;
    const retriedBy = (await linked) ?? undefined;
    if (!job?.data?.station) {
      const owner = await this.#d.redis.get(this.#keys.tombstone(id));
      if (owner && ('admin' in viewer || owner === viewer.station.name)) throw new JobExpired();
      return undefined;
    }
    if ('station' in viewer && job.data.station !== viewer.station.name) return undefined;
    const known = finishedState(job);
    if (known) return { queue, job, state: known, ...(retriedBy ? { retriedBy } : {}) };
    if (rank !== null) return { queue, job, state: 'prioritized', rank };
    const state = await queue.getJobState(id);
    if (state === 'unknown') return undefined;
    if (state === 'completed' || state === 'failed') {
      // It finished between the two reads: read the hash again so the body has its result.
      const fresh = (await Job.fromId(queue, id)) as Job<JobData, JobResultData> | undefined;
      if (!fresh) return undefined;
      return { queue, job: fresh, state: finishedState(fresh) ?? state, ...(retriedBy ? { retriedBy } : {}) };
    }
    return { queue, job, state };
  }

  async view({ queue, job, state, rank, retriedBy }: LoadedJob): Promise<JobStatusBody> {
    if (state === 'active') {
      const body = toStatusBody(job, state);
      if (await this.#d.redis.exists(this.#keys.cancelRequested(job.id!))) body.cancelRequested = true;
      return body;
    }
    if (!QUEUED_STATES.has(state)) return toStatusBody(job, state, { retriedBy });
    const position = rank !== undefined ? rank + 1 : await this.#position(queue, job.id!, state);
    const stats = await this.#d.stats.get(queue.name);
    return toStatusBody(job, state, {
      position,
      estimatedWaitSeconds: estimateWaitSeconds(position, stats, job.data.pipeline, job.data.model),
    });
  }

  /**
   * The result of a completed job, with where its image is stored; ResultNotReady while it is
   * queued or running, NoResult once it ended without one.
   */
  async result(loaded: LoadedJob): Promise<JobResultData> {
    const body = await this.view(loaded);
    if (body.status === 'queued' || body.status === 'active') {
      throw new ResultNotReady(`the job is ${body.status}; the result is not ready yet`, { retryAfterSeconds: 1 });
    }
    const result = loaded.job.returnvalue;
    if (body.status !== 'completed' || !result) throw new NoResult(`the job is ${body.status}; it has no result`);
    return { ...result, key: result.key || blobKeys.output(loaded.job.id!, result.format) };
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

  async reload(id: string, viewer: Viewer): Promise<JobStatusBody | undefined> {
    try {
      const loaded = await this.load(id, viewer);
      return loaded ? await this.view(loaded) : undefined;
    } catch (err) {
      if (err instanceof JobExpired) return undefined;
      throw err;
    }
  }

  /**
   * A queued job ends `cancelled` at once (`ended`); an active one is aborted on whichever worker
   * holds it (`requested`, `cancelRequested`); a final one is a JobStateConflict.
   */
  async cancel(loaded: LoadedJob, viewer: Viewer): Promise<{ outcome: 'ended' | 'requested'; body: JobStatusBody }> {
    const { redis, logger } = this.#d;
    const id = loaded.job.id!;
    let current = loaded;
    for (let round = 0; round < 3; round++) {
      const body = await this.view(current);
      if (FINAL_STATUSES.has(body.status)) throw new JobStateConflict(`the job is already ${body.status}`);
      if (body.status === 'queued') {
        if (await endWaitingJob(redis, current.queue, id, CANCELLED_REASON)) {
          await this.#d.lifecycle.finalizeJob(current.queue, current.job, 'cancelled');
          const ended = await this.load(id, viewer);
          if (!ended) throw new JobNotFound();
          const endedBody = await this.view(ended);
          logger.info({ jobId: id, pipeline: ended.job.data.pipeline, station: ended.job.data.station }, 'job cancelled while queued');
          return { outcome: 'ended', body: endedBody };
        }
      } else {
        await this.#abortActive(id);
        logger.info({ jobId: id, pipeline: current.job.data.pipeline, station: current.job.data.station }, 'cancel requested');
        return { outcome: 'requested', body: { ...body, cancelRequested: true } };
      }
      // It started or ended meanwhile: look again.
      const next = await this.load(id, viewer);
      if (!next) throw new JobNotFound();
      current = next;
    }
    throw new JobStateConflict('the job is changing state; retry');
  }

  /**
   * Cancels every job of the pipeline that has not started (waiting, paused, or waiting to
   * retry), each through the same steps as a station's cancel: ended `cancelled`, its pending
   * entry released, its webhook queued. Jobs that start meanwhile are left running. Answers how
   * many were cancelled.
   */
  async purge(queue: DarkroomQueue): Promise<number> {
    const { redis, logger } = this.#d;
    let cancelled = 0;
    // In batches, newest jobs keep arriving meanwhile: the loop ends when a pass cancels none.
    for (;;) {
      const [prioritized, waiting, paused, delayed] = await Promise.all([
        redis.zrange(queue.toKey('prioritized'), '0', String(PURGE_BATCH - 1)),
        redis.lrange(queue.toKey('wait'), 0, PURGE_BATCH - 1),
        redis.lrange(queue.toKey('paused'), 0, PURGE_BATCH - 1),
        redis.zrange(queue.toKey('delayed'), '0', String(PURGE_BATCH - 1)),
      ]);
      const ids = [...new Set([...prioritized, ...waiting, ...paused, ...delayed])];
      let pass = 0;
      for (const id of ids) {
        if (!(await endWaitingJob(redis, queue, id, CANCELLED_REASON))) continue;
        const job = (await Job.fromId(queue, id)) as Job<JobData, JobResultData> | undefined;
        if (job) await this.#d.lifecycle.finalizeJob(queue, job, 'cancelled');
        pass++;
      }
      cancelled += pass;
      if (pass === 0) break;
    }
    logger.info({ pipeline: queue.name, cancelled }, 'pipeline purged');
    return cancelled;
  }

  /**
   * The station's waiting + active jobs. The set can hold ids of jobs that ended by a path that
   * did not remove them (a worker lost before it could, a job removed from the dashboard), so
   * those are dropped here.
   */
  async pendingCount(station: string): Promise<number> {
    const key = this.#keys.pending(station);
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

  /**
   * Queues a failed or cancelled job again under a new id, as its station first submitted it
   * (pipeline, params, priority, webhook, limits, input image), through every check a submit
   * goes through. The old job's hash names its retry once (lua/retry-link.lua): a second retry is
   * a JobStateConflict naming the first. Whatever is refused leaves nothing behind.
   */
  async retry(loaded: LoadedJob, station: Station, opts: { requestId?: string } = {}): Promise<JobStatusBody> {
    const { limits } = this.#d.config;
    const body = await this.view(loaded);
    if (body.status !== 'failed' && body.status !== 'cancelled') {
      throw new JobStateConflict(`the job is ${body.status}; only a failed or cancelled job can be retried`);
    }
    if (loaded.retriedBy) throw new JobStateConflict(`the job was already retried as ${loaded.retriedBy}`);
    const { data } = loaded.job;
    const spec = pipelineSpec(data.pipeline);
    if (!spec) throw new JobNotFound();
    // The station's allowance may have shrunk since: never above it, as a submit.
    if (priorityRank(data.priority) < priorityRank(station.maxPriority)) {
      throw new PriorityNotAllowed(`priority ${data.priority} is above this station's highest allowed priority (${station.maxPriority})`);
    }
    const v: ValidSubmit = {
      spec,
      params: data.params,
      priority: data.priority,
      webhookUrl: data.webhookUrl,
      webhookEvents: data.webhookEvents,
      image: undefined,
      imageSha256: data.input?.sha256,
      // Within the operator's limits as they are now.
      timeoutSeconds: Math.min(data.timeoutMs, limits.jobTimeoutMs) / 1000,
      ...(data.ttlMs ? { ttlSeconds: Math.min(data.ttlMs, limits.jobTtlMs) / 1000 } : {}),
    };
    const retryOf: RetryOf = { job: loaded, ...(data.input ? { input: data.input } : {}) };
    return (await this.submit(v, station, { ...opts, retryOf })).body;
  }

  /** Claims the old job's link to its retry `id`; answers how to take the claim back. */
  async #linkRetry(old: LoadedJob, id: string): Promise<() => Promise<unknown>> {
    const { redis } = this.#d;
    const key = old.queue.toKey(old.job.id!);
    const res = await luaCommand(redis, 'retry-link', 1)(key, RETRIED_BY_FIELD, id);
    if (res === -1) throw new JobExpired();
    if (res !== 1) throw new JobStateConflict(`the job was already retried as ${String(res)}`);
    return () => luaCommand(redis, 'retry-unlink', 1)(key, RETRIED_BY_FIELD, id);
  }

  /**
   * A page of the station's jobs, newest first (see job-list.ts). Looks at no more than
   * LIST_SCAN_MAX index entries, so a page can hold fewer than `limit` jobs and still have a
   * cursor. Entries whose job is gone are skipped and removed from the index.
   */
  async list(station: string, q: JobListQuery, viewer: Viewer): Promise<{ jobs: JobStatusBody[]; nextCursor: string | null }> {
    const { redis } = this.#d;
    const key = this.#keys.jobIndex(station);
    // The index's clock is Redis's, which records a job after its submit time: a superset, cut to `since` below.
    const end = q.sinceMs !== undefined ? `${q.sinceMs}-0` : '-';
    const filtered = q.statuses !== undefined || q.pipeline !== undefined || q.sinceMs !== undefined;
    const jobs: JobStatusBody[] = [];
    const gone: { entry: string; id: string }[] = [];
    let pos = q.cursor ? cursorEntry(q.cursor) : undefined;
    let scanned = 0;
    let exhausted = false;
    scan: while (jobs.length < q.limit && scanned < LIST_SCAN_MAX) {
      // One more than needed: it tells whether a full page is the last one.
      const count = Math.min(filtered ? LIST_BATCH : q.limit - jobs.length + 1, LIST_SCAN_MAX - scanned);
      const rows = (await redis.xrevrange(key, pos ? `(${pos}` : '+', end, 'COUNT', count)) as [string, string[]][];
      scanned += rows.length;
      exhausted = rows.length < count;
      const entries = rows.map(([entry, fields]) => ({ entry, id: fields[1] ?? '' }));
      const wanted = entries.map((e) => q.pipeline === undefined || pipelineOfJobId(e.id) === q.pipeline);
      const loaded = await Promise.all(
        entries.map((e, i) =>
          wanted[i]
            ? this.load(e.id, viewer).catch((err: unknown) => {
                if (err instanceof JobExpired) return undefined;
                throw err;
              })
            : undefined,
        ),
      );
      const bodies = await Promise.all(loaded.map((l) => (l ? this.view(l) : undefined)));
      for (const [i, e] of entries.entries()) {
        pos = e.entry;
        if (!wanted[i]) continue;
        const b = bodies[i];
        if (!b) {
          gone.push(e);
          continue;
        }
        if (q.statuses && !q.statuses.has(b.status)) continue;
        if (q.sinceMs !== undefined && Date.parse(b.createdAt) < q.sinceMs) continue;
        jobs.push(b);
        if (jobs.length === q.limit) {
          if (i < entries.length - 1) exhausted = false;
          break scan;
        }
      }
      if (exhausted) break;
    }
    if (gone.length > 0) await this.#dropIndexEntries(key, gone);
    return { jobs, nextCursor: exhausted || !pos ? null : encodeJobCursor(entryCursor(pos)) };
  }

  /** Removes the index entries of jobs removed (retention, or by hand), once Redis confirms each is gone. */
  async #dropIndexEntries(key: string, entries: { entry: string; id: string }[]): Promise<void> {
    const { redis, queues } = this.#d;
    try {
      const multi = redis.multi();
      for (const { id } of entries) multi.exists(queues.get(pipelineOfJobId(id))?.toKey(id) ?? `${this.#d.config.prefix}:none:${id}`);
      const replies = (await multi.exec()) ?? [];
      const gone = entries.filter((_, i) => replies[i]?.[1] === 0).map((e) => e.entry);
      if (gone.length > 0) await redis.xdel(key, ...gone);
    } catch {
      // Left for the next listing, or maintenance's trim.
    }
  }

  async getMany(ids: string[], viewer: Viewer): Promise<JobStatusBody[]> {
    const bodies = await Promise.all(ids.map((id) => this.reload(id, viewer)));
    return bodies.filter((b): b is JobStatusBody => b !== undefined);
  }

  /**
   * Resolves with the job's body once it is final, or its latest body when `ms` runs out or
   * `signal` aborts. Driven by the shared event subscription, with a slow poll as a safety net.
   */
  async waitForFinal(id: string, viewer: Viewer, ms: number, signal?: AbortSignal): Promise<JobStatusBody | undefined> {
    let latest = await this.reload(id, viewer);
    if (!latest || FINAL_STATUSES.has(latest.status) || ms <= 0) return latest;
    return new Promise((resolve) => {
      let done = false;
      let checking = false;
      let again = false;
      const finish = () => {
        if (done) return;
        done = true;
        unwatch();
        clearTimeout(timer);
        clearInterval(poll);
        signal?.removeEventListener('abort', finish);
        resolve(latest);
      };
      const check = async () => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        try {
          do {
            again = false;
            const b = await this.reload(id, viewer).catch(() => latest);
            if (b) latest = b;
            if (!b || FINAL_STATUSES.has(b.status)) return finish();
          } while (again && !done);
        } finally {
          checking = false;
        }
      };
      const unwatch = this.#d.events.watch(id, (change) => {
        if (change !== 'progress') void check();
      });
      const timer = setTimeout(finish, ms);
      const poll = setInterval(() => void check(), 5000);
      signal?.addEventListener('abort', finish, { once: true });
      void check(); // it may have ended between the first read and the watch
    });
  }
}

/** Where an input came from, as kept with the job: origin and path, without a query that may carry an access signature. */
function sourceOf(imageUrl: string): string {
  const url = new URL(imageUrl);
  return `${url.origin}${url.pathname}`;
}

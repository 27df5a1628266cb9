import { randomUUID } from 'node:crypto';
import { AGED_PRIORITY, formatFailure, type JobData, type JobResultData, priorityRank } from '@darkroom/contracts';
import { Job } from 'bullmq';
import type { BlobEntry } from './blob-store.ts';
import { priorityScoreRange } from './bullmq.ts';
import { endWaitingJob } from './end-waiting.ts';
import { fairFront, fairRebase } from './fair.ts';
import { pipelineOfJobId } from './ids.ts';
import { sysKeys } from './keys.ts';
import type { DarkroomQueue } from './queues.ts';
import type { Deps } from './service.ts';

/*
 * Housekeeping that must happen even when nobody asks, run by one API instance at a time (a
 * lease in Redis):
 * - aging: a waiting job is promoted one priority class per third of DARKROOM_MAX_WAIT_SECONDS,
 *   and at the full wait to the reserved class above `critical` (oldest first), so steady
 *   urgent work cannot starve it; with fair share on, it joins its new class at the front,
 *   ahead of the stations' turns there;
 * - time-to-live: a job still waiting after DARKROOM_JOB_TTL_SECONDS, or after its own shorter
 *   `ttlSeconds`, fails `expired` (workers also refuse to start one, so it never runs);
 * - retention: final jobs older than DARKROOM_RETENTION_SECONDS are removed with their blobs,
 *   leaving a small tombstone so their id answers 410 instead of 404;
 * - orphans: files no job refers to (a crash between storing and queueing) are removed;
 * - listing: entries of the stations' job indexes older than any job can live are trimmed (a
 *   listing also drops the entries of jobs it finds gone).
 */

const SCAN = 200;
const ORPHAN_SWEEP_EVERY_MS = 10 * 60_000;
const SWEEP_BATCH = 500;
const REBASE_CHECK_EVERY_MS = 60_000;
const INDEX_TRIM_EVERY_MS = 10 * 60_000;

export class Maintenance {
  readonly #d: Deps;
  readonly #id = randomUUID();
  readonly #keys: ReturnType<typeof sysKeys>;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #lastOrphanSweep = 0;
  #lastRebaseCheck = 0;
  #lastIndexTrim = 0;

  /** The stations whose job indexes the trim looks at (the api's registry). */
  readonly #stations: () => Iterable<string>;

  constructor(deps: Deps, opts: { stations?: () => Iterable<string> } = {}) {
    this.#d = deps;
    this.#stations = opts.stations ?? (() => []);
    this.#keys = sysKeys(deps.config.prefix);
  }

  start(): void {
    const every = this.#d.config.maintenanceIntervalMs;
    this.#timer = setInterval(() => {
      if (this.#running) return;
      this.#running = this.tick()
        .catch((err) => this.#d.logger.debug({ err: (err as Error).message }, 'maintenance tick failed'))
        .finally(() => {
          this.#running = undefined;
        });
    }, every);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
    await this.#release();
  }

  /** One pass; returns without work when another instance holds the lease. */
  async tick(): Promise<void> {
    if (!(await this.#lease())) return;
    const rebase = this.#d.config.jobs.fairShare && Date.now() - this.#lastRebaseCheck > REBASE_CHECK_EVERY_MS;
    if (rebase) this.#lastRebaseCheck = Date.now();
    for (const queue of this.#d.queues.all()) {
      if (rebase) await this.#rebase(queue);
      await this.#expireOwnTtl(queue);
      await this.#ageAndExpire(queue);
      await this.#retire(queue, 'completed');
      await this.#retire(queue, 'failed');
    }
    if (Date.now() - this.#lastOrphanSweep > ORPHAN_SWEEP_EVERY_MS) {
      this.#lastOrphanSweep = Date.now();
      await this.sweepOrphans();
    }
    if (Date.now() - this.#lastIndexTrim > INDEX_TRIM_EVERY_MS) {
      this.#lastIndexTrim = Date.now();
      await this.trimJobIndexes();
    }
  }

  /** The longest a job can exist from its submit: waiting, every attempt, then its retention. */
  #jobLifetimeMs(): number {
    const { limits, jobs } = this.#d.config;
    return limits.jobTtlMs + limits.jobTimeoutMs * jobs.attempts + limits.retentionSeconds * 1000;
  }

  /** Drops index entries of jobs submitted longer ago than any job lives; returns how many. */
  async trimJobIndexes(): Promise<number> {
    const { redis } = this.#d;
    const cutoff = Date.now() - this.#jobLifetimeMs();
    let removed = 0;
    for (const station of this.#stations()) removed += await redis.xtrim(this.#keys.jobIndex(station), 'MINID', String(cutoff));
    if (removed > 0) this.#d.logger.info({ removed }, 'job index entries past any job lifetime trimmed');
    return removed;
  }

  /** Fair-share tags grow with every turn taken: moved back, rarely, before they outgrow a class's span. */
  async #rebase(queue: DarkroomQueue): Promise<void> {
    for (let cls = AGED_PRIORITY; cls <= priorityRank('low'); cls++) {
      const moved = await fairRebase(this.#d.redis, queue, cls);
      if (moved > 0) this.#d.logger.info({ pipeline: queue.name, priority: cls, moved }, 'fair-share tags moved back');
    }
  }

  async #lease(): Promise<boolean> {
    const { redis, config } = this.#d;
    const ttl = Math.max(5000, config.maintenanceIntervalMs * 5);
    const got = await redis.set(this.#keys.maintenanceLock, this.#id, 'PX', ttl, 'NX');
    if (got === 'OK') return true;
    if ((await redis.get(this.#keys.maintenanceLock)) !== this.#id) return false;
    await redis.pexpire(this.#keys.maintenanceLock, ttl);
    return true;
  }

  async #release(): Promise<void> {
    const { redis } = this.#d;
    if ((await redis.get(this.#keys.maintenanceLock).catch(() => null)) === this.#id)
      await redis.del(this.#keys.maintenanceLock).catch(() => {});
  }

  /** The oldest waiting jobs of each class (lowest counters come first in the sorted set). */
  async #ageAndExpire(queue: DarkroomQueue): Promise<void> {
    const { redis, config, logger } = this.#d;
    const now = Date.now();
    const { maxWaitMs, jobTtlMs } = config.limits;
    const step = maxWaitMs / 3;
    const key = queue.toKey('prioritized');
    for (let cls = AGED_PRIORITY; cls <= priorityRank('low'); cls++) {
      // The class is in arrival order: when even its oldest job is not due (one aging step, or the
      // TTL for the aged class), none is, and the pass costs two commands instead of a full read.
      const [low, high] = priorityScoreRange(cls);
      const [oldest] = await redis.zrangebyscore(key, low, high, 'LIMIT', 0, 1);
      if (!oldest) continue;
      const oldestTs = Number(await redis.hget(queue.toKey(oldest), 'timestamp'));
      const firstDue = cls === AGED_PRIORITY ? jobTtlMs : Math.min(step, jobTtlMs);
      if (oldestTs && now - oldestTs < firstDue) continue;
      const ids = await redis.zrangebyscore(key, low, high, 'LIMIT', 0, SCAN);
      if (ids.length === 0) continue;
      const multi = redis.multi();
      for (const id of ids) multi.hmget(queue.toKey(id), 'timestamp', 'data');
      const rows = (await multi.exec()) ?? [];
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i]!;
        const [ts, data] = (rows[i]?.[1] ?? []) as (string | null)[];
        if (!ts || !data) continue;
        const age = now - Number(ts);
        if (age >= jobTtlMs) {
          await this.#expire(queue, id);
          continue;
        }
        const original = priorityRank((JSON.parse(data) as JobData).priority);
        const target = age >= maxWaitMs ? AGED_PRIORITY : Math.max(priorityRank('critical'), original - Math.floor(age / step));
        if (target >= cls) continue;
        const job = await Job.fromId(queue, id);
        if (!job) continue;
        const moved = await job.changePriority({ priority: target }).then(
          () => true,
          () => false, // it may have started meanwhile
        );
        if (moved && config.jobs.fairShare) await fairFront(queue, id, target).catch(() => false);
        logger.debug({ jobId: id, pipeline: queue.name, from: cls, to: target, ageMs: age }, 'job promoted by aging');
      }
    }
  }

  /**
   * Jobs whose own time-to-live is due: the pass above finds waiting jobs by the operator's TTL
   * only, so these are kept apart, by deadline. A job that has started (it may wait to retry) is
   * past the TTL's reach and only leaves the set.
   */
  async #expireOwnTtl(queue: DarkroomQueue): Promise<void> {
    const { redis } = this.#d;
    const key = this.#keys.ownTtl(queue.name);
    const due = await redis.zrangebyscore(key, '-inf', Date.now(), 'LIMIT', 0, SCAN);
    for (const id of due) {
      const [processedOn, data] = await redis.hmget(queue.toKey(id), 'processedOn', 'data');
      if (!processedOn && data) await this.#expire(queue, id, (JSON.parse(data) as JobData).ttlMs);
      await redis.zrem(key, id);
    }
  }

  async #expire(queue: DarkroomQueue, id: string, ttlMs = this.#d.config.limits.jobTtlMs): Promise<void> {
    const { redis, logger } = this.#d;
    const reason = formatFailure('expired', `waited past its queue time-to-live of ${Math.round(ttlMs / 1000)} s`);
    if (!(await endWaitingJob(redis, queue, id, reason))) return;
    const job = (await Job.fromId(queue, id)) as Job<JobData, JobResultData> | undefined;
    if (!job) return;
    logger.info({ jobId: id, pipeline: queue.name, station: job.data.station }, 'job expired in the queue');
    await this.#d.lifecycle.finalizeJob(queue, job, 'expired');
  }

  async #retire(queue: DarkroomQueue, set: 'completed' | 'failed'): Promise<void> {
    const { redis, blobs, config, logger } = this.#d;
    const cutoff = Date.now() - config.limits.retentionSeconds * 1000;
    const ids = await redis.zrangebyscore(queue.toKey(set), '-inf', cutoff, 'LIMIT', 0, SCAN);
    for (const id of ids) {
      const job = (await Job.fromId(queue, id)) as Job<JobData, JobResultData> | undefined;
      if (job?.data?.station) {
        // Tombstone first: from here on the id answers 410, never 404, to its station.
        await redis.set(this.#keys.tombstone(id), job.data.station, 'EX', config.limits.tombstoneSeconds);
        if (job.data.input?.key) await blobs.delete(job.data.input.key);
        if (job.returnvalue?.key) await blobs.delete(job.returnvalue.key);
      }
      await queue.remove(id).catch(() => {});
      await redis.zrem(queue.toKey(set), id); // gone already, or refused: never scan it again
      logger.debug({ jobId: id, pipeline: queue.name }, 'job removed after retention');
    }
  }

  /**
   * Blobs that no job refers to: inputs and outputs whose job no longer exists once they are
   * older than any job could be, and temporary blobs older than an hour. The store can hold
   * millions of blobs, so it is listed a page at a time, and a page of names costs one Redis round
   * trip: only blobs whose job is gone have their age looked up (orphans are rare), where the
   * listing does not give it.
   */
  async sweepOrphans(): Promise<number> {
    const { config, blobs } = this.#d;
    const jobLifetimeMs = this.#jobLifetimeMs();
    const minAgeMs = Math.min(jobLifetimeMs, 3600_000 + config.limits.retentionSeconds * 1000);
    let removed = 0;
    for (const dir of ['inputs', 'outputs']) {
      for await (const page of blobs.list(dir)) {
        for (let i = 0; i < page.length; i += SWEEP_BATCH) removed += await this.#sweepBatch(dir, page.slice(i, i + SWEEP_BATCH), minAgeMs);
      }
    }
    // In-flight writes only: a temporary blob older than an hour was left by a writer that died.
    removed += await blobs.sweepTemps(3600_000);
    if (removed > 0) this.#d.logger.info({ removed }, 'removed files no job refers to');
    return removed;
  }

  async #sweepBatch(dir: string, entries: BlobEntry[], minAgeMs: number): Promise<number> {
    const { queues, redis, blobs } = this.#d;
    const keys = entries.map(({ name }) => {
      const id = name.replace(/\.[a-z]+$/, '');
      return queues.get(pipelineOfJobId(id))?.toKey(id);
    });
    const multi = redis.pipeline();
    for (const key of keys) if (key) multi.exists(key);
    const replies = (await multi.exec()) ?? [];
    let r = 0;
    let removed = 0;
    for (const [i, entry] of entries.entries()) {
      if (keys[i] && replies[r++]?.[1] === 1) continue; // its job exists
      const key = `${dir}/${entry.name}`;
      const modified = entry.modifiedMs ?? (await blobs.modifiedMs(key));
      if (modified === undefined || Date.now() - modified < minAgeMs) continue;
      await blobs.delete(key);
      removed++;
    }
    return removed;
  }
}

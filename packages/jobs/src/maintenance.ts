import { randomUUID } from 'node:crypto';
import type { Dir } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AGED_PRIORITY, formatFailure, type JobData, type JobResultData, priorityRank } from '@darkroom/contracts';
import { Job } from 'bullmq';
import { priorityScoreRange } from './bullmq.ts';
import { endWaitingJob } from './end-waiting.ts';
import { pipelineOfJobId } from './ids.ts';
import { sysKeys } from './keys.ts';
import type { DarkroomQueue } from './queues.ts';
import type { Deps } from './service.ts';

/*
 * Housekeeping that must happen even when nobody asks, run by one API instance at a time (a
 * lease in Redis):
 * - aging: a waiting job is promoted one priority class per third of DARKROOM_MAX_WAIT_SECONDS,
 *   and at the full wait to the reserved class above `critical` (oldest first), so steady
 *   urgent work cannot starve it;
 * - time-to-live: a job still waiting after DARKROOM_JOB_TTL_SECONDS fails `expired` (workers
 *   also refuse to start one, so it never runs);
 * - retention: final jobs older than DARKROOM_RETENTION_SECONDS are removed with their blobs,
 *   leaving a small tombstone so their id answers 410 instead of 404;
 * - orphans: files no job refers to (a crash between storing and queueing) are removed.
 */

const SCAN = 200;
const ORPHAN_SWEEP_EVERY_MS = 10 * 60_000;
const SWEEP_BATCH = 500;

export class Maintenance {
  readonly #d: Deps;
  readonly #id = randomUUID();
  readonly #keys: ReturnType<typeof sysKeys>;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #lastOrphanSweep = 0;

  constructor(deps: Deps) {
    this.#d = deps;
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
    for (const queue of this.#d.queues.all()) {
      await this.#ageAndExpire(queue);
      await this.#retire(queue, 'completed');
      await this.#retire(queue, 'failed');
    }
    if (Date.now() - this.#lastOrphanSweep > ORPHAN_SWEEP_EVERY_MS) {
      this.#lastOrphanSweep = Date.now();
      await this.sweepOrphans();
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
        await job.changePriority({ priority: target }).catch(() => {}); // it may have started meanwhile
        logger.debug({ jobId: id, pipeline: queue.name, from: cls, to: target, ageMs: age }, 'job promoted by aging');
      }
    }
  }

  async #expire(queue: DarkroomQueue, id: string): Promise<void> {
    const { redis, logger } = this.#d;
    const reason = formatFailure('expired', `waited past its queue time-to-live of ${Math.round(this.#d.config.limits.jobTtlMs / 1000)} s`);
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
   * Files that no job refers to: inputs and outputs whose job no longer exists once they are
   * older than any job could be, and temporary files older than an hour. The data directory can
   * hold millions of files, so it is read as a stream, and a batch of names costs one Redis round
   * trip: only files whose job is gone are stat'ed (orphans are rare), never the live ones.
   */
  async sweepOrphans(): Promise<number> {
    const { config } = this.#d;
    const root = path.resolve(config.dataDir);
    const jobLifetimeMs =
      config.limits.jobTtlMs + config.limits.jobTimeoutMs * config.jobs.attempts + config.limits.retentionSeconds * 1000;
    const minAgeMs = Math.min(jobLifetimeMs, 3600_000 + config.limits.retentionSeconds * 1000);
    let removed = 0;
    for (const dir of ['inputs', 'outputs']) {
      let handle: Dir;
      try {
        handle = await fs.opendir(path.join(root, dir), { bufferSize: 256 });
      } catch {
        continue;
      }
      let batch: string[] = [];
      for await (const entry of handle) {
        if (!entry.isFile()) continue;
        batch.push(entry.name);
        if (batch.length < SWEEP_BATCH) continue;
        removed += await this.#sweepBatch(root, dir, batch, minAgeMs);
        batch = [];
      }
      if (batch.length > 0) removed += await this.#sweepBatch(root, dir, batch, minAgeMs);
    }
    // In-flight writes only: a file here older than an hour was left by a writer that died.
    const tmp = path.join(root, 'tmp');
    for (const name of await fs.readdir(tmp).catch(() => [] as string[])) {
      if ((await ageMs(path.join(tmp, name))) > 3600_000) {
        await fs.rm(path.join(tmp, name), { force: true });
        removed++;
      }
    }
    if (removed > 0) this.#d.logger.info({ removed }, 'removed files no job refers to');
    return removed;
  }

  async #sweepBatch(root: string, dir: string, names: string[], minAgeMs: number): Promise<number> {
    const { queues, redis, blobs } = this.#d;
    const keys = names.map((name) => {
      const id = name.replace(/\.[a-z]+$/, '');
      return queues.get(pipelineOfJobId(id))?.toKey(id);
    });
    const multi = redis.pipeline();
    for (const key of keys) if (key) multi.exists(key);
    const replies = (await multi.exec()) ?? [];
    let r = 0;
    let removed = 0;
    for (const [i, name] of names.entries()) {
      if (keys[i] && replies[r++]?.[1] === 1) continue; // its job exists
      if ((await ageMs(path.join(root, dir, name))) < minAgeMs) continue;
      await blobs.delete(`${dir}/${name}`);
      removed++;
    }
    return removed;
  }
}

/** How long ago the file was last written; 0 when it is gone or unreadable. */
async function ageMs(file: string): Promise<number> {
  const stat = await fs.stat(file).catch(() => undefined);
  return stat?.isFile() ? Date.now() - stat.mtimeMs : 0;
}

import type { JobData, JobResultData } from '@darkroom/contracts';
import { recordUsage, usageModel } from '@darkroom/jobs';
import type { Logger } from '@darkroom/runtime';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { WorkerMetrics } from './metrics.ts';

/** What one attempt of a job used. */
export interface AttemptUsage {
  /** The compute phase: from taking the device slot to the pipeline's run returning or throwing. */
  deviceMs: number;
  /** The part of deviceMs the pipeline reported loading models (ctx.reportModelLoad). */
  modelLoadMs: number;
  /** Submit to first start (BullMQ's processedOn); 0 on later attempts. */
  queuedMs: number;
}

/** An attempt whose outcome BullMQ never stored (its lock was lost) is dropped after this. */
const KEEP_MS = 3600_000;

/*
 * A job's GPU time is added to the station's usage once BullMQ has stored how its attempt ended:
 * the processor hands the attempt's figures over here, and the worker's completed / failed events
 * record them (the day's Redis hashes and the Prometheus counters). An attempt handed back to the
 * queue (shutdown, an unhealthy backend) has no such event: the processor records it itself.
 */
export class UsageMeter {
  readonly #pending = new Map<string, AttemptUsage & { at: number }>();
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #metrics: WorkerMetrics;
  readonly #logger: Logger;

  constructor(deps: { redis: Redis; prefix: string; metrics: WorkerMetrics; logger: Logger }) {
    this.#redis = deps.redis;
    this.#prefix = deps.prefix;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /** The processor: this attempt's figures, kept until its outcome is stored. */
  attempt(jobId: string, usage: AttemptUsage): void {
    const now = Date.now();
    for (const [id, u] of this.#pending) if (now - u.at > KEEP_MS) this.#pending.delete(id);
    this.#pending.set(jobId, { ...usage, at: now });
  }

  /**
   * Records the attempt that just ended. `final`: the job ended with it, and counts as one job if
   * it ever ran (this attempt reached the device, or an earlier one started).
   */
  async record(job: Job<JobData, JobResultData>, final: boolean): Promise<void> {
    const usage = this.#pending.get(job.id!);
    this.#pending.delete(job.id!);
    const ran = usage !== undefined || (job.attemptsStarted ?? 0) > 1;
    if (!usage && !(final && ran)) return;
    const u = usage ?? { deviceMs: 0, modelLoadMs: 0, queuedMs: 0 };
    const { station, pipeline } = job.data;
    const labels = { station, pipeline };
    this.#metrics.deviceSeconds.inc(labels, u.deviceMs / 1000);
    this.#metrics.queuedSeconds.inc(labels, u.queuedMs / 1000);
    this.#metrics.modelLoadSeconds.inc(labels, u.modelLoadMs / 1000);
    try {
      await recordUsage(this.#redis, this.#prefix, {
        station,
        pipeline,
        model: usageModel(job.data.params),
        at: Date.now(),
        jobs: final ? 1 : 0,
        ...u,
      });
    } catch (err) {
      this.#logger.warn({ err: (err as Error).message, jobId: job.id }, 'usage not recorded');
    }
  }
}

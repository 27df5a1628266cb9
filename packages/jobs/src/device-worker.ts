import type { JobData, JobResultData } from '@darkroom/contracts';
import { type Job, type Processor, Worker, type WorkerOptions } from 'bullmq';
import type { DeviceSlots, Lease } from './device-slots.ts';

type DarkroomJob = Job<JobData, JobResultData>;

/*
 * A BullMQ Worker that takes a job only when one of its pipeline's device slots is free, and
 * takes the slot with it. Its BullMQ concurrency is slots + overlap, so up to `overlap` jobs can
 * finish (encode, store, record) while the slots compute the next ones; but a job is moved to
 * active only at the moment it can start computing. No job sits "active" on a busy worker while
 * a newer, more urgent one waits in the queue, or while another worker is idle.
 *
 * BullMQ takes jobs in two places, both gated here (protected methods of BullMQ 6's Worker):
 *  - moveToActive, the fetch of the main loop: waits for a free slot first, hands it to the job
 *    taken (DeviceSlots.hold), gives it back when there was none;
 *  - handleCompleted / handleFailed, which take the next job in the same call that ends one
 *    (fetchNext): allowed only when a slot is free at that moment.
 * test/bullmq-internals.test.ts checks that these members are there, and
 * apps/worker/test/e2e-overlap.test.ts the outcome (no two computes at once, finish overlapping
 * the next compute, priorities kept), so a BullMQ upgrade that moves them fails there.
 */
export class DeviceWorker extends Worker<JobData, JobResultData> {
  readonly slots: DeviceSlots;
  readonly #stopping = new AbortController();
  /** Run just before a free slot takes a job: may move a better job for this worker in front (see affinity.ts). */
  readonly #beforeTake: (() => Promise<unknown>) | undefined;

  constructor(
    name: string,
    processor: Processor<JobData, JobResultData>,
    opts: WorkerOptions,
    slots: DeviceSlots,
    beforeTake?: () => Promise<unknown>,
  ) {
    super(name, processor, opts);
    this.slots = slots;
    this.#beforeTake = beforeTake;
  }

  async #prepareTake(): Promise<void> {
    // Only a preference: taking the next job goes on whatever happens to it.
    await this.#beforeTake?.().catch(() => {});
  }

  protected override async moveToActive(token: string, name?: string): Promise<DarkroomJob> {
    // BullMQ's loop fetches until it has `concurrency` jobs before it starts any. A job taken
    // with a slot may still be waiting there for its processor: blocking now would keep it from
    // ever starting. Take nothing; the loop starts that job and asks again.
    if (this.slots.busy === this.slots.size && this.slots.unclaimed > 0) return undefined as unknown as DarkroomJob;
    let lease: Lease;
    try {
      lease = await this.slots.acquire(this.#stopping.signal);
    } catch {
      // Closing: take nothing.
      return undefined as unknown as DarkroomJob;
    }
    let job: DarkroomJob | undefined;
    try {
      await this.#prepareTake();
      job = await super.moveToActive(token, name);
    } finally {
      this.#handOver(lease, job);
    }
    return job;
  }

  protected override async handleCompleted(
    result: JobResultData,
    job: DarkroomJob,
    token: string,
    fetchNextCallback: () => boolean = () => true,
    span?: Parameters<Worker['handleCompleted']>[4],
  ): Promise<DarkroomJob> {
    return this.#gated(fetchNextCallback, (fetchNext) => super.handleCompleted(result, job, token, fetchNext, span));
  }

  protected override async handleFailed(
    err: Error,
    job: DarkroomJob,
    token: string,
    fetchNextCallback: () => boolean = () => true,
    span?: Parameters<Worker['handleFailed']>[4],
  ): Promise<DarkroomJob> {
    // A job failed by BullMQ before its processor ran never claimed the slot it was taken with.
    if (job.id) this.slots.claim(job.id)?.release();
    // For a job moved back to wait or delayed, BullMQ fetches through moveToActive, gated above.
    const refetches = ['DelayedError', 'WaitingError', 'WaitingChildrenError'].includes(err.name);
    if (refetches) return super.handleFailed(err, job, token, fetchNextCallback, span);
    return this.#gated(fetchNextCallback, (fetchNext) => super.handleFailed(err, job, token, fetchNext, span));
  }

  override async close(force?: boolean): Promise<void> {
    this.#stopping.abort();
    return super.close(force);
  }

  /**
   * Runs a step that ends a job and may take the next one, with BullMQ's "take the next job too"
   * decision also requiring a free slot, which the next job then gets.
   */
  async #gated(fetchNext: () => boolean, step: (fetchNext: () => boolean) => Promise<DarkroomJob>): Promise<DarkroomJob> {
    let lease: Lease | undefined;
    let next: DarkroomJob | undefined;
    try {
      if (this.#beforeTake && this.slots.busy < this.slots.size) await this.#prepareTake();
      next = await step(() => {
        if (!fetchNext() || this.#stopping.signal.aborted) return false;
        lease = this.slots.tryAcquire();
        return lease !== undefined;
      });
      return next;
    } finally {
      if (lease) this.#handOver(lease, next);
    }
  }

  /** The slot goes with the job taken, or back when none was. */
  #handOver(lease: Lease, job: DarkroomJob | undefined): void {
    if (job?.id) this.slots.hold(job.id, lease);
    else lease.release();
  }
}

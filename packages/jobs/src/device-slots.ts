/*
 * The device slots of one pipeline on this worker: how many jobs may run their compute (the part
 * that holds the GPU) at once. The worker takes a job only with a slot in hand (device-worker.ts)
 * and leaves it here under the job's id for the processor to claim; a job that arrives without
 * one waits in line, first come first served. A waiter whose signal aborts (cancel, shutdown)
 * leaves the line at once.
 *
 * A slot given to a job is "in transit" until that job's compute starts (or the slot comes back
 * unused, e.g. the queue was empty). A job that has just freed its slot lets that hand-over
 * happen before its own finish step takes the CPU (`handedOver`): feeding the device comes first.
 */
export interface Lease {
  /** The holder's compute has started: the hand-over is done. */
  started(): void;
  /** Gives the slot back (to the next in line, if any). Only the first call counts. */
  release(): void;
}

export class DeviceSlots {
  readonly size: number;
  #free: number;
  readonly #waiting: { grant: () => void }[] = [];
  readonly #held = new Map<string, Lease>();
  #inTransit = 0;
  readonly #transitWaiters = new Set<() => void>();

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`device slots must be a whole number ≥ 1, got ${size}`);
    this.size = size;
    this.#free = size;
  }

  /** Slots held now (computing, or about to). */
  get busy(): number {
    return this.size - this.#free;
  }

  /** Slots kept for jobs taken but not yet claimed by their processor. */
  get unclaimed(): number {
    return this.#held.size;
  }

  /** Jobs waiting for a slot now. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** A slot once one is free; rejects with the signal's reason if it aborts first. */
  acquire(signal: AbortSignal): Promise<Lease> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.#lease());
        },
      };
      const onAbort = () => {
        const i = this.#waiting.indexOf(entry);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(entry);
    });
  }

  /** A slot at once, or undefined when none is free (or others wait in line for one). */
  tryAcquire(): Lease | undefined {
    if (this.#free === 0 || this.#waiting.length > 0) return undefined;
    this.#free--;
    return this.#lease();
  }

  /** Keeps a slot for the job just taken with it, until its processor claims it. */
  hold(jobId: string, lease: Lease): void {
    this.#held.get(jobId)?.release();
    this.#held.set(jobId, lease);
  }

  /** The slot kept for this job, if any; the caller now owns it. */
  claim(jobId: string): Lease | undefined {
    const lease = this.#held.get(jobId);
    this.#held.delete(jobId);
    return lease;
  }

  /**
   * Resolves once no slot is in transit (every slot given out has started its compute or come
   * back), or after `maxMs` whatever happens.
   */
  handedOver(maxMs: number): Promise<void> {
    if (this.#inTransit === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#transitWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, maxMs);
      this.#transitWaiters.add(done);
    });
  }

  #lease(): Lease {
    this.#inTransit++;
    let transit = true;
    let held = true;
    const arrived = () => {
      if (!transit) return;
      transit = false;
      if (--this.#inTransit === 0) for (const w of [...this.#transitWaiters]) w();
    };
    return {
      started: arrived,
      release: () => {
        if (!held) return;
        held = false;
        // The slot passes straight to the next in line, so no later caller can jump ahead of it.
        const next = this.#waiting.shift();
        if (next) next.grant();
        else this.#free++;
        arrived();
      },
    };
  }
}

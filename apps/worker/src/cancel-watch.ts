import type { Redis } from 'ioredis';

/*
 * Cancel requests for active jobs, as this worker hears them. The api sets a flag key and then
 * publishes the job id, and only for a job it saw active, so after the job was moved to active.
 * A subscription that has been unbroken since before this worker took the job therefore hears
 * every cancel of it: then the flag need not be read per job (one Redis round trip saved on
 * every start and every second of a run). After a break in the subscription, or when the job
 * was active before (a stalled or handed-back job, whose cancel may have come while nobody
 * listened), `covers` says no and the processor reads the flag.
 */
const REMEMBER_MS = 10 * 60_000;
const REMEMBER_MAX = 10_000;

export class CancelWatch {
  readonly #sub: Redis;
  readonly #channel: string;
  readonly #onCancel: (id: string) => void;
  /** Date.now() once the current subscription was confirmed; undefined while it is broken. */
  #upSince: number | undefined;
  /** Ids heard recently, for a message that arrives before its job reached the processor. */
  readonly #heard = new Map<string, number>();

  constructor(subscriber: Redis, channel: string, onCancel: (id: string) => void) {
    this.#sub = subscriber;
    this.#channel = channel;
    this.#onCancel = onCancel;
  }

  async start(): Promise<void> {
    this.#sub.on('message', (_channel: string, id: string) => {
      this.#remember(id);
      this.#onCancel(id);
    });
    this.#sub.on('close', () => {
      this.#upSince = undefined;
    });
    // ioredis subscribes again by itself after a reconnect, after 'ready'. Our own subscribe is
    // answered after that one (same connection, in order): from then on the watch is whole.
    this.#sub.on('ready', () => {
      if (this.#upSince !== undefined) return;
      this.#confirm().catch(() => {});
    });
    await this.#confirm();
  }

  async #confirm(): Promise<void> {
    await this.#sub.subscribe(this.#channel);
    if (this.#sub.status === 'ready') this.#upSince ??= Date.now();
  }

  /** Whether a cancel of this job was heard (possibly before the job reached the processor). */
  heard(id: string): boolean {
    return this.#heard.has(id);
  }

  /**
   * Whether every cancel of this job reaches this worker by message: first activation, taken
   * (processedOn) after the subscription was confirmed, and no break since.
   */
  covers(job: { processedOn?: number | undefined; attemptsStarted?: number | undefined }): boolean {
    return (
      this.#upSince !== undefined && job.processedOn !== undefined && this.#upSince < job.processedOn && (job.attemptsStarted ?? 1) <= 1
    );
  }

  #remember(id: string): void {
    const now = Date.now();
    // Oldest first: drop what is too old (a job's cancel matters only while it can still start).
    for (const [k, at] of this.#heard) {
      if (now - at < REMEMBER_MS && this.#heard.size < REMEMBER_MAX) break;
      this.#heard.delete(k);
    }
    this.#heard.delete(id);
    this.#heard.set(id, now);
  }
}

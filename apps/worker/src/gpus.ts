import type { GpuReport } from '@darkroom/contracts';
import { queryGpus } from '@darkroom/pipelines';
import type { Logger } from '@darkroom/runtime';

/*
 * The worker's GPUs, read with `nvidia-smi` every DARKROOM_GPU_POLL_SECONDS for the heartbeat
 * and the metrics. A host without it (no NVIDIA driver) has no report; where it fails, the last
 * report is dropped rather than shown stale. Each change between "reading" and "not reading" is
 * logged once, not every poll.
 */
export class GpuMonitor {
  readonly #intervalMs: number;
  readonly #logger: Logger;
  readonly #nvidiaSmi: string | undefined;
  readonly #timeoutMs: number;
  #latest: GpuReport[] | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #failing = false;
  #stopped = false;

  constructor(opts: { intervalMs: number; logger: Logger; nvidiaSmi?: string; timeoutMs?: number }) {
    this.#intervalMs = opts.intervalMs;
    this.#logger = opts.logger;
    this.#nvidiaSmi = opts.nvidiaSmi;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
  }

  /** The last report, or undefined when there is none (no nvidia-smi, it failed, or polling is off). */
  get latest(): GpuReport[] | undefined {
    return this.#latest;
  }

  /** Reads the GPUs once (so the first heartbeat has them), then every interval. Off with an interval of 0. */
  async start(): Promise<void> {
    if (this.#intervalMs <= 0) return;
    await this.poll();
    if (this.#stopped) return;
    this.#timer = setInterval(() => void this.poll(), this.#intervalMs);
    this.#timer.unref();
  }

  /** One reading; a poll still running (a slow nvidia-smi) is joined, not doubled. */
  poll(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  async #poll(): Promise<void> {
    try {
      const gpus = await queryGpus({ ...(this.#nvidiaSmi ? { nvidiaSmi: this.#nvidiaSmi } : {}), timeoutMs: this.#timeoutMs });
      if (this.#stopped) return;
      if (this.#failing) this.#logger.info({ gpus: gpus.length }, 'gpu report: nvidia-smi answers again');
      this.#failing = false;
      this.#latest = gpus;
    } catch (err) {
      this.#latest = undefined;
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      if (missing) {
        // No NVIDIA driver on this host: nothing will appear later, so stop asking.
        this.#logger.debug('gpu report: no nvidia-smi on the PATH');
        this.stop();
      } else if (!this.#failing) {
        this.#logger.info({ err: (err as Error).message }, 'gpu report: nvidia-smi failed; no gpus in the heartbeat until it answers');
      }
      this.#failing = true;
    }
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }
}

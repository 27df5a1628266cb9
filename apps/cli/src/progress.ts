import type { JobStatusBody } from '@darkroom/client';
import type { Output } from './io.ts';

/*
 * The live view of a job while the CLI waits. On a terminal it redraws one line in place
 * (carriage return + erase-line), with a bar, the queue position and the time waited. Anywhere
 * else (a pipe, a file, CI logs) it prints a plain line each time the state reads differently —
 * `queued position 3`, `active 40% step 4/10`, `completed` — and never an escape code.
 */

const BAR_WIDTH = 24;
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const CLEAR_LINE = '\r\x1b[2K';

/** The state in words, as the plain view prints it. */
export function describeState(job: JobStatusBody): string {
  switch (job.status) {
    case 'queued': {
      const parts = ['queued'];
      if (job.position !== undefined) parts.push(`position ${job.position}`);
      if (job.estimatedWaitSeconds != null) parts.push(`about ${formatSeconds(job.estimatedWaitSeconds)}`);
      return parts.join(' ');
    }
    case 'active': {
      const parts = ['active'];
      if (job.progress) parts.push(`${Math.round(job.progress.percent)}%`);
      if (job.progress?.message) parts.push(job.progress.message);
      if (job.cancelRequested) parts.push('(cancelling)');
      return parts.join(' ');
    }
    case 'failed':
      return job.error ? `failed ${job.error.code}: ${job.error.message}` : 'failed';
    default:
      return job.status;
  }
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export interface ProgressView {
  update(job: JobStatusBody): void;
  /** Leaves the view (a terminal's line is cleared); the caller prints the outcome. */
  stop(): void;
}

export function createProgress(out: Output, mode: 'terminal' | 'plain' | 'none'): ProgressView {
  if (mode === 'none') return { update() {}, stop() {} };
  return mode === 'terminal' ? new TerminalProgress(out) : new PlainProgress(out);
}

class PlainProgress implements ProgressView {
  #last = '';
  constructor(readonly out: Output) {}

  update(job: JobStatusBody): void {
    const line = describeState(job);
    if (line === this.#last) return;
    this.#last = line;
    this.out.write(`${line}\n`);
  }

  stop(): void {}
}

class TerminalProgress implements ProgressView {
  #job: JobStatusBody | undefined;
  #frame = 0;
  #stopped = false;
  readonly #started = Date.now();
  readonly #timer: NodeJS.Timeout;

  constructor(readonly out: Output) {
    this.#timer = setInterval(() => this.#draw(), 100);
    this.#timer.unref();
  }

  update(job: JobStatusBody): void {
    this.#job = job;
    if (!this.#stopped) this.#draw();
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.out.write(CLEAR_LINE);
  }

  #draw(): void {
    const job = this.#job;
    if (!job) return;
    this.#frame = (this.#frame + 1) % SPINNER.length;
    const elapsed = formatSeconds((Date.now() - this.#started) / 1000);
    let text: string;
    if (job.status === 'active') {
      const pct = Math.max(0, Math.min(100, job.progress?.percent ?? 0));
      const filled = Math.round((pct / 100) * BAR_WIDTH);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
      text = `${SPINNER[this.#frame]} active ${bar} ${String(Math.round(pct)).padStart(3)}%${job.progress?.message ? ` ${job.progress.message}` : ''}`;
    } else {
      text = `${SPINNER[this.#frame]} ${describeState(job)}`;
    }
    text += `  ${elapsed}`;
    const width = this.out.columns ?? 80;
    this.out.write(`${CLEAR_LINE}${[...text].slice(0, Math.max(10, width - 1)).join('')}`);
  }
}

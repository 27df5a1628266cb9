import type { JobStatusBody } from './contract-types.ts';
import { DarkroomError, DarkroomTimeoutError } from './errors.ts';
import { backoffDelay, sleep } from './retry.ts';
import { readEventStream } from './sse.ts';
import type { Transport } from './transport.ts';

/*
 * Waiting for a job to be final. First choice: the job's event stream (`/v1/jobs/{id}/events`),
 * which sends the current state first, then progress and status changes, and ends after the
 * final state; a stream that drops or ends early is reopened (the server's `retry:` hint, with
 * backoff while drops repeat). Where the stream is not on offer — an error status, or an answer
 * that is not `text/event-stream`, as proxies give — it polls `GET /v1/jobs/{id}` instead, from
 * `pollIntervalMs`, doubling up to `maxPollIntervalMs` while nothing changes.
 */

export interface WaitOptions {
  /** Give up after this long with a DarkroomTimeoutError (the job goes on). Default: no limit. */
  timeoutMs?: number;
  /** Called with every state seen: the first, each progress, the final one (a reconnect may repeat one). */
  onUpdate?: (job: JobStatusBody) => void;
  signal?: AbortSignal;
  /** Use the event stream (default true); false polls only. */
  sse?: boolean;
  /** First polling interval (default 250 ms). */
  pollIntervalMs?: number;
  /** Longest polling interval (default 5 s). */
  maxPollIntervalMs?: number;
}

const FINAL = new Set<string>(['completed', 'failed', 'cancelled']);
export const isFinal = (job: Pick<JobStatusBody, 'status'>): boolean => FINAL.has(job.status);

const jobPath = (id: string) => `/v1/jobs/${encodeURIComponent(id)}`;

export async function waitForJob(transport: Transport, id: string, opts: WaitOptions = {}): Promise<JobStatusBody> {
  const timeout = opts.timeoutMs !== undefined ? AbortSignal.timeout(opts.timeoutMs) : undefined;
  const signals = [opts.signal, timeout].filter((s): s is AbortSignal => s !== undefined);
  const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
  let last: JobStatusBody | undefined;
  const update = (job: JobStatusBody) => {
    last = job;
    opts.onUpdate?.(job);
  };
  try {
    if (opts.sse !== false) {
      const final = await watchEvents(transport, id, update, signal);
      if (final) return final;
    }
    return await poll(transport, id, update, () => last, signal, opts);
  } catch (err) {
    if (timeout?.aborted && !opts.signal?.aborted) throw new DarkroomTimeoutError(id, opts.timeoutMs!, last);
    throw err;
  }
}

/** The final state from the event stream, or undefined where the stream is not on offer. */
async function watchEvents(
  transport: Transport,
  id: string,
  update: (job: JobStatusBody) => void,
  signal: AbortSignal | undefined,
): Promise<JobStatusBody | undefined> {
  let reconnectMs = 2000;
  let drops = 0;
  for (;;) {
    let res: Response;
    try {
      res = await transport.send(
        { path: `${jobPath(id)}/events`, headers: { accept: 'text/event-stream' }, stream: true, signal },
        async (r) => r,
      );
    } catch (err) {
      // An error status here may be a proxy's; polling tells a real one (404, 401 …) for sure.
      if (err instanceof DarkroomError) return undefined;
      throw err;
    }
    if (!/^text\/event-stream/i.test(res.headers.get('content-type') ?? '') || !res.body) {
      await res.body?.cancel().catch(() => {});
      return undefined;
    }
    let final: JobStatusBody | undefined;
    try {
      await readEventStream(res.body, {
        onRetry: (ms) => {
          reconnectMs = ms;
        },
        onEvent: (e) => {
          if (e.event !== 'status' && e.event !== 'progress' && e.event !== 'message') return false;
          const job = JSON.parse(e.data) as JobStatusBody;
          drops = 0;
          update(job);
          if (isFinal(job)) final = job;
          return final !== undefined;
        },
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (err instanceof SyntaxError) return undefined; // not our stream after all
      // The connection dropped: reopen it below.
    }
    if (final) return final;
    drops++;
    if (drops >= transport.retry.attempts) return undefined; // it keeps dropping: poll instead
    await sleep(Math.max(reconnectMs, backoffDelay(drops - 1, transport.retry)), signal);
  }
}

async function poll(
  transport: Transport,
  id: string,
  update: (job: JobStatusBody) => void,
  last: () => JobStatusBody | undefined,
  signal: AbortSignal | undefined,
  opts: WaitOptions,
): Promise<JobStatusBody> {
  const first = opts.pollIntervalMs ?? 250;
  const max = Math.max(first, opts.maxPollIntervalMs ?? 5000);
  let interval = first;
  let seen = JSON.stringify(last() ?? null);
  for (;;) {
    const job = await transport.json<JobStatusBody>({ path: jobPath(id), signal });
    const now = JSON.stringify(job);
    if (now !== seen) {
      seen = now;
      update(job);
      interval = first;
    } else {
      interval = Math.min(max, interval * 2);
    }
    if (isFinal(job)) return job;
    await sleep(interval, signal);
  }
}

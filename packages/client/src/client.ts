import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { type ImageInput, toImagePart } from './body.ts';
import type {
  JobList,
  JobStatus,
  JobStatusBody,
  PipelineInfo,
  PipelineList,
  PipelineName,
  PipelineParams,
  Priority,
  QueueBody,
  WebhookEventName,
} from './contract-types.ts';
import { type DownloadOptions, type DownloadResult, downloadResult } from './download.ts';
import { DarkroomError } from './errors.ts';
import { DEFAULT_RETRY, type RetryOptions } from './retry.ts';
import { type RetryEvent, Transport } from './transport.ts';
import { type WaitOptions, waitForJob } from './wait.ts';

/*
 * The station's view of Darkroom: one method per thing a station does, typed by the shared
 * contracts (imported as types only: at run time this package needs nothing but Node ≥ 20).
 * Safe by default: every submit carries an Idempotency-Key, so the retries of the transport
 * never create a second job.
 */

export type { JobList, PipelineInfo, PipelineList };
/** Params as a station writes them: typed for the pipelines the contracts know, open for others. */
export type ParamsOf<P extends string> = P extends PipelineName ? PipelineParams[P] : Record<string, unknown>;

export interface DarkroomClientOptions {
  /** Default: `DARKROOM_URL`, else `http://127.0.0.1:8080`. */
  baseUrl?: string;
  /** The station's key. Default: `DARKROOM_API_KEY`. */
  apiKey?: string;
  /** Retry policy for network errors, 429, 502, 503 and 504 (default 5 attempts, 250 ms base, 10 s cap). */
  retry?: Partial<RetryOptions>;
  /** Per attempt: until the headers of a stream or download, until the whole answer otherwise. Default 30 s; 0 for none. */
  timeoutMs?: number;
  /** A fetch to use instead of the global one (a proxy agent, a test's wrapper). */
  fetch?: typeof fetch;
  userAgent?: string;
  /** Told about each retry before its delay (for logs). */
  onRetry?: (event: RetryEvent) => void;
}

export interface SubmitOptions<P extends string = string> {
  pipeline: P;
  /** A file path (streamed from disk), bytes, a Blob, or a stream (read into memory once, so a retry can resend it). */
  image?: ImageInput;
  /** An http(s) URL the server fetches the image from, instead of `image` (a failed fetch is a 422 whose `errors[0].code` says why). */
  imageUrl?: string;
  params?: ParamsOf<P>;
  priority?: Priority;
  webhookUrl?: string;
  /** What `webhookUrl` is told of (default: `completed`, `failed`, `cancelled`); `started` adds a notice when a worker takes the job. */
  webhookEvents?: WebhookEventName[];
  /** The job's execution limit in seconds, at most the operator's (above it, a 400 at `timeoutSeconds`). */
  timeoutSeconds?: number;
  /** How long the job may wait in the queue before it starts, in seconds, at most the operator's time-to-live. */
  ttlSeconds?: number;
  /** Default: a fresh UUID per call, shared by its retries. Pass your own to make re-running a script safe too. */
  idempotencyKey?: string;
  /** Seconds (0–60) the server may hold the answer until the job is final. */
  wait?: number;
  signal?: AbortSignal;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface ListJobsOptions extends CallOptions {
  /** Only jobs in this state, or in any of these. */
  status?: JobStatus | readonly JobStatus[];
  pipeline?: string;
  /** Only jobs submitted at or after this time. */
  since?: Date | string;
  /** Jobs per page, 1–100 (server default 20). */
  limit?: number;
  /** A page's `nextCursor`, for the page after it. */
  cursor?: string;
}

/** A page of the station's jobs, newest first; `nextCursor` is null after the last page. */
export interface JobPage {
  jobs: JobStatusBody[];
  nextCursor: string | null;
}

const MAX_IDS_PER_REQUEST = 100;
const jobPath = (id: string) => `/v1/jobs/${encodeURIComponent(id)}`;

export class DarkroomClient {
  readonly baseUrl: string;
  readonly #http: Transport;

  constructor(opts: DarkroomClientOptions = {}) {
    this.baseUrl = opts.baseUrl ?? process.env.DARKROOM_URL ?? 'http://127.0.0.1:8080';
    this.#http = new Transport({
      baseUrl: this.baseUrl,
      apiKey: opts.apiKey ?? process.env.DARKROOM_API_KEY,
      userAgent: opts.userAgent ?? `darkroom-client/0.1.0 node/${process.versions.node}`,
      fetch: opts.fetch ?? globalThis.fetch,
      retry: { ...DEFAULT_RETRY, ...opts.retry },
      timeoutMs: opts.timeoutMs ?? 30_000,
      onRetry: opts.onRetry,
    });
  }

  /**
   * Submits a job: multipart with the image when there is one, JSON otherwise (also for an
   * `imageUrl`, which the server fetches). Answers the job's
   * status body (`queued`, or final when `wait` was long enough); `deduplicated: true` when the
   * Idempotency-Key found an earlier job — also when the client's own retry found the job its
   * lost first attempt created.
   */
  async submit<P extends string>(opts: SubmitOptions<P>): Promise<JobStatusBody> {
    const key = opts.idempotencyKey ?? randomUUID();
    const fields: Record<string, unknown> = { pipeline: opts.pipeline };
    if (opts.params !== undefined) fields.params = opts.params;
    if (opts.priority !== undefined) fields.priority = opts.priority;
    if (opts.webhookUrl !== undefined) fields.webhookUrl = opts.webhookUrl;
    if (opts.webhookEvents !== undefined) fields.webhookEvents = opts.webhookEvents;
    if (opts.imageUrl !== undefined) fields.imageUrl = opts.imageUrl;
    if (opts.timeoutSeconds !== undefined) fields.timeoutSeconds = opts.timeoutSeconds;
    if (opts.ttlSeconds !== undefined) fields.ttlSeconds = opts.ttlSeconds;
    const image = opts.image !== undefined ? await toImagePart(opts.image) : undefined;
    const body = image
      ? () => {
          const form = new FormData();
          for (const [k, v] of Object.entries(fields)) form.append(k, typeof v === 'string' ? v : JSON.stringify(v));
          form.append('image', image.blob, image.filename);
          return form;
        }
      : () => JSON.stringify(fields);
    return this.#http.json<JobStatusBody>({
      method: 'POST',
      path: '/v1/jobs',
      query: { wait: opts.wait },
      headers: { 'idempotency-key': key, ...(image ? {} : { 'content-type': 'application/json' }) },
      body,
      retryConflict: true,
      extraTimeoutMs: (opts.wait ?? 0) * 1000,
      signal: opts.signal,
    });
  }

  /** A job's status body. */
  status(id: string, opts: CallOptions = {}): Promise<JobStatusBody> {
    return this.#http.json<JobStatusBody>({ path: jobPath(id), signal: opts.signal });
  }

  /** Status bodies of many jobs (asked 100 at a time); unknown ids are left out. */
  async statuses(ids: readonly string[], opts: CallOptions = {}): Promise<JobStatusBody[]> {
    const unique = [...new Set(ids)];
    const out: JobStatusBody[] = [];
    for (let i = 0; i < unique.length; i += MAX_IDS_PER_REQUEST) {
      const chunk = unique.slice(i, i + MAX_IDS_PER_REQUEST);
      const { jobs } = await this.#http.json<JobList>({ path: '/v1/jobs', query: { ids: chunk.join(',') }, signal: opts.signal });
      out.push(...jobs);
    }
    return out;
  }

  /**
   * A page of the station's own jobs, newest first (e.g. `{ status: ['queued', 'active'] }` after
   * a restart, to find what was in flight). A filtered page can hold fewer than `limit` jobs and
   * still have a `nextCursor`: follow it until null, or use `eachJob`.
   */
  async listJobs(opts: ListJobsOptions = {}): Promise<JobPage> {
    const status = typeof opts.status === 'string' ? opts.status : opts.status?.join(',');
    const since = opts.since instanceof Date ? opts.since.toISOString() : opts.since;
    const page = await this.#http.json<JobList>({
      path: '/v1/jobs',
      query: { status, pipeline: opts.pipeline, since, limit: opts.limit, cursor: opts.cursor },
      signal: opts.signal,
    });
    return { jobs: page.jobs, nextCursor: page.nextCursor ?? null };
  }

  /** Every job `listJobs` would list, page after page. */
  async *eachJob(opts: Omit<ListJobsOptions, 'cursor'> = {}): AsyncGenerator<JobStatusBody> {
    let cursor: string | undefined;
    do {
      const page = await this.listJobs({ ...opts, ...(cursor ? { cursor } : {}) });
      yield* page.jobs;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  /**
   * Queues a failed or cancelled job again (same request, same image) under a new id: the new
   * job's status body, with `retryOf`. A job retried already, or not failed or cancelled, is a
   * DarkroomError 409.
   */
  async retryJob(id: string, opts: CallOptions = {}): Promise<JobStatusBody> {
    try {
      return await this.#http.json<JobStatusBody>({ method: 'POST', path: `${jobPath(id)}/retry`, signal: opts.signal });
    } catch (err) {
      // A retry of the request after a lost answer finds the link its first attempt made.
      if (err instanceof DarkroomError && err.status === 409 && err.attempt > 1) {
        const old = await this.status(id, opts);
        if (old.retriedBy) return this.status(old.retriedBy, opts);
      }
      throw err;
    }
  }

  /** Resolves with the job's final status body (completed, failed or cancelled); see WaitOptions. */
  waitFor(id: string, opts: WaitOptions = {}): Promise<JobStatusBody> {
    return waitForJob(this.#http, id, opts);
  }

  /** Streams the result to a file (written whole or not at all) or a Writable. */
  download(id: string, destination: string | Writable, opts: DownloadOptions = {}): Promise<DownloadResult> {
    return downloadResult(this.#http, id, destination, opts);
  }

  /** The result's bytes, in memory. */
  result(id: string, opts: CallOptions = {}): Promise<Buffer> {
    return this.#http.send({ path: `${jobPath(id)}/result`, headers: { accept: '*/*' }, signal: opts.signal }, async (res) =>
      Buffer.from(await res.arrayBuffer()),
    );
  }

  /**
   * Cancels a job: the body with `status: cancelled` for a queued job, or `cancelRequested: true`
   * for an active one (it ends cancelled shortly). A job already final is a DarkroomError 409.
   */
  async cancel(id: string, opts: CallOptions = {}): Promise<JobStatusBody> {
    try {
      return await this.#http.json<JobStatusBody>({ method: 'DELETE', path: jobPath(id), signal: opts.signal });
    } catch (err) {
      // A retry after a lost answer finds the job already cancelled by the first attempt.
      if (err instanceof DarkroomError && err.status === 409 && err.attempt > 1) {
        const job = await this.status(id, opts);
        if (job.status === 'cancelled') return job;
      }
      throw err;
    }
  }

  /** Every pipeline's queue, its workers, and the limits (the station's own included). */
  queue(opts: CallOptions = {}): Promise<QueueBody> {
    return this.#http.json<QueueBody>({ path: '/v1/queue', signal: opts.signal });
  }

  /** The pipelines, whether each takes an image, and the JSON Schema of its params. */
  pipelines(opts: CallOptions = {}): Promise<PipelineList> {
    return this.#http.json<PipelineList>({ path: '/v1/pipelines', signal: opts.signal });
  }
}

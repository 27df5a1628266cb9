import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BackendStatus,
  BackendUnavailableError,
  BackendUnhealthyError,
  COMFYUI_SPEC,
  type ComfyuiParams,
  type ComfyuiWorkflow,
  DarkroomJobError,
  InvalidInputError,
} from '@darkroom/contracts';
import type { Logger } from '@darkroom/runtime';
import sharp from 'sharp';
import {
  ComfyClient,
  type ComfyHistoryEntry,
  type ComfyImageRef,
  type ComfyMessage,
  type ComfyNodeError,
  ComfyRequestError,
  type ComfySocket,
  PromptExistsError,
  PromptRejectedError,
} from './comfyui-client.ts';
import { type ApiPrompt, type FilledWorkflow, fillTemplate, loadTemplates, type WorkflowTemplate } from './comfyui-workflows.ts';
import type { ComputeDone, Pipeline, PipelineContext, PipelineInput, PipelineOutput, PipelineStatus } from './types.ts';

/*
 * Diffusion and instruction edits run by a ComfyUI server beside the GPU worker. Per attempt:
 * open the websocket under a client id named after the job and attempt, take any earlier
 * attempt's prompt off the server, upload the input (and the mask made from its alpha) to the
 * server's temp folder, fill the workflow template's slots, queue the prompt under an id chosen
 * here, map ComfyUI's progress messages to job progress, decide the outcome from the prompt's
 * history once ComfyUI says it ended, download the image and delete the history entry.
 *
 * Failures: ComfyUI unreachable, dropping the connection, answering 5xx or losing the prompt →
 * BackendUnavailableError (retried, then backend_unavailable). The server refusing the workflow
 * → invalid_input when the refused input came from the station's params or image, else a
 * pipeline_error that is not retried (the template or the server's models need fixing). A node
 * failing while running → pipeline_error, retried only when the GPU ran out of memory (after
 * asking the server to free it). A backend whose GPU keeps failing is marked unhealthy: its jobs
 * go back to the queue for other workers until a health probe passes.
 */

export interface ComfyuiOptions {
  /** DARKROOM_COMFYUI_URL; unset, the pipeline is not served. */
  url: string | undefined;
  /** Limit for each HTTP request to ComfyUI (not for the run, which the job's time limit bounds). */
  requestTimeoutMs: number;
  /** An operator's directory of templates replacing the built-in ones by name. */
  workflowsDir?: string | undefined;
  /** How often the prompt's history is read while waiting, in case a websocket message was missed. */
  pollMs?: number;
  /** How long a cancel waits for ComfyUI to confirm the interrupt. */
  cancelWaitMs?: number;
  /** How long the history may lag the end of a prompt (ComfyUI writes it after the last message). */
  historyWaitMs?: number;
  /** GPU failures (out of memory, CUDA errors) in a row after which the backend is unhealthy. */
  unhealthyAfter?: number;
  /** How often the backend's version, memory and health are read for the heartbeat. */
  statsEveryMs?: number;
}

/** Where uploads (in ComfyUI's temp folder) and outputs (in its output folder) go, so an operator can find them. */
export const COMFYUI_UPLOAD_SUBFOLDER = 'darkroom';

const PROGRESS = { uploaded: 4, queued: 6, started: 10, sampled: 90, done: 95 } as const;

/** The client id of one attempt: an attempt finds its job's earlier prompts by this prefix. */
function attemptClientId(job: { id: string; attempt: number }): string {
  return `${jobClientPrefix(job.id)}${job.attempt}`;
}
function jobClientPrefix(jobId: string): string {
  return `darkroom:${jobId}:`;
}

export class ComfyuiPipeline implements Pipeline<ComfyuiParams> {
  readonly spec = COMFYUI_SPEC;
  readonly #opts: ComfyuiOptions;
  #templates: Record<ComfyuiWorkflow, WorkflowTemplate> | undefined;
  #client: ComfyClient | undefined;
  #device: string | undefined;
  #backend: BackendStatus | undefined;
  #statsAt = 0;
  #gpuFailures = 0;
  #unhealthy: string | undefined;
  /** The workflow of the last prompt that finished: ComfyUI keeps its models loaded until another needs the room. */
  #lastWorkflow: ComfyuiWorkflow | undefined;

  constructor(opts: ComfyuiOptions) {
    this.#opts = opts;
  }

  /**
   * The last finished workflow's models are certainly loaded; others may be too, but claiming
   * them could send a job to a server that has to load its checkpoint after all.
   */
  warmModels(): string[] {
    return this.#lastWorkflow && !this.#unhealthy ? [this.#lastWorkflow] : [];
  }

  async unavailable(): Promise<string | undefined> {
    return this.#opts.url ? undefined : 'DARKROOM_COMFYUI_URL is not set';
  }

  /** The server's device, and its version, memory and health as last read (refreshed in the background). */
  status(): PipelineStatus {
    if (this.#opts.url && Date.now() - this.#statsAt > (this.#opts.statsEveryMs ?? 30_000)) void this.#readStats().catch(() => {});
    return { ...(this.#device ? { device: this.#device } : {}), ...(this.#backend ? { backend: this.#backend } : {}) };
  }

  get templates(): Record<ComfyuiWorkflow, WorkflowTemplate> {
    this.#templates ??= loadTemplates(this.#opts.workflowsDir);
    return this.#templates;
  }

  #clientOrThrow(): ComfyClient {
    if (!this.#opts.url) throw new BackendUnavailableError('DARKROOM_COMFYUI_URL is not set on this worker');
    this.#client ??= new ComfyClient(this.#opts.url, this.#opts.requestTimeoutMs);
    return this.#client;
  }

  /** Checks the templates, and says what ComfyUI runs on; an unreachable server is only a warning (jobs wait and retry). */
  async init(logger: Logger): Promise<void> {
    void this.templates;
    const client = this.#clientOrThrow();
    try {
      const stats = await this.#readStats();
      logger.info({ comfyui: client.base.origin, version: stats.version, device: this.#device }, 'comfyui reachable');
    } catch (err) {
      logger.warn({ comfyui: client.base.origin, err: (err as Error).message }, 'comfyui not reachable yet: its jobs will wait and retry');
    }
  }

  /** GET /system_stats: the backend report. It answers 500 when the device's memory cannot be read (a broken CUDA context). */
  async #readStats(): Promise<BackendStatus> {
    this.#statsAt = Date.now();
    const client = this.#clientOrThrow();
    try {
      const stats = await client.systemStats(AbortSignal.timeout(Math.min(this.#opts.requestTimeoutMs, 5000)));
      const d = stats.devices?.[0];
      if (d?.name) {
        const mem = d.vram_total ? ` (${Math.round(d.vram_total / 2 ** 20)} MiB)` : '';
        this.#device = `comfyui: ${d.name.replace(/\s*:\s*\w+$/, '')}${mem}`;
      }
      this.#backend = {
        kind: 'comfyui',
        ...(stats.system?.comfyui_version ? { version: stats.system.comfyui_version } : {}),
        healthy: this.#unhealthy === undefined,
        ...(this.#unhealthy ? { reason: this.#unhealthy } : {}),
        ...(d?.vram_total !== undefined ? { vramTotalBytes: d.vram_total } : {}),
        ...(d?.vram_free !== undefined ? { vramFreeBytes: d.vram_free } : {}),
        checkedAt: new Date().toISOString(),
      };
    } catch (err) {
      this.#backend = {
        kind: 'comfyui',
        ...(this.#backend?.version ? { version: this.#backend.version } : {}),
        healthy: false,
        reason: this.#unhealthy ?? (err as Error).message,
        checkedAt: new Date().toISOString(),
      };
      throw err;
    }
    return this.#backend;
  }

  /** The health probe of an unhealthy backend: its /system_stats answers with a device again. */
  async probe(): Promise<boolean> {
    if (!this.#unhealthy) return true;
    const reason = this.#unhealthy;
    this.#unhealthy = undefined;
    try {
      await this.#readStats();
      if (this.#device) {
        this.#gpuFailures = 0;
        return true;
      }
    } catch {
      // still unhealthy
    }
    this.#unhealthy = reason;
    if (this.#backend) this.#backend = { ...this.#backend, healthy: false, reason };
    return false;
  }

  async run(input: PipelineInput | null, params: ComfyuiParams, ctx: PipelineContext): Promise<ComputeDone> {
    if (this.#unhealthy) throw new BackendUnhealthyError(`ComfyUI on this worker is unhealthy: ${this.#unhealthy}`);
    const client = this.#clientOrThrow();
    const name = params.workflow;
    const template = this.templates[name];
    if (template.image === 'required' && !input) throw new InvalidInputError(`the ${name} workflow needs an input image`);
    // Refuse params the workflow cannot take before any upload (the file names are filled in later).
    fillTemplate(name, template, params, { image: 'x', mask: 'x' });
    const images = template.image === 'required' && input ? await prepareImages(input, template, name, ctx) : undefined;

    const job = ctx.job ?? { id: randomUUID(), attempt: 1 };
    const clientId = attemptClientId(job);
    // Chosen here, kept for every try of this attempt: after an ambiguous failure the server is asked for it before sending again.
    const wantedId = randomUUID();
    const socket = await client.connect(clientId, ctx.signal);
    const watch = new PromptWatch(ctx, name, socket);
    let promptId: string | undefined;
    try {
      socket.on({ message: (m) => watch.handle(m), close: (reason) => void this.#recover(client, watch, clientId, reason) });
      if (job.attempt > 1) await this.#stopEarlier(client, job, clientId, ctx.logger);
      const files: { image?: string; mask?: string } = {};
      if (images) {
        // The temp folder, which ComfyUI empties when it starts: core ComfyUI has no route to delete an input.
        const stem = `${Date.now()}-${randomUUID()}`;
        files.image = await client.upload(images.image, `${stem}.png`, COMFYUI_UPLOAD_SUBFOLDER, 'temp', ctx.signal);
        if (images.mask) files.mask = await client.upload(images.mask, `${stem}-mask.png`, COMFYUI_UPLOAD_SUBFOLDER, 'temp', ctx.signal);
        await ctx.reportProgress(PROGRESS.uploaded, 'uploaded to ComfyUI');
      }
      const filled = fillTemplate(name, template, params, files);
      uniqueOutputs(filled.prompt, job);
      const queued = await this.#submit(client, filled, name, clientId, wantedId, ctx);
      promptId = queued.promptId;
      const leftOut = describeNodeErrors(queued.nodeErrors);
      if (leftOut) ctx.logger.warn({ promptId, nodeErrors: queued.nodeErrors }, 'comfyui left outputs out of the prompt');
      ctx.logger.info({ promptId, workflow: name, ...filled.values }, 'comfyui prompt queued');
      watch.report(PROGRESS.queued, leftOut ? `queued in ComfyUI (outputs left out: ${leftOut})` : 'queued in ComfyUI');
      watch.setPromptId(promptId);
      const poll = setInterval(() => void this.#poll(client, watch), this.#opts.pollMs ?? 5000);
      let history: ComfyHistoryEntry | undefined;
      try {
        history = (await watch.done) ?? (await this.#settle(client, watch, promptId, ctx.signal));
      } finally {
        clearInterval(poll);
      }
      const ref = pickImage(history, watch.outputs, template.output);
      if (!ref) {
        const why = leftOut ? `: ComfyUI left out ${leftOut}` : '';
        throw new DarkroomJobError('pipeline_error', `the ${name} workflow finished without an image${why}`, false);
      }
      this.#gpuFailures = 0;
      this.#lastWorkflow = name;
      const done = promptId;
      // ComfyUI's GPU is done with the prompt: downloading and re-encoding need no device slot.
      return {
        async finish() {
          try {
            await ctx.reportProgress(PROGRESS.done, 'downloading the result');
            const data = await client.view(ref, ctx.signal).catch((err: unknown) => {
              throw err instanceof ComfyRequestError
                ? new BackendUnavailableError(`ComfyUI could not send the result (${err.status})`)
                : err;
            });
            const out = await reencode(data, ctx.limits.maxImagePixels);
            ctx.signal.throwIfAborted();
            await ctx.reportProgress(100, 'done');
            return out;
          } catch (err) {
            if (ctx.signal.aborted) throw ctx.signal.reason;
            throw err;
          } finally {
            await client.deleteHistory(done).catch(() => {});
          }
        },
      };
    } catch (err) {
      if (ctx.signal.aborted) {
        if (promptId) await this.#cancel(client, watch, promptId, clientId, ctx.logger);
        throw ctx.signal.reason;
      }
      // A prompt that ran to a failure gets its history written after the last message; a lost one has none.
      if (promptId) await this.#forget(client, watch, promptId, !(err instanceof BackendUnavailableError));
      throw await this.#judge(client, err, ctx.logger);
    } finally {
      watch.dispose();
    }
  }

  /**
   * The prompt may have been queued even though the answer was lost (timeout, reset): the server
   * is asked for it (by id, or by client id where it chose the id itself) before it is sent
   * again, and a 409 for its own id means an earlier try got through.
   */
  async #submit(
    client: ComfyClient,
    filled: FilledWorkflow,
    name: string,
    clientId: string,
    promptId: string,
    ctx: PipelineContext,
  ): Promise<{ promptId: string; nodeErrors: Record<string, ComfyNodeError> }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await client.queuePrompt(filled.prompt, clientId, promptId, ctx.signal);
      } catch (err) {
        if (err instanceof PromptExistsError) return { promptId, nodeErrors: {} };
        if (err instanceof PromptRejectedError) throw rejection(err, name, filled);
        if (err instanceof ComfyRequestError) throw refused(err, name);
        if (ctx.signal.aborted || !(err instanceof BackendUnavailableError)) throw err;
        const found = await client.findPrompt(promptId, clientId, ctx.signal).catch(() => undefined);
        if (found) {
          ctx.logger.info({ promptId: found }, 'comfyui had the prompt whose answer was lost');
          return { promptId: found, nodeErrors: {} };
        }
        if (attempt >= 2) throw err;
        await sleep(250 * 2 ** attempt, undefined, { signal: ctx.signal });
      }
    }
  }

  /** Reads the history once ComfyUI said the prompt ended: it may not be written yet, so a bounded wait. */
  async #settle(client: ComfyClient, watch: PromptWatch, promptId: string, signal: AbortSignal): Promise<ComfyHistoryEntry> {
    const deadline = Date.now() + (this.#opts.historyWaitMs ?? 5000);
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      const h = await client.history(promptId, signal);
      if (h?.status) {
        watch.judge(h); // throws for an error or an interrupt
        return h;
      }
      if (Date.now() >= deadline) {
        if (watch.succeeded && Object.keys(watch.outputs).length > 0) return {};
        throw new BackendUnavailableError('ComfyUI ended the prompt but kept no history of it');
      }
      await sleep(delay, undefined, { signal });
    }
  }

  /**
   * A failed attempt: out of memory → ComfyUI is asked to free it before the retry; GPU failures
   * in a row → the backend is unhealthy and the job goes back to the queue for other workers.
   */
  async #judge(client: ComfyClient, err: unknown, logger: Logger): Promise<unknown> {
    if (!(err instanceof ComfyExecutionError) || !err.gpu) return err;
    if (err.gpu === 'oom') {
      // Asked to unload every model: nothing is warm any more.
      this.#lastWorkflow = undefined;
      await client.free().catch(() => {});
    }
    this.#gpuFailures++;
    const limit = this.#opts.unhealthyAfter ?? 3;
    if (this.#gpuFailures < limit) return err;
    this.#unhealthy = `${this.#gpuFailures} GPU failures in a row (last: ${err.gpu === 'oom' ? 'out of memory' : 'CUDA error'})`;
    if (this.#backend) this.#backend = { ...this.#backend, healthy: false, reason: this.#unhealthy };
    logger.error({ failures: this.#gpuFailures }, 'comfyui backend marked unhealthy: its jobs go to other workers until it recovers');
    return new BackendUnhealthyError(`ComfyUI on this worker is unhealthy: ${this.#unhealthy}`, { cause: err });
  }

  /** Deletes the prompt's history entry once ComfyUI has written it (it comes after the last message). */
  async #forget(client: ComfyClient, watch: PromptWatch, promptId: string, wait: boolean): Promise<void> {
    if (wait) await Promise.race([watch.closed, sleep(this.#opts.historyWaitMs ?? 5000)]);
    await client.deleteHistory(promptId).catch(() => {});
  }

  /**
   * Takes the prompt off ComfyUI: the jobs route's cancel where the server has it; else dequeued
   * if waiting, or interrupted if running, and only when the prompt running is this one, because
   * older servers' /interrupt stops whatever runs (another worker's prompt on a shared server).
   */
  async #cancel(client: ComfyClient, watch: PromptWatch, promptId: string, clientId: string, logger: Logger): Promise<void> {
    const wait = this.#opts.cancelWaitMs ?? 3000;
    try {
      if (await client.cancelJob(promptId)) {
        if (!watch.started) {
          logger.info({ promptId }, 'comfyui prompt cancelled before it started');
          return;
        }
      } else {
        let where = await client.queued(promptId, undefined, clientId);
        if (where?.state === 'pending') {
          await client.dequeue(where.promptId);
          where = await client.queued(promptId, undefined, clientId);
        }
        if (!where) {
          logger.info({ promptId }, 'comfyui prompt taken off the queue');
          if (!watch.started) return;
        } else if (where.state === 'running' && !watch.finished) {
          await client.interrupt(where.promptId);
        }
      }
      const confirmed = await Promise.race([watch.closed.then(() => true), sleep(wait).then(() => false)]);
      logger.info({ promptId, confirmed }, 'comfyui prompt stopped');
      await client.deleteHistory(promptId).catch(() => {});
    } catch (err) {
      logger.warn({ promptId, err: (err as Error).message }, 'comfyui prompt could not be stopped');
    }
  }

  /** An earlier attempt of this job (its worker died or timed out) may still be queued or running: stopped, so it burns no GPU time. */
  async #stopEarlier(client: ComfyClient, job: { id: string; attempt: number }, clientId: string, logger: Logger): Promise<void> {
    const q = await client.queue().catch(() => undefined);
    if (!q) return;
    const prefix = jobClientPrefix(job.id);
    for (const [state, items] of [
      ['running', q.queue_running ?? []],
      ['pending', q.queue_pending ?? []],
    ] as const) {
      for (const item of items) {
        const owner = (item[3] as { client_id?: unknown } | undefined)?.client_id;
        if (typeof owner !== 'string' || !owner.startsWith(prefix) || owner === clientId) continue;
        const id = String(item[1]);
        const cancelled = await client.cancelJob(id).catch(() => false);
        if (!cancelled) await (state === 'pending' ? client.dequeue(id) : client.interrupt(id)).catch(() => {});
        logger.info({ promptId: id }, 'comfyui prompt of an earlier attempt stopped');
      }
    }
  }

  /** Reads the history in case a message was missed; errors are left to the socket and the time limit. */
  async #poll(client: ComfyClient, watch: PromptWatch): Promise<void> {
    if (!watch.promptId || watch.finished) return;
    const h = await client.history(watch.promptId).catch(() => undefined);
    if (h?.status) watch.fromHistory(h);
  }

  /**
   * The websocket closed under us: the history or the queue tells whether ComfyUI still has the
   * prompt (then listen again, same client id, presenting the credential a current server gave)
   * or lost it; no answer at all means it is down.
   */
  async #recover(client: ComfyClient, watch: PromptWatch, clientId: string, reason: string): Promise<void> {
    if (watch.finished) return;
    let lastError: unknown;
    for (const delay of [0, 300, 1000]) {
      await sleep(delay);
      if (watch.finished) return;
      try {
        const id = watch.promptId;
        if (id) {
          const h = await client.history(id);
          if (h?.status) return watch.fromHistory(h);
          if (!(await client.queued(id, undefined, clientId)))
            return watch.fail(new BackendUnavailableError('ComfyUI lost the prompt (did it restart?)'));
        }
        const socket = await client.connect(clientId, AbortSignal.timeout(5000), watch.credential);
        watch.replaceSocket(socket);
        socket.on({ message: (m) => watch.handle(m), close: (r) => void this.#recover(client, watch, clientId, r) });
        return;
      } catch (err) {
        lastError = err;
      }
    }
    watch.fail(new BackendUnavailableError(`ComfyUI went away while running the workflow (websocket ${reason})`, { cause: lastError }));
  }
}

/**
 * Names every SaveImage's files after the job and attempt. Why: ComfyUI answers a prompt it has
 * just run from its node cache, replaying the earlier output's file name (which an operator may
 * have deleted since); a per-attempt prefix makes each prompt's output node new to the cache, so
 * it always writes a file of its own, while the loaders and encoders above it stay cached.
 */
function uniqueOutputs(prompt: ApiPrompt, job: { id: string; attempt: number }): void {
  for (const node of Object.values(prompt)) {
    if (node.class_type !== 'SaveImage') continue;
    const prefix = String(node.inputs.filename_prefix ?? `${COMFYUI_UPLOAD_SUBFOLDER}/darkroom`);
    node.inputs.filename_prefix = `${prefix}-${job.id.replace(/[^\w-]/g, '_')}-${job.attempt}`;
  }
}

function describeNodeErrors(nodeErrors: Record<string, ComfyNodeError>): string {
  return Object.entries(nodeErrors)
    .map(([node, ne]) => {
      const first = ne.errors?.[0];
      return `node ${node} (${ne.class_type ?? '?'})${first ? `: ${(first.message ?? first.type ?? '').slice(0, 80)}` : ''}`;
    })
    .join('; ');
}

/** A node failing while running; `gpu` says when the GPU is to blame (counted towards the backend's health). */
class ComfyExecutionError extends DarkroomJobError {
  constructor(
    message: string,
    retryable: boolean,
    readonly gpu: 'oom' | 'cuda' | undefined,
  ) {
    super('pipeline_error', message, retryable);
    this.name = 'ComfyExecutionError';
  }
}

/**
 * Follows one prompt through ComfyUI's messages. Messages for other prompts are ignored; those
 * that come before the prompt's id is known are kept until it is. `executing {node: null}` and
 * `execution_success` end the prompt, but the outcome is read from the history.
 */
class PromptWatch {
  promptId: string | undefined;
  started = false;
  finished = false;
  /** `execution_success` was seen. */
  succeeded = false;
  readonly outputs: Record<string, ComfyImageRef[]> = {};
  /** Settles when the prompt ended: with the history when it came from there, else undefined (read it then). */
  readonly done: Promise<ComfyHistoryEntry | undefined>;
  /** Resolves on the closing `executing {node: null}` (after the history write), or when the prompt ends otherwise. */
  readonly closed: Promise<void>;
  readonly #ctx: PipelineContext;
  readonly #workflow: string;
  readonly #first: ComfySocket;
  #resolve!: (h: ComfyHistoryEntry | undefined) => void;
  #reject!: (e: unknown) => void;
  #closedResolve!: () => void;
  readonly #early: ComfyMessage[] = [];
  #socket: ComfySocket;
  #reported: number = PROGRESS.uploaded;
  readonly #onAbort: () => void;

  constructor(ctx: PipelineContext, workflow: string, socket: ComfySocket) {
    this.#ctx = ctx;
    this.#workflow = workflow;
    this.#first = socket;
    this.#socket = socket;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.#closedResolve = resolve;
    });
    this.#onAbort = () => this.#reject(ctx.signal.reason);
    ctx.signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The credential the server announced on the first connection. */
  get credential(): string | undefined {
    return this.#first.credential;
  }

  setPromptId(id: string): void {
    this.promptId = id;
    for (const m of this.#early.splice(0)) this.handle(m);
  }

  replaceSocket(s: ComfySocket): void {
    if (this.#socket !== this.#first) this.#socket.close();
    this.#socket = s;
  }

  handle(m: ComfyMessage): void {
    if (m.type === 'status' || m.type === 'feature_flags' || m.type === 'credential_auth') return;
    if (!this.promptId) {
      this.#early.push(m);
      return;
    }
    if (m.data.prompt_id !== this.promptId) return;
    const d = m.data;
    if (m.type === 'executing' && (d.node === null || d.node === undefined)) {
      this.#closedResolve();
      this.#end();
      return;
    }
    if (this.finished) return;
    switch (m.type) {
      case 'execution_start':
      case 'executing':
      case 'progress_state':
        this.#start();
        break;
      case 'progress':
        this.#start();
        this.#progress(Number(d.value), Number(d.max));
        break;
      case 'executed': {
        const images = (d.output as { images?: ComfyImageRef[] } | undefined)?.images;
        if (typeof d.node === 'string' && images?.length) this.outputs[d.node] = images;
        break;
      }
      case 'execution_success':
        this.succeeded = true;
        this.#end();
        break;
      case 'execution_error':
        this.fail(executionError(d, this.#workflow, this.#ctx.logger));
        break;
      case 'execution_interrupted':
        this.fail(interrupted(this.#workflow));
        break;
    }
  }

  /** Throws the failure a finished history entry records, if any. */
  judge(h: ComfyHistoryEntry): void {
    const messages = h.status?.messages ?? [];
    const error = messages.find(([t]) => t === 'execution_error');
    if (error) throw executionError(error[1], this.#workflow, this.#ctx.logger);
    if (messages.some(([t]) => t === 'execution_interrupted')) throw interrupted(this.#workflow);
    if (h.status?.status_str === 'error' || h.status?.completed === false)
      throw new DarkroomJobError('pipeline_error', `ComfyUI failed the ${this.#workflow} workflow`, false);
  }

  /** Settles from a history entry (after a missed message or a reconnect). */
  fromHistory(h: ComfyHistoryEntry): void {
    if (this.finished) return;
    try {
      this.judge(h);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.finished = true;
    this.#closedResolve();
    this.#resolve(h);
  }

  fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.#reject(err);
  }

  dispose(): void {
    this.#ctx.signal.removeEventListener('abort', this.#onAbort);
    this.#socket.close();
    this.#first.close();
  }

  #end(): void {
    if (this.finished) return;
    this.finished = true;
    this.#resolve(undefined);
  }

  #start(): void {
    if (this.started) return;
    this.started = true;
    this.report(PROGRESS.started, 'running in ComfyUI');
  }

  /** Every node with a progress bar reports from 0 again (sampler, VAE decode, upscale): the job's progress only goes up. */
  #progress(value: number, max: number): void {
    if (!(max > 0) || !(value >= 0)) return;
    this.report(PROGRESS.started + ((PROGRESS.sampled - PROGRESS.started) * Math.min(value, max)) / max, `step ${value}/${max}`);
  }

  /** Reports progress, never below what was reported already. */
  report(p: number, message: string): void {
    if (p <= this.#reported) return;
    this.#reported = p;
    void this.#ctx.reportProgress(p, message).catch(() => {});
  }
}

function interrupted(workflow: string): DarkroomJobError {
  return new DarkroomJobError('pipeline_error', `ComfyUI interrupted the ${workflow} workflow`, true);
}

const CUDA_ERROR = /CUDA error|CUDNN_STATUS|CUBLAS_STATUS|cuDNN error|device-side assert|NCCL error/i;

function executionError(raw: unknown, workflow: string, logger: Logger): ComfyExecutionError {
  const d = (raw ?? {}) as Record<string, unknown>;
  const type = String(d.exception_type ?? 'error');
  const text = String(d.exception_message ?? '');
  const node = `node ${String(d.node_id ?? '?')} (${String(d.node_type ?? '?')})`;
  // The exception text may name files on the ComfyUI host: logged, not passed to stations.
  logger.warn({ node_id: d.node_id, node_type: d.node_type, exception_type: type, exception_message: text }, 'comfyui execution error');
  if (/OutOfMemory/i.test(type) || /out of memory/i.test(text)) {
    return new ComfyExecutionError(`ComfyUI ran out of GPU memory in ${node}`, true, 'oom');
  }
  if (CUDA_ERROR.test(text))
    return new ComfyExecutionError(`ComfyUI hit a CUDA error in ${node} of the ${workflow} workflow`, true, 'cuda');
  return new ComfyExecutionError(`ComfyUI failed in ${node} of the ${workflow} workflow: ${type}`, false, undefined);
}

/** A 400 from POST /prompt: the station's input when a refused node input came from a slot, else the template's fault. */
function rejection(err: PromptRejectedError, workflow: string, filled: FilledWorkflow): DarkroomJobError {
  const station: string[] = [];
  const template: string[] = [];
  for (const [node, ne] of Object.entries(err.nodeErrors)) {
    for (const e of ne.errors ?? []) {
      const input = e.extra_info?.input_name;
      const slot = input ? filled.slotInputs.get(`${node}/${input}`) : undefined;
      const what = `${e.message ?? e.type ?? 'invalid'}`.slice(0, 120);
      if (slot) station.push(`${slot}: ${what}`);
      else template.push(`node ${node} (${ne.class_type ?? '?'})${input ? ` ${input}` : ''}: ${what}`);
    }
  }
  if (station.length > 0 && template.length === 0) {
    return new InvalidInputError(`ComfyUI refused the ${workflow} workflow: ${station.join('; ')}`);
  }
  const reasons = template.length > 0 ? template : [String(err.error?.message ?? 'no reason given').slice(0, 200)];
  return new DarkroomJobError('pipeline_error', `ComfyUI cannot run the ${workflow} workflow: ${reasons.join('; ')}`, false);
}

function refused(err: ComfyRequestError, workflow: string): DarkroomJobError {
  return new DarkroomJobError('pipeline_error', `ComfyUI refused the ${workflow} workflow (${err.status})`, false);
}

function pickImage(
  h: ComfyHistoryEntry | undefined,
  fromMessages: Record<string, ComfyImageRef[]>,
  output: string | undefined,
): ComfyImageRef | undefined {
  const outputs: Record<string, ComfyImageRef[] | undefined> = { ...fromMessages };
  for (const [node, o] of Object.entries(h?.outputs ?? {})) if (o.images?.length) outputs[node] = o.images;
  if (output) return outputs[output]?.[0];
  return Object.values(outputs).find((images) => images?.length)?.[0];
}

/** The input as PNG for ComfyUI (upright, sRGB, scaled down to the template's limit) and, for "alpha" masks, the mask. */
async function prepareImages(
  input: PipelineInput,
  t: WorkflowTemplate,
  workflow: string,
  ctx: PipelineContext,
): Promise<{ image: Buffer; mask?: Buffer }> {
  try {
    const open = () => sharp(input.path, { limitInputPixels: ctx.limits.maxImagePixels, failOn: 'truncated' }).autoOrient();
    const meta = await open().metadata();
    const w = meta.autoOrient?.width ?? meta.width ?? 0;
    const h = meta.autoOrient?.height ?? meta.height ?? 0;
    const k = Math.min(1, Math.sqrt(t.maxInputPixels / Math.max(1, w * h)));
    const size = { width: Math.max(1, Math.floor(w * k)), height: Math.max(1, Math.floor(h * k)) };
    const scaled = () => (k < 1 ? open().resize(size.width, size.height, { fit: 'fill' }) : open());
    if (!t.mask) return { image: await scaled().toColourspace('srgb').png().toBuffer() };
    const { data, info } = await scaled().toColourspace('srgb').ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const n = info.width * info.height;
    const mask = Buffer.alloc(n);
    let any = false;
    for (let i = 0; i < n; i++) {
      // White where the input is transparent: the area to repaint.
      mask[i] = 255 - data[i * 4 + 3]!;
      if (mask[i]! > 127) any = true;
    }
    if (!any) throw new InvalidInputError(`the ${workflow} workflow repaints the transparent area of the image, and this image has none`);
    const raw = { raw: { width: info.width, height: info.height, channels: 4 as const } };
    return {
      image: await sharp(data, raw).png().toBuffer(),
      mask: await sharp(mask, { raw: { width: info.width, height: info.height, channels: 1 } })
        .png()
        .toBuffer(),
    };
  } catch (err) {
    if (err instanceof DarkroomJobError) throw err;
    const raw = err instanceof Error ? err.message : String(err);
    throw new InvalidInputError(`cannot process the image: ${(raw.split('\n')[0] ?? '').split(input.path).join('input').trim()}`, {
      cause: err,
    });
  }
}

/** ComfyUI's PNG carries the workflow (prompt text included) in its metadata: written again without. */
async function reencode(data: Buffer, maxPixels: number): Promise<PipelineOutput> {
  try {
    const { data: png, info } = await sharp(data, { limitInputPixels: maxPixels })
      .png({ compressionLevel: 6 })
      .toBuffer({ resolveWithObject: true });
    return { data: png, format: 'png', width: info.width, height: info.height };
  } catch (err) {
    throw new DarkroomJobError('pipeline_error', 'ComfyUI sent an output that is not a readable image', false, { cause: err });
  }
}

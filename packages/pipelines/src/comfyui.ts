import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BackendUnavailableError,
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
  ComfyRequestError,
  type ComfySocket,
  PromptRejectedError,
} from './comfyui-client.ts';
import { type FilledWorkflow, fillTemplate, loadTemplates, type WorkflowTemplate } from './comfyui-workflows.ts';
import type { ComputeDone, Pipeline, PipelineContext, PipelineInput, PipelineOutput, PipelineStatus } from './types.ts';

/*
 * Diffusion and instruction edits run by a ComfyUI server beside the GPU worker. Per job: open
 * the websocket for a fresh client id, upload the input (and the mask made from its alpha),
 * fill the workflow template's slots, queue the prompt, map ComfyUI's progress messages to job
 * progress, then read the prompt's history and download its image. On cancel or timeout the
 * prompt is taken off ComfyUI's queue if it has not started, or interrupted if it has.
 *
 * Failures: ComfyUI unreachable, dropping the connection, answering 5xx or losing the prompt →
 * BackendUnavailableError (retried, then backend_unavailable). The server refusing the workflow
 * → invalid_input when the refused input came from the station's params or image, else a
 * pipeline_error that is not retried (the template or the server's models need fixing). A node
 * failing while running → pipeline_error, retried only when the GPU ran out of memory.
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
}

/** Where uploads go in ComfyUI's input folder, so an operator can clean them up. */
export const COMFYUI_UPLOAD_SUBFOLDER = 'darkroom';

const PROGRESS = { uploaded: 4, queued: 6, started: 10, sampled: 90, done: 95 } as const;

export class ComfyuiPipeline implements Pipeline<ComfyuiParams> {
  readonly spec = COMFYUI_SPEC;
  readonly #opts: ComfyuiOptions;
  #templates: Record<ComfyuiWorkflow, WorkflowTemplate> | undefined;
  #client: ComfyClient | undefined;
  #device: string | undefined;

  constructor(opts: ComfyuiOptions) {
    this.#opts = opts;
  }

  async unavailable(): Promise<string | undefined> {
    return this.#opts.url ? undefined : 'DARKROOM_COMFYUI_URL is not set';
  }

  status(): PipelineStatus {
    return this.#device ? { device: this.#device } : {};
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
      const stats = await client.systemStats(AbortSignal.timeout(Math.min(this.#opts.requestTimeoutMs, 5000)));
      const d = stats.devices?.[0];
      if (d?.name) {
        const mem = d.vram_total ? ` (${Math.round(d.vram_total / 2 ** 20)} MiB)` : '';
        this.#device = `comfyui: ${d.name.replace(/\s*:\s*\w+$/, '')}${mem}`;
      }
      logger.info({ comfyui: client.base.origin, version: stats.system?.comfyui_version, device: d?.name }, 'comfyui reachable');
    } catch (err) {
      logger.warn({ comfyui: client.base.origin, err: (err as Error).message }, 'comfyui not reachable yet: its jobs will wait and retry');
    }
  }

  async run(input: PipelineInput | null, params: ComfyuiParams, ctx: PipelineContext): Promise<ComputeDone> {
    const client = this.#clientOrThrow();
    const name = params.workflow;
    const template = this.templates[name];
    if (template.image === 'required' && !input) throw new InvalidInputError(`the ${name} workflow needs an input image`);
    // Refuse params the workflow cannot take before any upload (the file names are filled in later).
    fillTemplate(name, template, params, { image: 'x', mask: 'x' });
    const images = template.image === 'required' && input ? await prepareImages(input, template, name, ctx) : undefined;

    const clientId = randomUUID();
    const socket = await client.connect(clientId, ctx.signal);
    const watch = new PromptWatch(ctx, name);
    let promptId: string | undefined;
    try {
      socket.on({ message: (m) => watch.handle(m), close: (reason) => void this.#recover(client, watch, clientId, reason) });
      const files: { image?: string; mask?: string } = {};
      if (images) {
        const stem = `${Date.now()}-${randomUUID()}`;
        files.image = await client.upload(images.image, `${stem}.png`, COMFYUI_UPLOAD_SUBFOLDER, ctx.signal);
        if (images.mask) files.mask = await client.upload(images.mask, `${stem}-mask.png`, COMFYUI_UPLOAD_SUBFOLDER, ctx.signal);
        await ctx.reportProgress(PROGRESS.uploaded, 'uploaded to ComfyUI');
      }
      const filled = fillTemplate(name, template, params, files);
      try {
        promptId = await client.queuePrompt(filled.prompt, clientId, randomUUID(), ctx.signal);
      } catch (err) {
        throw err instanceof PromptRejectedError
          ? rejection(err, name, filled)
          : err instanceof ComfyRequestError
            ? refused(err, name)
            : err;
      }
      ctx.logger.info({ promptId, workflow: name, ...filled.values }, 'comfyui prompt queued');
      watch.setPromptId(promptId);
      await ctx.reportProgress(PROGRESS.queued, 'queued in ComfyUI');
      const poll = setInterval(() => void this.#poll(client, watch), this.#opts.pollMs ?? 5000);
      let history: ComfyHistoryEntry | undefined;
      try {
        history = await watch.done;
      } finally {
        clearInterval(poll);
      }
      history ??= await client.history(promptId, ctx.signal);
      const ref = pickImage(history, watch.outputs, template.output);
      if (!ref) throw new DarkroomJobError('pipeline_error', `the ${name} workflow finished without an image`, false);
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
          }
        },
      };
    } catch (err) {
      if (ctx.signal.aborted) {
        if (promptId) await this.#cancel(client, watch, promptId, ctx.logger);
        throw ctx.signal.reason;
      }
      throw err;
    } finally {
      watch.dispose();
      socket.close();
    }
  }

  /** Takes the prompt off ComfyUI: dequeued if waiting, interrupted if running; waits briefly for the confirmation. */
  async #cancel(client: ComfyClient, watch: PromptWatch, promptId: string, logger: Logger): Promise<void> {
    const wait = this.#opts.cancelWaitMs ?? 3000;
    try {
      if (!watch.started) {
        await client.dequeue(promptId);
        const where = await client.queued(promptId);
        if (where !== 'running' && !watch.started) {
          logger.info({ promptId }, 'comfyui prompt taken off the queue');
          return;
        }
      }
      if (watch.finished) return;
      await client.interrupt(promptId);
      const confirmed = await Promise.race([watch.ended.then(() => true), sleep(wait).then(() => false)]);
      logger.info({ promptId, confirmed }, 'comfyui prompt interrupted');
    } catch (err) {
      logger.warn({ promptId, err: (err as Error).message }, 'comfyui prompt could not be stopped');
    }
  }

  /** Reads the history in case a message was missed; errors are left to the socket and the time limit. */
  async #poll(client: ComfyClient, watch: PromptWatch): Promise<void> {
    if (!watch.promptId || watch.finished) return;
    const h = await client.history(watch.promptId).catch(() => undefined);
    if (h) watch.fromHistory(h);
  }

  /**
   * The websocket closed under us: the history or the queue tells whether ComfyUI still has the
   * prompt (then listen again, same client id) or lost it; no answer at all means it is down.
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
          if (h?.status?.completed || h?.status?.status_str) return watch.fromHistory(h);
          if (!(await client.queued(id))) return watch.fail(new BackendUnavailableError('ComfyUI lost the prompt (did it restart?)'));
        }
        const socket = await client.connect(clientId, AbortSignal.timeout(5000));
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
 * Follows one prompt through ComfyUI's messages. Messages for other prompts are ignored; those
 * that come before the prompt's id is known are kept until it is.
 */
class PromptWatch {
  promptId: string | undefined;
  started = false;
  finished = false;
  readonly outputs: Record<string, ComfyImageRef[]> = {};
  /** Settles when the prompt ends, however it ends; the history when it came from there. */
  readonly done: Promise<ComfyHistoryEntry | undefined>;
  /** Resolves when ComfyUI reports the prompt ended in any way (for a cancel to wait on). */
  readonly ended: Promise<void>;
  readonly #ctx: PipelineContext;
  readonly #workflow: string;
  #resolve!: (h: ComfyHistoryEntry | undefined) => void;
  #reject!: (e: unknown) => void;
  #endedResolve!: () => void;
  readonly #early: ComfyMessage[] = [];
  #socket: ComfySocket | undefined;
  readonly #onAbort: () => void;

  constructor(ctx: PipelineContext, workflow: string) {
    this.#ctx = ctx;
    this.#workflow = workflow;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => {});
    this.ended = new Promise((resolve) => {
      this.#endedResolve = resolve;
    });
    this.#onAbort = () => this.#reject(ctx.signal.reason);
    ctx.signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  setPromptId(id: string): void {
    this.promptId = id;
    for (const m of this.#early.splice(0)) this.handle(m);
  }

  replaceSocket(s: ComfySocket): void {
    this.#socket?.close();
    this.#socket = s;
  }

  handle(m: ComfyMessage): void {
    if (m.type === 'status' || this.finished) return;
    if (!this.promptId) {
      this.#early.push(m);
      return;
    }
    if (m.data.prompt_id !== this.promptId) return;
    const d = m.data;
    switch (m.type) {
      case 'execution_start':
        this.#start();
        break;
      case 'executing':
        if (d.node === null || d.node === undefined) this.#succeed(undefined);
        else this.#start();
        break;
      case 'progress':
        this.#start();
        this.#progress(Number(d.value), Number(d.max));
        break;
      case 'progress_state': {
        // Newer servers: a map of node → {value, max, state}; the running one with steps is the sampler.
        const nodes = Object.values((d.nodes ?? {}) as Record<string, { value?: number; max?: number; state?: string }>);
        const running = nodes.find((n) => n.state === 'running' && (n.max ?? 0) > 1);
        this.#start();
        if (running) this.#progress(Number(running.value), Number(running.max));
        break;
      }
      case 'executed': {
        const images = (d.output as { images?: ComfyImageRef[] } | undefined)?.images;
        if (typeof d.node === 'string' && images?.length) this.outputs[d.node] = images;
        break;
      }
      case 'execution_success':
        this.#succeed(undefined);
        break;
      case 'execution_error':
        this.fail(executionError(d, this.#workflow, this.#ctx.logger));
        break;
      case 'execution_interrupted':
        this.fail(new DarkroomJobError('pipeline_error', `ComfyUI interrupted the ${this.#workflow} workflow`, true));
        break;
    }
  }

  /** Settles from a history entry (after a missed message or a reconnect). */
  fromHistory(h: ComfyHistoryEntry): void {
    if (this.finished) return;
    const messages = h.status?.messages ?? [];
    const error = messages.find(([t]) => t === 'execution_error');
    const interrupted = messages.find(([t]) => t === 'execution_interrupted');
    if (error) this.fail(executionError(error[1], this.#workflow, this.#ctx.logger));
    else if (interrupted) this.fail(new DarkroomJobError('pipeline_error', `ComfyUI interrupted the ${this.#workflow} workflow`, true));
    else if (h.status?.status_str === 'success' || h.status?.completed) this.#succeed(h);
    else if (h.status?.status_str === 'error')
      this.fail(new DarkroomJobError('pipeline_error', `ComfyUI failed the ${this.#workflow} workflow`, false));
  }

  fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.#endedResolve();
    this.#reject(err);
  }

  dispose(): void {
    this.#ctx.signal.removeEventListener('abort', this.#onAbort);
    this.#socket?.close();
  }

  #start(): void {
    if (this.started) return;
    this.started = true;
    void this.#ctx.reportProgress(PROGRESS.started, 'running in ComfyUI').catch(() => {});
  }

  #progress(value: number, max: number): void {
    if (!(max > 0) || !(value >= 0)) return;
    const p = PROGRESS.started + ((PROGRESS.sampled - PROGRESS.started) * Math.min(value, max)) / max;
    void this.#ctx.reportProgress(p, `step ${value}/${max}`).catch(() => {});
  }

  #succeed(h: ComfyHistoryEntry | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.#endedResolve();
    this.#resolve(h);
  }
}

function executionError(d: Record<string, unknown>, workflow: string, logger: Logger): DarkroomJobError {
  const type = String(d.exception_type ?? 'error');
  const node = `node ${String(d.node_id ?? '?')} (${String(d.node_type ?? '?')})`;
  // The exception text may name files on the ComfyUI host: logged, not passed to stations.
  logger.warn(
    { node_id: d.node_id, node_type: d.node_type, exception_type: type, exception_message: d.exception_message },
    'comfyui execution error',
  );
  if (/OutOfMemory/i.test(type) || /out of memory/i.test(String(d.exception_message ?? ''))) {
    return new DarkroomJobError('pipeline_error', `ComfyUI ran out of GPU memory in ${node}`, true);
  }
  return new DarkroomJobError('pipeline_error', `ComfyUI failed in ${node} of the ${workflow} workflow: ${type}`, false);
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

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import sharp from 'sharp';
import { type WebSocket, WebSocketServer } from 'ws';

/*
 * A stand-in for a ComfyUI server, for tests where no diffusion model can run. It speaks the HTTP
 * and websocket protocol of ComfyUI's server.py and execution.py as clients see it:
 *
 *   POST /upload/image   multipart (image, type, subfolder, overwrite) → {name, subfolder, type}
 *   POST /prompt         {prompt, client_id, prompt_id?} → {prompt_id, number, node_errors}, or 400
 *                        {error: {type, message, details, extra_info}, node_errors} after validation
 *   GET  /queue          {queue_running, queue_pending}, items [number, prompt_id, prompt, extra_data, outputs]
 *   POST /queue          {delete: [prompt_id…]} or {clear: true}
 *   POST /interrupt      {prompt_id?}: interrupts the running prompt (only that one when given)
 *   GET  /history/{id}   {id: {prompt, outputs, status: {status_str, completed, messages}, meta}} or {}
 *   GET  /view           ?filename&subfolder&type → the file
 *   GET  /system_stats   {system, devices}
 *   GET  /ws?clientId=   JSON messages {type, data}: status (on connect and on queue changes, to
 *                        all), then to the prompt's client: execution_start, execution_cached,
 *                        executing {node, display_node, prompt_id}, progress {value, max,
 *                        prompt_id, node}, executed {node, display_node, output, prompt_id},
 *                        execution_success | execution_error | execution_interrupted, and
 *                        executing {node: null, prompt_id} at the end, as older servers send.
 *
 * Prompts run one at a time, in order. What a run does is the test's choice (`scenario`): finish,
 * fail in a node, run out of GPU memory, hang until interrupted, or die (every socket destroyed,
 * the server closed) mid-run. The "image" a workflow makes: the uploaded image of its LoadImage
 * node with inverted colours, or, without one, a solid colour of the EmptyLatentImage's size.
 */

export type StandinScenario = 'success' | 'execution_error' | 'oom' | 'hang' | 'die';

export interface StandinOptions {
  /** Progress steps a sampler reports (default 4) and the time between them (default 20 ms). */
  steps?: number;
  stepMs?: number;
  /** Model files the loader nodes accept (default: every name the darkroom templates use). */
  models?: string[];
  /** The largest `steps` a KSampler accepts (ComfyUI's is 10000). */
  maxSteps?: number;
  /**
   * Which generation of ComfyUI's messages to speak: `default` sends progress, execution_success
   * and the closing `executing {node: null}`; `legacy` (before execution_success existed) ends
   * with `executing {node: null}` only; `progress_state` (newer servers) sends the per-node
   * progress_state map instead of progress and no closing `executing`; `silent` sends no
   * execution messages at all, so only the history tells (a client that missed them).
   */
  dialect?: 'default' | 'legacy' | 'progress_state' | 'silent';
}

interface Node {
  class_type: string;
  inputs: Record<string, unknown>;
}
type Graph = Record<string, Node>;

interface QueueItem {
  number: number;
  promptId: string;
  prompt: Graph;
  extraData: { client_id?: string };
  outputs: string[];
}

interface HistoryEntry {
  prompt: unknown[];
  outputs: Record<string, { images: { filename: string; subfolder: string; type: string }[] }>;
  status: { status_str: 'success' | 'error'; completed: boolean; messages: [string, unknown][] };
  meta: Record<string, unknown>;
}

export interface StandinRequest {
  method: string;
  path: string;
  body?: unknown;
}

export const STANDIN_MODELS = [
  'sd_xl_base_1.0.safetensors',
  'sd-v1-5-inpainting.ckpt',
  'qwen_image_edit_fp8_e4m3fn.safetensors',
  'qwen_2.5_vl_7b_fp8_scaled.safetensors',
  'qwen_image_vae.safetensors',
];

/** Node classes the stand-in "has", with the inputs it checks. */
const NODE_CLASSES: Record<string, { output?: boolean; sampler?: boolean }> = {
  CheckpointLoaderSimple: {},
  UNETLoader: {},
  CLIPLoader: {},
  VAELoader: {},
  EmptyLatentImage: {},
  CLIPTextEncode: {},
  TextEncodeQwenImageEdit: {},
  ModelSamplingAuraFlow: {},
  CFGNorm: {},
  ImageScaleToTotalPixels: {},
  KSampler: { sampler: true },
  VAEDecode: {},
  VAEEncode: {},
  VAEEncodeForInpaint: {},
  LoadImage: {},
  LoadImageMask: {},
  SaveImage: { output: true },
  PreviewImage: { output: true },
};
const MODEL_INPUTS = ['ckpt_name', 'unet_name', 'clip_name', 'vae_name'];

export class ComfyuiStandin {
  /** What the next prompts do; `scenarios` is used up first, then `scenario`. */
  scenario: StandinScenario = 'success';
  readonly scenarios: StandinScenario[] = [];
  /** While true, queued prompts wait (to test a cancel before execution starts). */
  hold = false;
  /** Every request, in order. */
  readonly requests: StandinRequest[] = [];
  /** Every prompt accepted, as queued. */
  readonly prompts: { promptId: string; clientId: string | undefined; prompt: Graph }[] = [];
  /** Answer POST /prompt with this HTTP status and a plain body (e.g. 500) instead. */
  failPromptWith: number | undefined;

  readonly #opts: Required<StandinOptions>;
  readonly #server: http.Server;
  readonly #wss: WebSocketServer;
  readonly #sockets = new Map<string, WebSocket>();
  readonly #rawSockets = new Set<Socket>();
  readonly #files = new Map<string, Buffer>(); // "type/subfolder/name" → bytes
  readonly #queue: QueueItem[] = [];
  readonly #history = new Map<string, HistoryEntry>();
  #running: (QueueItem & { interrupted: boolean }) | undefined;
  #number = 0;
  #outputCounter = 0;
  #dead = false;
  #wake: (() => void) | undefined;
  url = '';

  constructor(opts: StandinOptions = {}) {
    this.#opts = { steps: 4, stepMs: 20, models: STANDIN_MODELS, maxSteps: 10000, dialect: 'default', ...opts };
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      });
    });
    this.#server.on('connection', (s) => {
      this.#rawSockets.add(s);
      s.on('close', () => this.#rawSockets.delete(s));
    });
    this.#wss = new WebSocketServer({ noServer: true });
    this.#server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== '/ws') return socket.destroy();
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onSocket(ws, url.searchParams.get('clientId') ?? ''));
    });
  }

  static async start(opts: StandinOptions = {}): Promise<ComfyuiStandin> {
    const s = new ComfyuiStandin(opts);
    await new Promise<void>((resolve) => s.#server.listen(0, '127.0.0.1', resolve));
    s.url = `http://127.0.0.1:${(s.#server.address() as AddressInfo).port}`;
    void s.#loop();
    return s;
  }

  /** Lets held prompts run. */
  release(): void {
    this.hold = false;
    this.#wake?.();
  }

  /** The prompt ids POSTed to /interrupt and to /queue {delete}. */
  get interrupts(): unknown[] {
    return this.requests.filter((r) => r.path === '/interrupt').map((r) => (r.body as { prompt_id?: string } | undefined)?.prompt_id);
  }
  get deletes(): string[] {
    return this.requests
      .filter((r) => r.path === '/queue' && r.method === 'POST')
      .flatMap((r) => (r.body as { delete?: string[] }).delete ?? []);
  }
  get queueLength(): number {
    return this.#queue.length + (this.#running ? 1 : 0);
  }

  /** Kills the server as a crash would: every connection destroyed, nothing listening. */
  die(): void {
    this.#dead = true;
    for (const ws of this.#sockets.values()) ws.terminate();
    for (const s of this.#rawSockets) s.destroy();
    this.#server.close();
    this.#wake?.();
  }

  async stop(): Promise<void> {
    if (!this.#dead) this.die();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  // ---------------------------------------------------------------------------------------------

  #onSocket(ws: WebSocket, clientId: string): void {
    const sid = clientId || randomUUID().replaceAll('-', '');
    this.#sockets.get(sid)?.close();
    this.#sockets.set(sid, ws);
    ws.on('close', () => {
      if (this.#sockets.get(sid) === ws) this.#sockets.delete(sid);
    });
    ws.on('error', () => {});
    this.#send(sid, 'status', { status: this.#queueInfo(), sid });
  }

  #queueInfo() {
    return { exec_info: { queue_remaining: this.queueLength } };
  }

  #send(sid: string | undefined, type: string, data: unknown): void {
    if (this.#dead) return;
    const dialect = this.#opts.dialect;
    if (sid !== undefined && type !== 'status') {
      if (dialect === 'silent') return;
      if (dialect === 'legacy' && type === 'execution_success') return;
      if (dialect === 'progress_state' && type === 'executing' && (data as { node?: unknown }).node === null) return;
      if (dialect === 'progress_state' && type === 'progress') {
        const p = data as { value: number; max: number; prompt_id: string; node: string };
        const node = {
          value: p.value,
          max: p.max,
          state: 'running',
          node_id: p.node,
          display_node_id: p.node,
          parent_node_id: null,
          real_node_id: p.node,
          prompt_id: p.prompt_id,
        };
        type = 'progress_state';
        data = { prompt_id: p.prompt_id, nodes: { [p.node]: node } };
      }
    }
    const text = JSON.stringify({ type, data });
    if (sid === undefined) {
      for (const ws of this.#sockets.values()) ws.send(text);
      return;
    }
    this.#sockets.get(sid)?.send(text);
  }

  #queueUpdated(): void {
    this.#send(undefined, 'status', { status: this.#queueInfo() });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const raw = await readBody(req);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const ct = req.headers['content-type'] ?? '';
    let body: unknown;
    if (ct.startsWith('application/json') || (req.method === 'POST' && raw.length > 0 && !ct.startsWith('multipart/'))) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        body = undefined;
      }
    }
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, ...(body !== undefined ? { body } : {}) });
    const route = `${req.method} ${url.pathname}`;

    if (route === 'POST /upload/image') {
      const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': ct } }).formData();
      const image = form.get('image');
      if (!(image instanceof File) || !image.name) return json(400, {});
      const type = String(form.get('type') ?? 'input');
      const subfolder = String(form.get('subfolder') ?? '');
      if (subfolder.includes('..') || image.name.includes('/')) return json(400, {});
      this.#files.set(`${type}/${subfolder}/${image.name}`, Buffer.from(await image.arrayBuffer()));
      return json(200, { name: image.name, subfolder, type });
    }
    if (route === 'POST /prompt') {
      if (this.failPromptWith) {
        res.writeHead(this.failPromptWith, { 'content-type': 'text/plain' });
        return void res.end('500 Internal Server Error\n\nServer got itself in trouble');
      }
      const b = (body ?? {}) as { prompt?: Graph; client_id?: string; prompt_id?: string };
      if (!b.prompt || typeof b.prompt !== 'object') {
        return json(400, {
          error: { type: 'no_prompt', message: 'No prompt provided', details: 'No prompt provided', extra_info: {} },
          node_errors: {},
        });
      }
      const checked = this.#validate(b.prompt);
      if (!checked.ok) return json(400, checked.body);
      const promptId = b.prompt_id ?? randomUUID();
      const item: QueueItem = {
        number: this.#number++,
        promptId,
        prompt: b.prompt,
        extraData: b.client_id ? { client_id: b.client_id } : {},
        outputs: checked.outputs,
      };
      this.prompts.push({ promptId, clientId: b.client_id, prompt: b.prompt });
      this.#queue.push(item);
      this.#queueUpdated();
      this.#wake?.();
      return json(200, { prompt_id: promptId, number: item.number, node_errors: {} });
    }
    if (route === 'GET /queue') {
      const tuple = (i: QueueItem) => [i.number, i.promptId, i.prompt, i.extraData, i.outputs];
      return json(200, { queue_running: this.#running ? [tuple(this.#running)] : [], queue_pending: this.#queue.map(tuple) });
    }
    if (route === 'POST /queue') {
      const b = (body ?? {}) as { delete?: string[]; clear?: boolean };
      if (b.clear) this.#queue.length = 0;
      for (const id of b.delete ?? []) {
        const at = this.#queue.findIndex((i) => i.promptId === id);
        if (at >= 0) this.#queue.splice(at, 1);
      }
      this.#queueUpdated();
      res.writeHead(200);
      return void res.end();
    }
    if (route === 'POST /interrupt') {
      const id = (body as { prompt_id?: string } | undefined)?.prompt_id;
      if (this.#running && (!id || id === this.#running.promptId)) {
        this.#running.interrupted = true;
        this.#wake?.();
      }
      res.writeHead(200);
      return void res.end();
    }
    if (req.method === 'GET' && url.pathname.startsWith('/history/')) {
      const id = decodeURIComponent(url.pathname.slice('/history/'.length));
      const h = this.#history.get(id);
      return json(200, h ? { [id]: h } : {});
    }
    if (route === 'GET /view') {
      const key = `${url.searchParams.get('type') ?? 'output'}/${url.searchParams.get('subfolder') ?? ''}/${url.searchParams.get('filename') ?? ''}`;
      const file = this.#files.get(key);
      if (!file) {
        res.writeHead(404);
        return void res.end();
      }
      res.writeHead(200, { 'content-type': 'image/png', 'content-disposition': `filename="${url.searchParams.get('filename')}"` });
      return void res.end(file);
    }
    if (route === 'GET /system_stats') {
      return json(200, {
        system: { os: 'posix', comfyui_version: '0.3.99-standin', python_version: '3.12', pytorch_version: '2.8.0' },
        devices: [
          { name: 'cuda:0 NVIDIA Stand-in GPU : cudaMallocAsync', type: 'cuda', index: 0, vram_total: 25769803776, vram_free: 24696061952 },
        ],
      });
    }
    res.writeHead(404);
    res.end();
  }

  /** ComfyUI's validate_prompt, for the node classes and inputs the stand-in knows. */
  #validate(prompt: Graph): { ok: true; outputs: string[] } | { ok: false; body: unknown } {
    for (const [id, node] of Object.entries(prompt)) {
      if (!node || typeof node !== 'object' || typeof node.class_type !== 'string') {
        return {
          ok: false,
          body: invalid('missing_node_type', 'Cannot execute because a node is missing the class_type property.', `Node ID '#${id}'`),
        };
      }
      if (!NODE_CLASSES[node.class_type]) {
        return {
          ok: false,
          body: invalid('missing_node_type', `Cannot execute because node ${node.class_type} does not exist.`, `Node ID '#${id}'`),
        };
      }
    }
    const outputs = Object.entries(prompt)
      .filter(([, n]) => NODE_CLASSES[n.class_type]?.output)
      .map(([id]) => id);
    if (outputs.length === 0)
      return {
        ok: false,
        body: { error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} }, node_errors: [] },
      };
    const nodeErrors: Record<string, { errors: unknown[]; dependent_outputs: string[]; class_type: string }> = {};
    for (const [id, node] of Object.entries(prompt)) {
      const errors: unknown[] = [];
      for (const [name, value] of Object.entries(node.inputs ?? {})) {
        if (Array.isArray(value)) {
          if (value.length !== 2 || !prompt[String(value[0])]) {
            errors.push({
              type: 'bad_linked_input',
              message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
              details: name,
              extra_info: { input_name: name, received_value: value },
            });
          }
          continue;
        }
        if (MODEL_INPUTS.includes(name) && !this.#opts.models.includes(String(value))) {
          errors.push({
            type: 'value_not_in_list',
            message: 'Value not in list',
            details: `${name}: '${String(value)}' not in ${JSON.stringify(this.#opts.models)}`,
            extra_info: { input_name: name, input_config: [this.#opts.models], received_value: value },
          });
        }
        if (
          (node.class_type === 'LoadImage' || node.class_type === 'LoadImageMask') &&
          name === 'image' &&
          !this.#files.has(`input//${value}`) &&
          !this.#files.has(inputKey(String(value)))
        ) {
          errors.push({
            type: 'custom_validation_failed',
            message: 'Custom validation failed for node',
            details: `image - Invalid image file: ${String(value)}`,
            extra_info: { input_name: name },
          });
        }
        if (node.class_type === 'KSampler' && name === 'steps' && Number(value) > this.#opts.maxSteps) {
          errors.push({
            type: 'value_bigger_than_max',
            message: `Value ${value} bigger than max of ${this.#opts.maxSteps}`,
            details: `steps`,
            extra_info: { input_name: name, received_value: value },
          });
        }
        if ((name === 'text' || name === 'prompt') && typeof value !== 'string') {
          errors.push({
            type: 'invalid_input_type',
            message: `Failed to convert an input value to a STRING value`,
            details: `${name}, ${String(value)}`,
            extra_info: { input_name: name },
          });
        }
      }
      if (errors.length > 0) nodeErrors[id] = { errors, dependent_outputs: outputs, class_type: node.class_type };
    }
    if (Object.keys(nodeErrors).length > 0) {
      const details = Object.values(nodeErrors)
        .flatMap((n) => n.errors as { message: string; details: string }[])
        .map((e) => `${e.message}: ${e.details}`)
        .join('\n');
      return {
        ok: false,
        body: {
          error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details, extra_info: {} },
          node_errors: nodeErrors,
        },
      };
    }
    return { ok: true, outputs };
  }

  async #loop(): Promise<void> {
    while (!this.#dead) {
      const next = this.hold ? undefined : this.#queue.shift();
      if (!next) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
        continue;
      }
      this.#running = { ...next, interrupted: false };
      this.#queueUpdated();
      await this.#execute(this.#running).catch(() => {});
      this.#running = undefined;
      this.#queueUpdated();
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  async #execute(item: QueueItem & { interrupted: boolean }): Promise<void> {
    const sid = item.extraData.client_id;
    const pid = item.promptId;
    const messages: [string, unknown][] = [];
    const emit = (type: string, data: Record<string, unknown>, keep = true) => {
      const d = { ...data, prompt_id: pid, ...(keep ? { timestamp: Date.now() } : {}) };
      if (keep) messages.push([type, d]);
      this.#send(sid, type, d);
    };
    const finish = (status: 'success' | 'error', outputs: HistoryEntry['outputs']) => {
      this.#history.set(pid, {
        prompt: [item.number, pid, item.prompt, item.extraData, item.outputs],
        outputs,
        status: { status_str: status, completed: status === 'success', messages },
        meta: Object.fromEntries(
          Object.keys(outputs).map((id) => [id, { node_id: id, display_node: id, parent_node: null, real_node_id: id }]),
        ),
      });
    };
    const scenario = this.scenarios.shift() ?? this.scenario;
    emit('execution_start', {});
    emit('execution_cached', { nodes: [] });
    const executed: string[] = [];
    const outputs: HistoryEntry['outputs'] = {};
    for (const id of topoOrder(item.prompt)) {
      const node = item.prompt[id]!;
      if (this.#dead) return;
      this.#send(sid, 'executing', { node: id, display_node: id, prompt_id: pid });
      if (NODE_CLASSES[node.class_type]?.sampler) {
        const steps = Math.min(Number(node.inputs.steps) || this.#opts.steps, this.#opts.steps);
        for (let i = 1; i <= steps || scenario === 'hang'; i++) {
          await this.#sleep(scenario === 'hang' ? this.#opts.stepMs * 5 : this.#opts.stepMs);
          if (this.#dead) return;
          if (item.interrupted) {
            emit('execution_interrupted', { node_id: id, node_type: node.class_type, executed: [...executed] });
            return finish('error', {});
          }
          this.#send(sid, 'progress', { value: Math.min(i, steps), max: steps, prompt_id: pid, node: id });
          if (scenario === 'die' && i === 2) {
            this.die();
            return;
          }
          if ((scenario === 'execution_error' || scenario === 'oom') && i === 2) {
            const oom = scenario === 'oom';
            emit('execution_error', {
              node_id: id,
              node_type: node.class_type,
              executed: [...executed],
              exception_message: oom
                ? 'Allocation on device 0 would exceed allowed memory. (out of memory)'
                : 'Expected all tensors to be on the same device (/opt/ComfyUI/comfy/sample.py)',
              exception_type: oom ? 'torch.OutOfMemoryError' : 'RuntimeError',
              traceback: ['  File "/opt/ComfyUI/execution.py", line 496, in execute\n'],
              current_inputs: {},
              current_outputs: [],
            });
            return finish('error', {});
          }
        }
      }
      if (NODE_CLASSES[node.class_type]?.output) {
        const filename = `darkroom_${String(++this.#outputCounter).padStart(5, '0')}_.png`;
        const subfolder =
          node.class_type === 'SaveImage'
            ? String(node.inputs.filename_prefix ?? 'ComfyUI')
                .split('/')
                .slice(0, -1)
                .join('/')
            : '';
        const type = node.class_type === 'SaveImage' ? 'output' : 'temp';
        this.#files.set(`${type}/${subfolder}/${filename}`, await this.#render(item.prompt));
        const images = [{ filename, subfolder, type }];
        outputs[id] = { images };
        emit('executed', { node: id, display_node: id, output: { images } }, false);
      }
      executed.push(id);
    }
    emit('execution_success', {});
    this.#send(sid, 'executing', { node: null, prompt_id: pid });
    finish('success', outputs);
  }

  /** The uploaded image of the LoadImage node inverted, else a colour from the seed at the latent's size. */
  async #render(prompt: Graph): Promise<Buffer> {
    const load = Object.values(prompt).find((n) => n.class_type === 'LoadImage');
    const file = load ? this.#files.get(inputKey(String(load.inputs.image))) : undefined;
    if (file) return sharp(file).removeAlpha().negate().png().toBuffer();
    const latent = Object.values(prompt).find((n) => n.class_type === 'EmptyLatentImage');
    const sampler = Object.values(prompt).find((n) => n.class_type === 'KSampler');
    const seed = Number(sampler?.inputs.seed ?? 0);
    const width = Number(latent?.inputs.width ?? 512);
    const height = Number(latent?.inputs.height ?? 512);
    return sharp({ create: { width, height, channels: 3, background: { r: seed % 256, g: (seed >> 8) % 256, b: 128 } } })
      .png()
      .toBuffer();
  }
}

function invalid(type: string, message: string, details: string) {
  return { error: { type, message, details, extra_info: {} }, node_errors: {} };
}

/** "sub/name.png" as LoadImage takes it → the key of the uploaded input file. */
function inputKey(value: string): string {
  const i = value.lastIndexOf('/');
  return i < 0 ? `input//${value}` : `input/${value.slice(0, i)}/${value.slice(i + 1)}`;
}

/** Node ids, each after the nodes it takes inputs from. */
function topoOrder(prompt: Graph): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (id: string) => {
    if (seen.has(id) || !prompt[id]) return;
    seen.add(id);
    for (const v of Object.values(prompt[id].inputs ?? {})) if (Array.isArray(v)) visit(String(v[0]));
    out.push(id);
  };
  for (const id of Object.keys(prompt)) visit(id);
  return out;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

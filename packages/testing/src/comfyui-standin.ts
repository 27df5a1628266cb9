import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import sharp from 'sharp';
import { type WebSocket, WebSocketServer } from 'ws';

/*
 * A stand-in for a ComfyUI server, for tests where no diffusion model can run. It behaves as
 * ComfyUI's server.py, execution.py and main.py do, as a client sees them, in three generations:
 *
 *   legacy   an older server: the server picks every prompt_id (a client's is ignored), POST
 *            /interrupt stops whatever runs, `progress` only, and no `execution_success`;
 *   2025     a client may choose the prompt_id, POST /interrupt {prompt_id} stops only that
 *            prompt, `progress_state` (every started node's state) besides `progress`;
 *   current  the prompt_id a client chooses must be a UUID and a used one answers 409; the
 *            jobs routes (GET /api/jobs, GET /api/jobs/{id}, POST /api/jobs/{id}/cancel); a
 *            credential announced in the first `status` message, which a socket reconnecting
 *            under the same client id must present (`credential_auth`) before it hears anything.
 *
 * What every generation does, and what clients trip over:
 *  - every prompt ends with `executing {node: null}`: after success, after `execution_error` and
 *    after `execution_interrupted`; `execution_success` comes before the history is written;
 *  - every node with a progress bar reports `progress` (samplers, VAE decode), so it restarts;
 *  - an interrupt is honoured between nodes and in any progress callback;
 *  - the node cache: a node whose inputs (and inputs' inputs) match the last prompt's is not run
 *    again; an output node answers `executed` with the earlier file, which may be gone;
 *  - 200 with `node_errors` when some outputs failed validation and at least one passed;
 *  - the history holds at most `historyMax` prompts; uploads and outputs stay until deleted,
 *    except the temp folder, which a restart empties;
 *  - CUDA out of memory and other RuntimeErrors worded as the server words them; a CUDA error
 *    that breaks the device makes /system_stats answer 500, as torch's memory query then fails.
 *
 * Routes are served at / and under /api/, as ComfyUI does. The "image" a workflow makes is the
 * uploaded image of its LoadImage node with inverted colours, or, without one, a solid colour of
 * the empty latent's size.
 */

export type ComfyDialect = 'legacy' | '2025' | 'current';
export const COMFY_DIALECTS: readonly ComfyDialect[] = ['legacy', '2025', 'current'];

export type StandinScenario =
  /** Runs to the end. */
  | 'success'
  /** A RuntimeError in the sampler (not the device's fault). */
  | 'execution_error'
  /** torch.OutOfMemoryError in the sampler. */
  | 'oom'
  /** "CUDA error: an illegal memory access": the device stays broken until `cudaBroken` is cleared. */
  | 'cuda_error'
  /** The sampler never ends until interrupted. */
  | 'hang'
  /** The server dies mid-prompt: every connection dropped, nothing listening. */
  | 'die'
  /** The server restarts mid-prompt and forgets it (queue, history, cache and temp files). */
  | 'forget';

export interface StandinOptions {
  dialect?: ComfyDialect;
  /** Progress steps a sampler reports (default 4) and the time between them (default 20 ms). */
  steps?: number;
  stepMs?: number;
  /** Model files the loader nodes accept (default: every name the darkroom templates use). */
  models?: string[];
  /** The largest `steps` a sampler accepts (ComfyUI's is 10000). */
  maxSteps?: number;
  /** How many prompts the history keeps (ComfyUI's MAXIMUM_HISTORY_SIZE is 10000). */
  historyMax?: number;
  /** Time between `execution_success` and the history write (default 30 ms). */
  historyDelayMs?: number;
  /** Sends no execution messages at all, so only the history tells (a client that missed them). */
  silent?: boolean;
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

interface ImageRef {
  filename: string;
  subfolder: string;
  type: string;
}

interface HistoryEntry {
  prompt: unknown[];
  outputs: Record<string, { images: ImageRef[] }>;
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
  'flux1-dev.safetensors',
  'clip_l.safetensors',
  't5xxl_fp8_e4m3fn.safetensors',
  'ae.safetensors',
];

/** Node classes the stand-in "has": `steps` nodes report progress (their own steps, or a fixed count). */
const NODE_CLASSES: Record<string, { output?: boolean; sampler?: boolean; progress?: number; gpu?: boolean }> = {
  CheckpointLoaderSimple: {},
  UNETLoader: {},
  CLIPLoader: {},
  DualCLIPLoader: {},
  VAELoader: {},
  EmptyLatentImage: {},
  EmptySD3LatentImage: {},
  FluxGuidance: {},
  CLIPTextEncode: { gpu: true },
  TextEncodeQwenImageEdit: { gpu: true },
  ModelSamplingAuraFlow: {},
  CFGNorm: {},
  ImageScaleToTotalPixels: {},
  KSampler: { sampler: true, gpu: true },
  VAEDecode: { progress: 2, gpu: true },
  VAEEncode: { gpu: true },
  VAEEncodeForInpaint: { gpu: true },
  LoadImage: {},
  LoadImageMask: {},
  SaveImage: { output: true },
  PreviewImage: { output: true },
};
const MODEL_INPUTS = ['ckpt_name', 'unet_name', 'clip_name', 'vae_name', 'clip_name1', 'clip_name2'];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const EXCEPTIONS = {
  execution_error: {
    exception_type: 'RuntimeError',
    exception_message: 'mat1 and mat2 shapes cannot be multiplied (77x768 and 2048x1280)',
  },
  oom: {
    exception_type: 'torch.OutOfMemoryError',
    exception_message:
      'Allocation on device 0 would exceed allowed memory. (out of memory)\nCurrently allocated     : 22.81 GiB\nRequested               : 1.50 GiB\nDevice limit            : 23.55 GiB\nFree (according to CUDA): 12.56 MiB\nPyTorch limit (set by user-supplied memory fraction)\n                        : 17179869184.00 GiB\nThis error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.',
  },
  cuda_error: {
    exception_type: 'RuntimeError',
    exception_message:
      'CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n',
  },
} as const;

class Interrupted extends Error {}

export class ComfyuiStandin {
  /** What the next prompts do; `scenarios` is used up first, then `scenario`. */
  scenario: StandinScenario = 'success';
  readonly scenarios: StandinScenario[] = [];
  /** While true, queued prompts wait (to test a cancel before execution starts). */
  hold = false;
  /** The device is broken (after a CUDA error): every prompt fails with it, /system_stats answers 500. */
  cudaBroken = false;
  /** Every request, in order. */
  readonly requests: StandinRequest[] = [];
  /** Every prompt accepted, as queued. */
  readonly prompts: { promptId: string; clientId: string | undefined; prompt: Graph }[] = [];
  /** Answer POST /prompt with this HTTP status and a plain body (e.g. 500) instead. */
  failPromptWith: number | undefined;
  /** Queue the next POST /prompt, then drop its connection without answering (an ambiguous failure). */
  dropNextPromptAnswer = false;
  /** Message types not sent (as if the client missed them), e.g. 'execution_error'. */
  readonly drop = new Set<string>();
  /** Reconnects that presented their credential. */
  credentialAuths = 0;
  /** Prompts run to the end, with how each ended. */
  readonly finished: { promptId: string; status: 'success' | 'error' | 'interrupted'; cached: boolean }[] = [];

  readonly dialect: ComfyDialect;
  readonly #opts: Required<Omit<StandinOptions, 'dialect'>>;
  readonly #server: http.Server;
  readonly #wss: WebSocketServer;
  readonly #sockets = new Map<string, WebSocket>();
  /** The credential each client id was given on its first connection (current servers). */
  readonly #credentials = new Map<string, string>();
  readonly #rawSockets = new Set<Socket>();
  readonly #files = new Map<string, Buffer>(); // "type/subfolder/name" → bytes
  readonly #queue: QueueItem[] = [];
  readonly #history = new Map<string, HistoryEntry>();
  /** The node cache: a node's signature → what it produced (an output node's images). */
  #cache = new Map<string, { images?: ImageRef[] }>();
  #running: (QueueItem & { interrupted: boolean; currentNode?: string }) | undefined;
  #number = 0;
  #outputCounter = 0;
  #dead = false;
  #down = false;
  #generation = 0;
  #wake: (() => void) | undefined;
  url = '';

  constructor(opts: StandinOptions = {}) {
    this.dialect = opts.dialect ?? 'current';
    this.#opts = {
      steps: 4,
      stepMs: 20,
      models: STANDIN_MODELS,
      maxSteps: 10000,
      historyMax: 10000,
      historyDelayMs: 30,
      silent: false,
      ...opts,
    };
    this.#server = http.createServer((req, res) => {
      if (this.#down) return void req.socket.destroy();
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      });
    });
    this.#server.on('connection', (s) => {
      if (this.#down) return void s.destroy();
      this.#rawSockets.add(s);
      s.on('close', () => this.#rawSockets.delete(s));
    });
    this.#wss = new WebSocketServer({ noServer: true });
    this.#server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== '/ws' && url.pathname !== '/api/ws') return socket.destroy();
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

  /** The prompt ids POSTed to /interrupt (undefined for a global interrupt) and cancelled by the jobs route. */
  get interrupts(): unknown[] {
    return this.requests
      .filter((r) => r.path === '/interrupt' || (this.dialect === 'current' && /^\/api\/jobs\/[^/]+\/cancel$/.test(r.path)))
      .map((r) => (r.path === '/interrupt' ? (r.body as { prompt_id?: string } | undefined)?.prompt_id : r.path.split('/')[3]));
  }
  /** Every POST /interrupt that named no prompt (or was sent to a server that ignores the name). */
  get globalInterrupts(): number {
    return this.requests.filter(
      (r) => r.path === '/interrupt' && (this.dialect === 'legacy' || !(r.body as { prompt_id?: string } | undefined)?.prompt_id),
    ).length;
  }
  get deletes(): string[] {
    return this.requests
      .filter((r) => r.path === '/queue' && r.method === 'POST')
      .flatMap((r) => (r.body as { delete?: string[] }).delete ?? []);
  }
  get queueLength(): number {
    return this.#queue.length + (this.#running ? 1 : 0);
  }
  /** The prompt ids the history holds, oldest first. */
  get historyIds(): string[] {
    return [...this.#history.keys()];
  }
  /** Stored files as "type/subfolder/name". */
  get files(): string[] {
    return [...this.#files.keys()];
  }
  /** Deletes a stored file, as an operator's clean-up would. */
  deleteFile(key: string): void {
    this.#files.delete(key);
  }

  /** Queues a prompt as another client of the same server would (for tests of shared servers). */
  queueForeign(prompt: Graph, clientId: string = randomUUID()): string {
    const promptId = randomUUID();
    this.#enqueue(
      promptId,
      prompt,
      clientId,
      Object.keys(prompt).filter((id) => NODE_CLASSES[prompt[id]!.class_type]?.output),
    );
    return promptId;
  }
  /** The prompt running now. */
  get runningPromptId(): string | undefined {
    return this.#running?.promptId;
  }

  /** Kills the server as a crash would: every connection destroyed, nothing listening. */
  die(): void {
    this.#dead = true;
    this.#dropConnections();
    this.#server.close();
    this.#wake?.();
  }

  /**
   * Restarts the server: connections dropped, then `downMs` of refused requests; it comes back
   * on the same port knowing nothing of earlier prompts (queue, history, cache, credentials) and
   * with its temp folder emptied. Inputs and outputs stay on disk.
   */
  async restart(downMs = 100): Promise<void> {
    this.#generation++;
    this.#down = true;
    this.#dropConnections();
    this.#queue.length = 0;
    this.#history.clear();
    this.#cache.clear();
    this.#credentials.clear();
    if (this.#running) this.#running.interrupted = true;
    for (const key of [...this.#files.keys()]) if (key.startsWith('temp/')) this.#files.delete(key);
    this.#wake?.();
    await new Promise((r) => setTimeout(r, downMs));
    this.#down = false;
  }

  /** Drops every websocket (a proxy or network hiccup); HTTP goes on. */
  dropSockets(): void {
    for (const ws of this.#wss.clients) ws.terminate();
  }

  async stop(): Promise<void> {
    if (!this.#dead) this.die();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #dropConnections(): void {
    for (const ws of this.#sockets.values()) ws.terminate();
    for (const ws of this.#wss.clients) ws.terminate();
    for (const s of this.#rawSockets) s.destroy();
  }

  // ---------------------------------------------------------------------------------------------

  #onSocket(ws: WebSocket, clientId: string): void {
    const sid = clientId || randomUUID().replaceAll('-', '');
    ws.on('error', () => {});
    const bind = () => {
      this.#sockets.set(sid, ws);
      ws.on('close', () => {
        if (this.#sockets.get(sid) === ws) this.#sockets.delete(sid);
      });
    };
    const known = this.#credentials.get(sid);
    if (this.dialect === 'current' && known) {
      // A reconnect under a client id that has a credential: nothing is sent to this socket until
      // it presents that credential; the old socket keeps the id meanwhile.
      ws.send(JSON.stringify({ type: 'status', data: { status: this.#queueInfo() } }));
      ws.once('message', (raw) => {
        let m: { type?: string; data?: { credential_key?: string } } = {};
        try {
          m = JSON.parse(raw.toString());
        } catch {
          // judged below
        }
        if (m.type !== 'credential_auth' || m.data?.credential_key !== known) return void ws.close(4401, 'credential required');
        this.#sockets.get(sid)?.close();
        bind();
        this.credentialAuths++;
        ws.send(JSON.stringify({ type: 'credential_auth', data: { ok: true } }));
        this.#replayCurrentNode(sid);
      });
      return;
    }
    this.#sockets.get(sid)?.close();
    bind();
    const status: Record<string, unknown> = { status: this.#queueInfo(), sid };
    if (this.dialect === 'current') {
      const key = randomBytes(16).toString('hex');
      this.#credentials.set(sid, key);
      status.credential_key = key;
    }
    this.#send(sid, 'status', status);
    this.#replayCurrentNode(sid);
  }

  /** server.py: on reconnect, the client whose prompt is running hears the node running now. */
  #replayCurrentNode(sid: string): void {
    const r = this.#running;
    if (r && r.extraData.client_id === sid && r.currentNode) this.#send(sid, 'executing', { node: r.currentNode });
  }

  #queueInfo() {
    return { exec_info: { queue_remaining: this.queueLength } };
  }

  #features(): Record<string, unknown> {
    return {
      supports_preview_metadata: true,
      max_upload_size: 104857600,
      ...(this.dialect === 'current'
        ? { comfy_api_credentials: { version: 1, endpoint: '/api/credentials', websocket_auth_message: 'credential_auth' } }
        : {}),
    };
  }

  #send(sid: string | undefined, type: string, data: unknown): void {
    if (this.#dead || this.#down) return;
    if (sid !== undefined && type !== 'status' && (this.#opts.silent || this.drop.has(type))) return;
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

  #enqueue(promptId: string, prompt: Graph, clientId: string | undefined, outputs: string[]): QueueItem {
    const item: QueueItem = {
      number: this.#number++,
      promptId,
      prompt,
      extraData: clientId ? { client_id: clientId } : {},
      outputs,
    };
    this.#queue.push(item);
    this.#queueUpdated();
    this.#wake?.();
    return item;
  }

  #knows(promptId: string): boolean {
    return this.#history.has(promptId) || this.#running?.promptId === promptId || this.#queue.some((i) => i.promptId === promptId);
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
    // Every route is also served under /api/, except the jobs routes, which live only there.
    const jobsRoute = url.pathname.startsWith('/api/jobs');
    const pathname = jobsRoute ? url.pathname : url.pathname.replace(/^\/api\//, '/');
    this.requests.push({ method: req.method ?? 'GET', path: pathname, ...(body !== undefined ? { body } : {}) });
    const route = `${req.method} ${pathname}`;

    if (jobsRoute && this.dialect === 'current') return this.#jobs(req.method ?? 'GET', url, json);
    if (route === 'POST /upload/image') {
      const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': ct } }).formData();
      const image = form.get('image');
      if (!(image instanceof File) || !image.name) return void json(400, {});
      const type = String(form.get('type') ?? 'input');
      if (!['input', 'temp', 'output'].includes(type)) return void json(400, {});
      const subfolder = String(form.get('subfolder') ?? '');
      if (subfolder.includes('..') || image.name.includes('/')) return void json(400, {});
      this.#files.set(`${type}/${subfolder}/${image.name}`, Buffer.from(await image.arrayBuffer()));
      return void json(200, { name: image.name, subfolder, type });
    }
    if (route === 'POST /prompt') return this.#postPrompt(req, res, body, json);
    if (route === 'GET /features') {
      if (this.dialect === 'legacy') return void json(404, {});
      return void json(200, this.#features());
    }
    if (route === 'GET /queue') {
      const tuple = (i: QueueItem) => [i.number, i.promptId, i.prompt, i.extraData, i.outputs];
      return void json(200, { queue_running: this.#running ? [tuple(this.#running)] : [], queue_pending: this.#queue.map(tuple) });
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
      const targeted = this.dialect !== 'legacy' && id;
      if (this.#running && (!targeted || id === this.#running.promptId)) this.#interruptRunning();
      res.writeHead(200);
      return void res.end();
    }
    if (route === 'POST /free') {
      res.writeHead(200);
      return void res.end();
    }
    if (route === 'GET /history') {
      const max = Number(url.searchParams.get('max_items') ?? Number.POSITIVE_INFINITY);
      return void json(200, Object.fromEntries([...this.#history].slice(-max)));
    }
    if (route === 'POST /history') {
      const b = (body ?? {}) as { delete?: string[]; clear?: boolean };
      if (b.clear) this.#history.clear();
      for (const id of b.delete ?? []) this.#history.delete(id);
      res.writeHead(200);
      return void res.end();
    }
    if (req.method === 'GET' && pathname.startsWith('/history/')) {
      const id = decodeURIComponent(pathname.slice('/history/'.length));
      const h = this.#history.get(id);
      return void json(200, h ? { [id]: h } : {});
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
      if (this.cudaBroken) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        return void res.end('500 Internal Server Error\n\nServer got itself in trouble');
      }
      const version = { legacy: '0.3.10', '2025': '0.3.60', current: '0.36.0' }[this.dialect];
      return void json(200, {
        system: { os: 'posix', comfyui_version: version, python_version: '3.12.3', pytorch_version: '2.8.0+cu128' },
        devices: [
          {
            name: 'cuda:0 NVIDIA Stand-in GPU : cudaMallocAsync',
            type: 'cuda',
            index: 0,
            vram_total: 25769803776,
            vram_free: 24696061952,
            torch_vram_total: 0,
            torch_vram_free: 0,
          },
        ],
      });
    }
    res.writeHead(404);
    res.end();
  }

  #postPrompt(req: http.IncomingMessage, res: http.ServerResponse, body: unknown, json: (status: number, body: unknown) => void): void {
    if (this.failPromptWith) {
      res.writeHead(this.failPromptWith, { 'content-type': 'text/plain' });
      return void res.end('500 Internal Server Error\n\nServer got itself in trouble');
    }
    const b = (body ?? {}) as { prompt?: Graph; client_id?: string; prompt_id?: string };
    if (!b.prompt || typeof b.prompt !== 'object') {
      return void json(400, {
        error: { type: 'no_prompt', message: 'No prompt provided', details: 'No prompt provided', extra_info: {} },
        node_errors: {},
      });
    }
    let promptId: string = randomUUID();
    if (b.prompt_id !== undefined && this.dialect !== 'legacy') {
      promptId = String(b.prompt_id);
      if (this.dialect === 'current') {
        if (!UUID.test(promptId)) {
          return void json(400, {
            error: { type: 'invalid_prompt_id', message: 'prompt_id must be a UUID', details: promptId, extra_info: {} },
            node_errors: {},
          });
        }
        if (this.#knows(promptId)) {
          return void json(409, {
            error: {
              type: 'duplicate_prompt_id',
              message: 'A prompt with this prompt_id already exists',
              details: promptId,
              extra_info: {},
            },
            node_errors: {},
          });
        }
      }
    }
    const checked = this.#validate(b.prompt);
    if (!checked.ok) return void json(400, checked.body);
    const item = this.#enqueue(promptId, b.prompt, b.client_id, checked.outputs);
    this.prompts.push({ promptId, clientId: b.client_id, prompt: b.prompt });
    if (this.dropNextPromptAnswer) {
      this.dropNextPromptAnswer = false;
      return void req.socket.destroy();
    }
    return void json(200, { prompt_id: promptId, number: item.number, node_errors: checked.nodeErrors });
  }

  /** The jobs routes of current servers (a job is a prompt). */
  #jobs(method: string, url: URL, json: (status: number, body: unknown) => void): void {
    const parts = url.pathname.split('/').filter(Boolean); // api, jobs, id?, cancel?
    const id = parts[2] ? decodeURIComponent(parts[2]) : undefined;
    const job = (promptId: string) => {
      if (this.#running?.promptId === promptId) return { id: promptId, status: 'in_progress' };
      if (this.#queue.some((i) => i.promptId === promptId)) return { id: promptId, status: 'pending' };
      const h = this.#history.get(promptId);
      if (!h) return undefined;
      const interrupted = h.status.messages.some(([t]) => t === 'execution_interrupted');
      return {
        id: promptId,
        status: h.status.status_str === 'success' ? 'completed' : interrupted ? 'cancelled' : 'failed',
        outputs: h.outputs,
      };
    };
    if (method === 'GET' && !id) {
      const all = [
        ...(this.#running ? [this.#running.promptId] : []),
        ...this.#queue.map((i) => i.promptId),
        ...[...this.#history.keys()].reverse(),
      ];
      return void json(200, { jobs: all.map(job) });
    }
    if (method === 'GET' && id && parts.length === 3) {
      const j = job(id);
      return void (j ? json(200, j) : json(404, { error: 'job not found' }));
    }
    if (method === 'POST' && id && parts[3] === 'cancel') {
      if (this.#running?.promptId === id) {
        this.#interruptRunning();
        return void json(200, { id, cancelled: true });
      }
      const at = this.#queue.findIndex((i) => i.promptId === id);
      if (at >= 0) {
        this.#queue.splice(at, 1);
        this.#queueUpdated();
        return void json(200, { id, cancelled: true });
      }
      return void json(200, { id, cancelled: false, message: 'nothing to cancel' });
    }
    json(404, {});
  }

  #interruptRunning(): void {
    if (!this.#running) return;
    this.#running.interrupted = true;
    this.#wake?.();
  }

  /** ComfyUI's validate_prompt: outputs that fail are left out; none left is a 400. */
  #validate(prompt: Graph): { ok: true; outputs: string[]; nodeErrors: Record<string, unknown> } | { ok: false; body: unknown } {
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
      const errors = this.#nodeErrors(prompt, node);
      if (errors.length > 0) nodeErrors[id] = { errors, dependent_outputs: [], class_type: node.class_type };
    }
    const good: string[] = [];
    for (const out of outputs) {
      const bad = [...upstream(prompt, out)].filter((id) => nodeErrors[id]);
      for (const id of bad) nodeErrors[id]!.dependent_outputs.push(out);
      if (bad.length === 0) good.push(out);
    }
    if (good.length === 0) {
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
    return { ok: true, outputs: good, nodeErrors };
  }

  #nodeErrors(prompt: Graph, node: Node): unknown[] {
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
        !this.#files.has(fileKey(String(value)))
      ) {
        errors.push({
          type: 'custom_validation_failed',
          message: 'Custom validation failed for node',
          details: `image - Invalid image file: ${String(value)}`,
          extra_info: { input_name: name },
        });
      }
      if (name === 'steps' && Number(value) > this.#opts.maxSteps) {
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
    return errors;
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

  /** main.py's prompt_worker around execution.py's execute: messages, history, then `executing null`. */
  async #execute(item: QueueItem & { interrupted: boolean; currentNode?: string }): Promise<void> {
    const sid = item.extraData.client_id;
    const pid = item.promptId;
    const generation = this.#generation;
    const gone = () => this.#dead || generation !== this.#generation;
    const messages: [string, unknown][] = [];
    // execution.py's add_message: kept for the history, and sent to the prompt's client.
    const status = (type: string, data: Record<string, unknown>) => {
      const d = { ...data, prompt_id: pid, timestamp: Date.now() };
      messages.push([type, d]);
      this.#send(sid, type, d);
    };
    const send = (type: string, data: Record<string, unknown>) => this.#send(sid, type, { ...data, prompt_id: pid });
    const nodeState: Record<string, { value: number; max: number; state: 'running' | 'finished' }> = {};
    const progressState = () => {
      if (this.dialect === 'legacy') return;
      const nodes = Object.fromEntries(
        Object.entries(nodeState).map(([id, s]) => [
          id,
          { ...s, node_id: id, prompt_id: pid, display_node_id: id, parent_node_id: null, real_node_id: id },
        ]),
      );
      send('progress_state', { nodes });
    };
    const checkInterrupt = () => {
      if (item.interrupted) throw new Interrupted();
    };

    const scenario = this.scenarios.shift() ?? this.scenario;
    const order = executionOrder(item.prompt, item.outputs);
    const signatures = signaturesOf(item.prompt);
    const cached = order.filter((id) => this.#cache.has(signatures.get(id)!));
    status('execution_start', {});
    status('execution_cached', { nodes: cached });
    const executed: string[] = [];
    const outputs: HistoryEntry['outputs'] = {};
    const newCache = new Map<string, { images?: ImageRef[] }>();
    let result: 'success' | 'error' | 'interrupted' = 'success';
    let current: string | undefined;
    try {
      for (const id of order) {
        const node = item.prompt[id]!;
        const cls = NODE_CLASSES[node.class_type]!;
        const sig = signatures.get(id)!;
        const hit = this.#cache.get(sig);
        if (hit) {
          // A cached node is not run: an output node replays its earlier `executed` message.
          if (hit.images) {
            outputs[id] = { images: hit.images };
            send('executed', { node: id, display_node: id, output: { images: hit.images } });
          }
          newCache.set(sig, hit);
          nodeState[id] = { value: 1, max: 1, state: 'finished' };
          executed.push(id);
          continue;
        }
        checkInterrupt();
        current = id;
        item.currentNode = id;
        send('executing', { node: id, display_node: id });
        nodeState[id] = { value: 0, max: 1, state: 'running' };
        progressState();
        if (cls.gpu && this.cudaBroken) throw Object.assign(new Error('cuda'), { scenario: 'cuda_error' as const });
        const steps = cls.sampler ? Math.min(Number(node.inputs.steps) || this.#opts.steps, this.#opts.steps) : (cls.progress ?? 0);
        for (let i = 1; i <= steps || (cls.sampler && scenario === 'hang'); i++) {
          await this.#sleep(cls.sampler && scenario === 'hang' ? this.#opts.stepMs * 5 : this.#opts.stepMs);
          if (gone()) return;
          checkInterrupt(); // comfy's progress hook throws here
          const value = Math.min(i, steps);
          nodeState[id] = { value, max: steps, state: 'running' };
          send('progress', { value, max: steps, node: id });
          progressState();
          if (cls.sampler && i === 2) {
            if (scenario === 'die') return this.die();
            if (scenario === 'forget') return void this.restart();
            if (scenario === 'execution_error' || scenario === 'oom' || scenario === 'cuda_error') {
              if (scenario === 'cuda_error') this.cudaBroken = true;
              throw Object.assign(new Error(scenario), { scenario });
            }
          }
        }
        const entry: { images?: ImageRef[] } = {};
        if (cls.output) {
          const images = [await this.#save(item.prompt, node)];
          outputs[id] = { images };
          entry.images = images;
          send('executed', { node: id, display_node: id, output: { images } });
        }
        newCache.set(sig, entry);
        nodeState[id] = { value: nodeState[id]!.max, max: nodeState[id]!.max, state: 'finished' };
        progressState();
        executed.push(id);
      }
      if (this.dialect !== 'legacy') status('execution_success', {});
    } catch (err) {
      if (gone()) return;
      const base = { node_id: current, node_type: current ? item.prompt[current]?.class_type : undefined, executed: [...executed] };
      if (err instanceof Interrupted) {
        result = 'interrupted';
        status('execution_interrupted', base);
      } else {
        result = 'error';
        const which = (err as { scenario?: keyof typeof EXCEPTIONS }).scenario ?? 'execution_error';
        status('execution_error', {
          ...base,
          ...EXCEPTIONS[which],
          traceback: [
            '  File "/opt/ComfyUI/execution.py", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(\n',
          ],
          current_inputs: {},
          current_outputs: [...executed],
        });
      }
    }
    // The cache holds what this prompt's nodes produced (a failed node is not cached).
    this.#cache = newCache;
    await this.#sleep(this.#opts.historyDelayMs);
    if (gone()) return;
    if (this.#history.size >= this.#opts.historyMax) this.#history.delete(this.#history.keys().next().value!);
    this.#history.set(pid, {
      prompt: [item.number, pid, item.prompt, item.extraData, item.outputs],
      outputs,
      status: { status_str: result === 'success' ? 'success' : 'error', completed: result === 'success', messages },
      meta: Object.fromEntries(
        Object.keys(outputs).map((id) => [id, { node_id: id, display_node: id, parent_node: null, real_node_id: id }]),
      ),
    });
    this.finished.push({ promptId: pid, status: result, cached: cached.length === order.length });
    this.#send(sid, 'executing', { node: null, prompt_id: pid });
  }

  /** SaveImage writes to output/<prefix's folder>/<prefix's name>_NNNNN_.png; PreviewImage to temp. */
  async #save(prompt: Graph, node: Node): Promise<ImageRef> {
    const n = String(++this.#outputCounter).padStart(5, '0');
    let ref: ImageRef;
    if (node.class_type === 'SaveImage') {
      const prefix = String(node.inputs.filename_prefix ?? 'ComfyUI');
      const at = prefix.lastIndexOf('/');
      ref = { filename: `${prefix.slice(at + 1)}_${n}_.png`, subfolder: at < 0 ? '' : prefix.slice(0, at), type: 'output' };
    } else {
      ref = { filename: `ComfyUI_temp_${randomBytes(3).toString('hex').slice(0, 5)}_${n}_.png`, subfolder: '', type: 'temp' };
    }
    this.#files.set(`${ref.type}/${ref.subfolder}/${ref.filename}`, await this.#render(prompt));
    return ref;
  }

  /** The uploaded image of the LoadImage node inverted, else a colour from the seed at the latent's size. */
  async #render(prompt: Graph): Promise<Buffer> {
    const load = Object.values(prompt).find((n) => n.class_type === 'LoadImage');
    const file = load ? this.#files.get(fileKey(String(load.inputs.image))) : undefined;
    if (file) return sharp(file).removeAlpha().negate().png().toBuffer();
    const latent = Object.values(prompt).find((n) => n.class_type === 'EmptyLatentImage' || n.class_type === 'EmptySD3LatentImage');
    const sampler = Object.values(prompt).find((n) => NODE_CLASSES[n.class_type]?.sampler);
    const seed = Number(sampler?.inputs.seed ?? sampler?.inputs.noise_seed ?? 0);
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

/**
 * A LoadImage value → the stored file's key. folder_paths' annotations: "sub/name.png [temp]"
 * is in the temp folder, "[output]" in the output folder, no annotation in the input folder.
 */
function fileKey(value: string): string {
  const m = /^(.*?)\s*\[(input|temp|output)\]$/.exec(value);
  const type = m ? m[2]! : 'input';
  const name = m ? m[1]! : value;
  const i = name.lastIndexOf('/');
  return i < 0 ? `${type}//${name}` : `${type}/${name.slice(0, i)}/${name.slice(i + 1)}`;
}

/** The node and every node it takes inputs from, transitively. */
function upstream(prompt: Graph, id: string, seen = new Set<string>()): Set<string> {
  if (seen.has(id) || !prompt[id]) return seen;
  seen.add(id);
  for (const v of Object.values(prompt[id].inputs ?? {})) if (Array.isArray(v)) upstream(prompt, String(v[0]), seen);
  return seen;
}

/** The nodes the outputs need, each after the nodes it takes inputs from. */
function executionOrder(prompt: Graph, outputs: string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (id: string) => {
    if (seen.has(id) || !prompt[id]) return;
    seen.add(id);
    for (const v of Object.values(prompt[id].inputs ?? {})) if (Array.isArray(v)) visit(String(v[0]));
    out.push(id);
  };
  for (const id of outputs) visit(id);
  return out;
}

/** comfy_execution/caching.py's idea: a node's class and inputs, with each link replaced by the linked node's signature. */
function signaturesOf(prompt: Graph): Map<string, string> {
  const sigs = new Map<string, string>();
  const sig = (id: string): string => {
    const known = sigs.get(id);
    if (known) return known;
    const node = prompt[id]!;
    const inputs = Object.keys(node.inputs ?? {})
      .sort()
      .map((k) => {
        const v = node.inputs[k];
        return [k, Array.isArray(v) && prompt[String(v[0])] ? [sig(String(v[0])), v[1]] : v];
      });
    const s = JSON.stringify([node.class_type, inputs]);
    sigs.set(id, s);
    return s;
  };
  for (const id of Object.keys(prompt)) sig(id);
  return sigs;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

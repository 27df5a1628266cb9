import { BackendUnavailableError } from '@darkroom/contracts';
import WebSocket from 'ws';

/*
 * A client for a ComfyUI server's HTTP and websocket API (server.py): upload an input, queue a
 * prompt for a client id, follow its messages on /ws?clientId=, cancel, dequeue or interrupt it,
 * find it again after an ambiguous failure, read and delete its history, download its outputs.
 * It speaks to older servers (server-chosen prompt ids, a global interrupt) as well as current
 * ones (client-chosen ids, the jobs routes, a credential for websocket reconnects). Transport
 * trouble (refused, reset, timed out, 5xx) becomes BackendUnavailableError: the job is retried,
 * then fails as backend_unavailable.
 */

export interface ComfyImageRef {
  filename: string;
  subfolder: string;
  type: string;
}

export interface ComfyHistoryEntry {
  outputs?: Record<string, { images?: ComfyImageRef[] }>;
  status?: { status_str?: string; completed?: boolean; messages?: [string, Record<string, unknown>][] };
}

export interface ComfyNodeError {
  errors?: { type?: string; message?: string; details?: string; extra_info?: { input_name?: string } }[];
  class_type?: string;
}

/** POST /prompt answered 400: the server's validation refused the workflow. */
export class PromptRejectedError extends Error {
  readonly error: { type?: string; message?: string; details?: string } | undefined;
  readonly nodeErrors: Record<string, ComfyNodeError>;
  constructor(body: { error?: unknown; node_errors?: unknown }) {
    const error = typeof body.error === 'string' ? { message: body.error } : (body.error as PromptRejectedError['error']);
    super(`ComfyUI refused the prompt: ${error?.message ?? 'no reason given'}`);
    this.name = 'PromptRejectedError';
    this.error = error;
    this.nodeErrors =
      body.node_errors && typeof body.node_errors === 'object' && !Array.isArray(body.node_errors)
        ? (body.node_errors as Record<string, ComfyNodeError>)
        : {};
  }
}

/** POST /prompt answered 409: a prompt with this id is already queued, running or done. */
export class PromptExistsError extends Error {
  constructor(readonly promptId: string) {
    super(`ComfyUI already has prompt ${promptId}`);
    this.name = 'PromptExistsError';
  }
}

/** Any other 4xx: the request itself is wrong for this server. */
export class ComfyRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ComfyRequestError';
  }
}

export interface ComfyMessage {
  type: string;
  data: Record<string, unknown>;
}

/** Describes why a connection failed, without addresses (they reach stations through job errors). */
function describeNetworkError(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'did not answer in time';
  const code = e?.cause?.code ?? e?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused the connection';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
    case 'EPIPE':
      return 'dropped the connection';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'cannot be found (DNS)';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'is unreachable';
    default: {
      // A cause without a code ("bad port") is shown when it names no address.
      const why = code ?? (e?.cause?.message && !/[:/\d]{2}/.test(e.cause.message) ? e.cause.message : undefined);
      return why ? `cannot be reached (${why})` : 'cannot be reached';
    }
  }
}

/** A request path as messages show it: "/prompt", without the query. */
function shown(pathname: string): string {
  return `/${pathname.replace(/^\//, '').split('?')[0]}`;
}

export class ComfyClient {
  readonly base: URL;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, requestTimeoutMs: number) {
    this.base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
    this.#timeoutMs = requestTimeoutMs;
  }

  url(pathname: string): URL {
    return new URL(pathname.replace(/^\//, ''), this.base);
  }

  async #fetch(pathname: string, init: RequestInit & { signal?: AbortSignal }): Promise<Response> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await fetch(this.url(pathname), { ...init, signal });
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason;
      throw new BackendUnavailableError(`ComfyUI ${describeNetworkError(err)} (${init.method ?? 'GET'} ${shown(pathname)})`, {
        cause: err,
      });
    }
    if (res.status >= 500) {
      await res.body?.cancel().catch(() => {});
      throw new BackendUnavailableError(`ComfyUI answered ${res.status} to ${init.method ?? 'GET'} ${shown(pathname)}`);
    }
    return res;
  }

  async #json<T>(pathname: string, init: RequestInit & { signal?: AbortSignal } = {}): Promise<T> {
    const res = await this.#fetch(pathname, init);
    const text = await res.text().catch((err: unknown) => {
      throw new BackendUnavailableError(`ComfyUI ${describeNetworkError(err)} while answering ${shown(pathname)}`, { cause: err });
    });
    if (res.status >= 400)
      throw new ComfyRequestError(res.status, `ComfyUI answered ${res.status} to ${init.method ?? 'GET'} ${shown(pathname)}`);
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch {
      throw new BackendUnavailableError(`ComfyUI answered ${shown(pathname)} with something that is not JSON`);
    }
  }

  async #post(pathname: string, body: unknown, signal?: AbortSignal): Promise<void> {
    const res = await this.#fetch(pathname, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
    await res.body?.cancel().catch(() => {});
    if (res.status >= 400) throw new ComfyRequestError(res.status, `ComfyUI answered ${res.status} to POST ${shown(pathname)}`);
  }

  systemStats(signal?: AbortSignal): Promise<{
    system?: { comfyui_version?: string };
    devices?: { name?: string; type?: string; vram_total?: number; vram_free?: number }[];
  }> {
    return this.#json('system_stats', signal ? { signal } : {});
  }

  /**
   * POST /upload/image into the given folder; the name LoadImage takes back: "subfolder/name",
   * annotated " [temp]" for the temp folder (folder_paths' annotated file names).
   */
  async upload(data: Buffer, filename: string, subfolder: string, type: 'input' | 'temp', signal: AbortSignal): Promise<string> {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(data)], { type: 'image/png' }), filename);
    form.append('type', type);
    form.append('subfolder', subfolder);
    form.append('overwrite', 'true');
    const out = await this.#json<{ name?: string; subfolder?: string; type?: string }>('upload/image', {
      method: 'POST',
      body: form,
      signal,
    });
    if (!out.name) throw new BackendUnavailableError('ComfyUI did not say where it stored the upload');
    const name = out.subfolder ? `${out.subfolder}/${out.name}` : out.name;
    return (out.type ?? type) === 'input' ? name : `${name} [${out.type ?? type}]`;
  }

  /**
   * POST /prompt. Resolves with the prompt id (older servers choose their own) and the node
   * errors of outputs left out; a refusal throws PromptRejectedError, a used id PromptExistsError.
   */
  async queuePrompt(
    prompt: unknown,
    clientId: string,
    promptId: string,
    signal: AbortSignal,
  ): Promise<{ promptId: string; nodeErrors: Record<string, ComfyNodeError> }> {
    const res = await this.#fetch('prompt', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, client_id: clientId, prompt_id: promptId }),
      signal,
    });
    const text = await res.text();
    let body: { prompt_id?: string; error?: unknown; node_errors?: unknown } = {};
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      // a non-JSON answer: judged by status below
    }
    if (res.status === 400) throw new PromptRejectedError(body);
    if (res.status === 409) throw new PromptExistsError(promptId);
    if (res.status >= 400) throw new ComfyRequestError(res.status, `ComfyUI answered ${res.status} to POST /prompt`);
    if (!body.prompt_id) throw new BackendUnavailableError('ComfyUI queued the prompt without saying its id');
    const nodeErrors =
      body.node_errors && typeof body.node_errors === 'object' && !Array.isArray(body.node_errors)
        ? (body.node_errors as Record<string, ComfyNodeError>)
        : {};
    return { promptId: body.prompt_id, nodeErrors };
  }

  /**
   * POST /interrupt naming the prompt. Servers that know prompt_id interrupt only that one; older
   * ones interrupt whatever runs, so callers check first that it is theirs.
   */
  interrupt(promptId: string): Promise<void> {
    return this.#post('interrupt', { prompt_id: promptId });
  }

  /** POST /api/jobs/{id}/cancel (current servers): true when the server has the route. */
  async cancelJob(promptId: string): Promise<boolean> {
    try {
      await this.#post(`api/jobs/${encodeURIComponent(promptId)}/cancel`, {});
      return true;
    } catch (err) {
      if (err instanceof ComfyRequestError && (err.status === 404 || err.status === 405)) return false;
      throw err;
    }
  }

  /** POST /free: unloads models and frees cached memory (after running out of GPU memory). */
  free(): Promise<void> {
    return this.#post('free', { unload_models: true, free_memory: true });
  }

  /** POST /history {delete}: removes the prompt's history entry. */
  deleteHistory(promptId: string): Promise<void> {
    return this.#post('history', { delete: [promptId] });
  }

  /** POST /queue {delete}: takes a prompt that has not started off the queue. */
  dequeue(promptId: string): Promise<void> {
    return this.#post('queue', { delete: [promptId] });
  }

  /**
   * Where the prompt is in the queue (GET /queue), found by its id or, for servers that chose
   * the id themselves, by the client id it was queued for.
   */
  async queued(
    promptId: string,
    signal?: AbortSignal,
    clientId?: string,
  ): Promise<{ state: 'running' | 'pending'; promptId: string } | undefined> {
    const q = await this.#json<{ queue_running?: unknown[][]; queue_pending?: unknown[][] }>('queue', signal ? { signal } : {});
    const match = (i: unknown[]) =>
      i[1] === promptId || (clientId !== undefined && (i[3] as { client_id?: unknown } | undefined)?.client_id === clientId);
    const running = q.queue_running?.find(match);
    if (running) return { state: 'running', promptId: String(running[1]) };
    const pending = q.queue_pending?.find(match);
    if (pending) return { state: 'pending', promptId: String(pending[1]) };
    return undefined;
  }

  /** GET /queue as the server answers it: items are [number, prompt_id, prompt, extra_data, outputs]. */
  queue(signal?: AbortSignal): Promise<{ queue_running?: unknown[][]; queue_pending?: unknown[][] }> {
    return this.#json('queue', signal ? { signal } : {});
  }

  /**
   * After a POST /prompt whose answer was lost: the id under which the server has the prompt
   * (queued, running or in the history), or undefined when it never got it.
   */
  async findPrompt(promptId: string, clientId: string, signal?: AbortSignal): Promise<string | undefined> {
    const q = await this.queued(promptId, signal, clientId);
    if (q) return q.promptId;
    if (await this.history(promptId, signal)) return promptId;
    // A server that chose the id itself, and already ran the prompt: its recent history, by client id.
    const recent = await this.#json<Record<string, { prompt?: unknown[] }>>('history?max_items=64', signal ? { signal } : {});
    for (const [id, h] of Object.entries(recent)) {
      if ((h.prompt?.[3] as { client_id?: unknown } | undefined)?.client_id === clientId) return id;
    }
    return undefined;
  }

  async history(promptId: string, signal?: AbortSignal): Promise<ComfyHistoryEntry | undefined> {
    const h = await this.#json<Record<string, ComfyHistoryEntry>>(`history/${encodeURIComponent(promptId)}`, signal ? { signal } : {});
    return h[promptId];
  }

  async view(image: ComfyImageRef, signal: AbortSignal): Promise<Buffer> {
    const q = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder ?? '', type: image.type ?? 'output' });
    const res = await this.#fetch(`view?${q}`, { signal });
    if (res.status >= 400) {
      await res.body?.cancel().catch(() => {});
      throw new ComfyRequestError(res.status, `ComfyUI answered ${res.status} to GET /view`);
    }
    try {
      return Buffer.from(await res.arrayBuffer());
    } catch (err) {
      throw new BackendUnavailableError(`ComfyUI ${describeNetworkError(err)} while sending the output`, { cause: err });
    }
  }

  /**
   * Opens /ws?clientId=… and waits until it is open. Reconnecting to a current server under the
   * same client id, `credential` is the key its first `status` message announced: presented
   * first, as the server wants before it sends that client anything.
   */
  connect(clientId: string, signal: AbortSignal, credential?: string): Promise<ComfySocket> {
    const url = this.url(`ws?clientId=${encodeURIComponent(clientId)}`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { handshakeTimeout: this.#timeoutMs });
      const fail = (err: unknown) => {
        cleanup();
        ws.terminate();
        reject(
          signal.aborted ? signal.reason : new BackendUnavailableError(`ComfyUI ${describeNetworkError(err)} (websocket)`, { cause: err }),
        );
      };
      const onAbort = () => fail(signal.reason);
      const onOpen = () => {
        cleanup();
        if (credential) ws.send(JSON.stringify({ type: 'credential_auth', data: { credential_key: credential } }));
        resolve(new ComfySocket(ws));
      };
      const onUnexpected = (_req: unknown, res: { statusCode?: number }) => fail(new Error(`HTTP ${res.statusCode}`));
      const cleanup = () => {
        ws.off('open', onOpen);
        ws.off('error', fail);
        ws.off('unexpected-response', onUnexpected);
        signal.removeEventListener('abort', onAbort);
      };
      ws.once('open', onOpen);
      ws.once('error', fail);
      ws.once('unexpected-response', onUnexpected);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** An open ComfyUI websocket: JSON messages in order; binary ones (previews) are skipped. */
export class ComfySocket {
  readonly #ws: WebSocket;
  #onMessage: ((m: ComfyMessage) => void) | undefined;
  #onClose: ((reason: string) => void) | undefined;
  #closedByUs = false;
  /** Messages and a close that came before the handlers: delivered when they are set. */
  readonly #early: ComfyMessage[] = [];
  #earlyClose: string | undefined;
  /** The credential a current server announced in its first `status` message, for reconnects. */
  credential: string | undefined;

  constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let m: ComfyMessage;
      try {
        m = JSON.parse(data.toString()) as ComfyMessage;
      } catch {
        return;
      }
      if (!m || typeof m.type !== 'string') return;
      const message = { type: m.type, data: (m.data ?? {}) as Record<string, unknown> };
      if (m.type === 'status' && typeof message.data.credential_key === 'string') this.credential = message.data.credential_key;
      if (this.#onMessage) this.#onMessage(message);
      else this.#early.push(message);
    });
    ws.on('error', () => {}); // 'close' follows
    ws.on('close', (code) => {
      if (this.#closedByUs) return;
      if (this.#onClose) this.#onClose(`closed (${code})`);
      else this.#earlyClose = `closed (${code})`;
    });
  }

  on(handlers: { message: (m: ComfyMessage) => void; close: (reason: string) => void }): void {
    this.#onMessage = handlers.message;
    this.#onClose = handlers.close;
    for (const m of this.#early.splice(0)) handlers.message(m);
    if (this.#earlyClose !== undefined) handlers.close(this.#earlyClose);
  }

  close(): void {
    this.#closedByUs = true;
    this.#ws.terminate();
  }
}

import { BackendUnavailableError } from '@darkroom/contracts';
import WebSocket from 'ws';

/*
 * A client for a ComfyUI server's HTTP and websocket API (server.py): upload an input, queue a
 * prompt for a client id, follow its messages on /ws?clientId=, interrupt or dequeue it, read
 * its history and download its outputs. Transport trouble (refused, reset, timed out, 5xx)
 * becomes BackendUnavailableError: the job is retried, then fails as backend_unavailable.
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

  systemStats(
    signal?: AbortSignal,
  ): Promise<{ system?: { comfyui_version?: string }; devices?: { name?: string; type?: string; vram_total?: number }[] }> {
    return this.#json('system_stats', signal ? { signal } : {});
  }

  /** POST /upload/image into the input folder; the name LoadImage takes back ("subfolder/name"). */
  async upload(data: Buffer, filename: string, subfolder: string, signal: AbortSignal): Promise<string> {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(data)], { type: 'image/png' }), filename);
    form.append('type', 'input');
    form.append('subfolder', subfolder);
    form.append('overwrite', 'true');
    const out = await this.#json<{ name?: string; subfolder?: string }>('upload/image', { method: 'POST', body: form, signal });
    if (!out.name) throw new BackendUnavailableError('ComfyUI did not say where it stored the upload');
    return out.subfolder ? `${out.subfolder}/${out.name}` : out.name;
  }

  /** POST /prompt. Resolves with the prompt id; a refusal throws PromptRejectedError. */
  async queuePrompt(prompt: unknown, clientId: string, promptId: string, signal: AbortSignal): Promise<string> {
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
    if (res.status >= 400) throw new ComfyRequestError(res.status, `ComfyUI answered ${res.status} to POST /prompt`);
    if (!body.prompt_id) throw new BackendUnavailableError('ComfyUI queued the prompt without saying its id');
    return body.prompt_id;
  }

  /** POST /interrupt for one prompt (servers that know prompt_id interrupt only that one). */
  interrupt(promptId: string): Promise<void> {
    return this.#post('interrupt', { prompt_id: promptId });
  }

  /** POST /queue {delete}: takes a prompt that has not started off the queue. */
  dequeue(promptId: string): Promise<void> {
    return this.#post('queue', { delete: [promptId] });
  }

  /** Whether the prompt is running or waiting (GET /queue). */
  async queued(promptId: string, signal?: AbortSignal): Promise<'running' | 'pending' | undefined> {
    const q = await this.#json<{ queue_running?: unknown[][]; queue_pending?: unknown[][] }>('queue', signal ? { signal } : {});
    if (q.queue_running?.some((i) => i[1] === promptId)) return 'running';
    if (q.queue_pending?.some((i) => i[1] === promptId)) return 'pending';
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

  /** Opens /ws?clientId=… and waits until it is open. */
  connect(clientId: string, signal: AbortSignal): Promise<ComfySocket> {
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

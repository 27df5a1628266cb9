/*
 * A Server-Sent Events parser over a fetch body (the WHATWG "event stream interpretation"):
 * lines end in CRLF, LF or CR; `:` starts a comment (keep-alives); a blank line dispatches the
 * event; several `data:` lines join with "\n"; `retry:` sets the reconnection time. No
 * EventSource needed, so headers (the key) go with the request and a drop is ours to handle.
 */

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export interface SseHandlers {
  onEvent(event: SseEvent): boolean | undefined;
  /** A `retry:` field, in milliseconds. */
  onRetry?(ms: number): void;
}

/**
 * Reads the stream until it ends, or until `onEvent` returns true (then the stream is cancelled).
 * Rejects when the connection drops.
 */
export async function readEventStream(body: ReadableStream<Uint8Array>, handlers: SseHandlers): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  let first = true;

  /** Handles one line; true when the caller is done. */
  const line = (text: string): boolean => {
    if (text === '') {
      if (data.length === 0) {
        event = '';
        return false;
      }
      const done = handlers.onEvent({ event: event || 'message', data: data.join('\n'), ...(id !== undefined ? { id } : {}) });
      data = [];
      event = '';
      return done === true;
    }
    if (text.startsWith(':')) return false;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    const value = colon < 0 ? '' : text.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) handlers.onRetry?.(Number(value));
    return false;
  };

  try {
    for (;;) {
      const { value, done } = await reader.read();
      buf += done ? decoder.decode() : decoder.decode(value, { stream: true });
      if (first && buf.length > 0) {
        if (buf.charCodeAt(0) === 0xfeff) buf = buf.slice(1);
        first = false;
      }
      for (;;) {
        const i = buf.search(/[\r\n]/);
        // A CR at the very end may be the first half of a CRLF split across chunks.
        if (i < 0 || (buf[i] === '\r' && i === buf.length - 1 && !done)) break;
        const text = buf.slice(0, i);
        buf = buf.slice(i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1));
        if (line(text)) {
          await reader.cancel().catch(() => {});
          return;
        }
      }
      if (done) return; // an unterminated last event is dropped, as the spec says
    }
  } finally {
    reader.releaseLock();
  }
}

import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DarkroomClient } from '@darkroom/client';
import type { JobStatusBody } from '@darkroom/contracts';
import { STATIONS, type System } from '@darkroom/testing';
import { type Browser, chromium } from 'playwright-core';

export const FINAL = ['completed', 'failed', 'cancelled'];

export function multipart(fields: Record<string, string>, image?: { data: Buffer; filename?: string; type?: string }): FormData {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  if (image)
    form.append(
      'image',
      new Blob([new Uint8Array(image.data)], { type: image.type ?? 'application/octet-stream' }),
      image.filename ?? 'upload',
    );
  return form;
}

export async function submit(
  sys: System,
  form: FormData | object,
  init: { station?: 'alpha' | 'beta'; query?: string; headers?: Record<string, string> } = {},
) {
  const isForm = form instanceof FormData;
  return sys.fetch(`/v1/jobs${init.query ?? ''}`, {
    method: 'POST',
    station: init.station ?? 'alpha',
    body: isForm ? form : JSON.stringify(form),
    headers: { ...(isForm ? {} : { 'content-type': 'application/json' }), ...init.headers },
  });
}

/**
 * Waits for a job's final state the way a station does: with the station SDK, which follows the
 * job's live events (SSE) and falls back to polling. Dogfoods the client in every e2e test.
 */
export async function waitForFinal(
  sys: System,
  id: string,
  station: 'alpha' | 'beta' = 'alpha',
  timeoutMs = 30_000,
): Promise<JobStatusBody> {
  const client = new DarkroomClient({ baseUrl: sys.url, apiKey: STATIONS[station].key });
  return client.waitFor(id, { timeoutMs });
}

/** Waiting + active + finished job counts over every pipeline queue, straight from Redis via the API. */
export async function totalJobs(sys: System): Promise<number> {
  const res = await sys.fetch('/v1/queue', { station: null, headers: { authorization: 'Bearer admin-token-0123456789abcdef' } });
  const body = (await res.json()) as { pipelines: { waiting: { total: number }; active: number; completed: number; failed: number }[] };
  return body.pipelines.reduce((n, p) => n + p.waiting.total + p.active + p.completed + p.failed, 0);
}

export interface SseEvent {
  event: string;
  data: unknown;
}

/** Reads a Server-Sent Events stream to its end (or until `limit` events), parsing each event. */
export async function readSse(res: Response, opts: { limit?: number; onEvent?: (e: SseEvent) => void } = {}): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let idx = buf.indexOf('\n\n');
    while (idx >= 0) {
      const block = buf.slice(0, idx);
      buf = buf.slice(idx + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) {
        const e = { event, data: JSON.parse(data.join('\n')) as unknown };
        events.push(e);
        opts.onEvent?.(e);
        if (opts.limit && events.length >= opts.limit) {
          await reader.cancel();
          return events;
        }
      }
      idx = buf.indexOf('\n\n');
    }
  }
  return events;
}

/** A data directory of its own for each process (hosts that share no disk); `removeAll` deletes them. */
export function hostDirs() {
  const dirs: string[] = [];
  return {
    dirs,
    own(): string {
      const d = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-host-'));
      dirs.push(d);
      return d;
    },
    removeAll(): void {
      for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, which the browser tests drive with playwright-core. */
export const CHROMIUM = process.env.DARKROOM_CHROMIUM ?? '/usr/bin/chromium';

/** Headless Chromium as the browser tests run it. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

export interface WebhookDelivery {
  event: string;
  body: JobStatusBody;
}

/** A webhook receiver on a free local port: every delivery is kept in `deliveries`, answered 204. */
export async function startWebhookReceiver(): Promise<{ url: string; deliveries: WebhookDelivery[]; close: () => Promise<void> }> {
  const deliveries: WebhookDelivery[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      deliveries.push({ event: String(req.headers['darkroom-event']), body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    deliveries,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

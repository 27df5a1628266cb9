import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { DarkroomNetworkError } from './errors.ts';
import { backoffDelay, sleep } from './retry.ts';
import type { Transport } from './transport.ts';

/*
 * Streams a job's result to a file or a Writable, never holding it in memory. The bytes are
 * checked against the ETag (the sha256 of the result). A file is written under a temporary name
 * beside the destination and renamed into place only when complete and verified, so a reader
 * never sees a partial image; a transfer cut off mid-way is started again (the same retry policy).
 */

export interface DownloadOptions {
  /** An ETag from an earlier download: when it still matches, nothing is written (`notModified`). */
  ifNoneMatch?: string;
  signal?: AbortSignal;
  /** End the Writable when done (default true; false for process.stdout). */
  end?: boolean;
}

export interface DownloadResult {
  /** True when `ifNoneMatch` matched: the destination was left alone. */
  notModified: boolean;
  /** The file written (a path destination). */
  path?: string;
  bytes: number;
  contentType: string | undefined;
  etag: string | undefined;
  sha256: string | undefined;
}

export async function downloadResult(
  transport: Transport,
  id: string,
  destination: string | Writable,
  opts: DownloadOptions = {},
): Promise<DownloadResult> {
  if (typeof destination !== 'string') return transfer(transport, id, () => destination, opts);
  const dest = path.resolve(destination);
  for (let attempt = 1; ; attempt++) {
    const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.${randomUUID()}.part`);
    try {
      const result = await transfer(transport, id, () => fs.createWriteStream(tmp), opts);
      if (result.notModified) return result;
      await fs.promises.rename(tmp, dest);
      return { ...result, path: dest };
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      if (!(err instanceof DarkroomNetworkError) || attempt >= transport.retry.attempts || opts.signal?.aborted) throw err;
      await sleep(backoffDelay(attempt - 1, transport.retry), opts.signal);
    }
  }
}

/** One GET of the result; `open` is called only once there is something to write. */
async function transfer(transport: Transport, id: string, open: () => Writable, opts: DownloadOptions): Promise<DownloadResult> {
  const request = `GET /v1/jobs/${id}/result`;
  const res = await transport.send(
    {
      path: `/v1/jobs/${encodeURIComponent(id)}/result`,
      headers: { accept: '*/*', ...(opts.ifNoneMatch ? { 'if-none-match': opts.ifNoneMatch } : {}) },
      accept: [304],
      stream: true,
      signal: opts.signal,
    },
    async (r) => r,
  );
  const etag = res.headers.get('etag') ?? undefined;
  const contentType = res.headers.get('content-type') ?? undefined;
  if (res.status === 304) {
    await res.body?.cancel().catch(() => {});
    return { notModified: true, bytes: 0, contentType, etag, sha256: undefined };
  }
  const out = open();
  let writeError: unknown;
  out.once('error', (err) => {
    writeError = err;
  });
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  try {
    const body = res.body ? Readable.fromWeb(res.body as WebReadableStream<Uint8Array>) : Readable.from([]);
    await pipeline(body, tap, out, {
      end: opts.end !== false,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (writeError) throw writeError; // the destination's fault (disk full …), not the transfer's
    throw new DarkroomNetworkError(request, err);
  }
  const sha256 = hash.digest('hex');
  const expected = /^(?:W\/)?"([0-9a-f]{64})"$/.exec(etag ?? '')?.[1];
  if (expected && expected !== sha256) throw new DarkroomNetworkError(request, new Error('the bytes received do not match the ETag'));
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && !res.headers.has('content-encoding') && declared !== bytes) {
    throw new DarkroomNetworkError(request, new Error(`received ${bytes} of ${declared} bytes`));
  }
  return { notModified: false, bytes, contentType, etag, sha256 };
}

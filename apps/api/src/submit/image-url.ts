import type { IncomingMessage } from 'node:http';
import type { ImageSource } from '@darkroom/images';
import { InvalidImage, StoreUnavailable, UnsupportedImage } from '@darkroom/jobs';
import { type LookupFn, VettedGetError, vettedGet } from '@darkroom/webhooks';
import { HttpError } from '../http/problem.ts';
import { ImageSink, type Spool } from './parse.ts';

/*
 * A submit's `imageUrl`: the image fetched by the api through the webhooks' SSRF guard (public
 * addresses only, checked after resolution and on every redirect, the connection pinned to what
 * was checked), then collected exactly as an upload is (ImageSink: memory or a staged write,
 * hashed on the way), so the rest of the submit cannot tell the two apart.
 */

/** Why an `imageUrl` could not be used: the `code` of its field error. */
export type ImageUrlFailure = 'too_big' | 'not_an_image' | 'unreachable' | 'refused';

export const INPUT_USER_AGENT = 'Darkroom-Input/1';

/** A `422` naming `imageUrl`, with the reason's code. */
export function imageUrlFailed(code: ImageUrlFailure, message: string): HttpError {
  return new HttpError('invalid_image', `the image at imageUrl could not be used: ${message}`, {
    errors: [{ path: 'imageUrl', code, message }],
  });
}

/** An image refused by its content (as an upload would be, 415 or 422) is, fetched, `not_an_image`. */
export function asImageUrlFailure(err: unknown): unknown {
  if (err instanceof UnsupportedImage || err instanceof InvalidImage) return imageUrlFailed('not_an_image', err.message);
  return err;
}

export interface ImageUrlOptions {
  /** DARKROOM_MAX_UPLOAD_BYTES: refused on Content-Length, and past it while reading. */
  maxBytes: number;
  spool?: Spool | undefined;
  allowPrivate: boolean;
  /** The whole fetch: lookup, connection, redirects and body. */
  timeoutMs: number;
  /** For tests; defaults to DNS. */
  lookup?: LookupFn;
}

/**
 * Fetches the image. Throws the `422` of imageUrlFailed (or StoreUnavailable when a staged write
 * fails); on any failure nothing is left behind, and the answer is let go of at once.
 */
export async function fetchImageUrl(url: string, opts: ImageUrlOptions): Promise<{ image: ImageSource; sha256: string }> {
  const tooBig = () => imageUrlFailed('too_big', `the image is larger than the limit of ${opts.maxBytes} bytes`);
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(imageUrlFailed('unreachable', `no complete answer within ${opts.timeoutMs} ms`)),
    opts.timeoutMs,
  );
  let sink: ImageSink | undefined;
  let res: IncomingMessage | undefined;
  try {
    res = await vettedGet(url, {
      allowPrivate: opts.allowPrivate,
      signal: controller.signal,
      headers: { 'User-Agent': INPUT_USER_AGENT, Accept: 'image/*' },
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    });
    const declared = res.headers['content-length'];
    if (declared !== undefined && Number(declared) > opts.maxBytes) throw tooBig();
    const body = res;
    await new Promise<void>((resolve, reject) => {
      const cut = () =>
        reject(controller.signal.aborted ? controller.signal.reason : imageUrlFailed('unreachable', 'the answer ended early'));
      const collected = new ImageSink(opts.maxBytes, opts.spool, body, () => reject(new StoreUnavailable()));
      sink = collected;
      body.on('data', (c: Buffer) => {
        if (!collected.push(c)) reject(tooBig());
      });
      body.on('end', resolve);
      body.on('error', cut);
      body.on('close', () => {
        if (!body.complete) cut();
      });
    });
    return await sink!.finish();
  } catch (err) {
    res?.destroy();
    await sink?.discard().catch(() => {});
    if (err instanceof VettedGetError) throw imageUrlFailed(err.kind, err.message);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

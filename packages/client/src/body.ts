import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

/*
 * Turns what a station has (a file path, bytes, a stream) into a Blob that can be sent more than
 * once: a retried submit must send the same bytes again. A path becomes a file-backed Blob
 * (`fs.openAsBlob`), read from disk as it is sent and never held in memory; a stream is read
 * into memory once (images are at most tens of MiB).
 */

/** An input image: a file path, bytes, a Blob, or a stream of bytes (web or Node). */
export type ImageInput =
  | string
  | Buffer
  | Uint8Array
  | ArrayBuffer
  | Blob
  | WebReadableStream<Uint8Array>
  | Readable
  | AsyncIterable<Uint8Array>;

export interface ImagePart {
  blob: Blob;
  filename: string;
}

export async function toImagePart(image: ImageInput): Promise<ImagePart> {
  if (typeof image === 'string') return { blob: await fs.openAsBlob(image), filename: path.basename(image) };
  if (image instanceof Blob) return { blob: image, filename: 'name' in image && typeof image.name === 'string' ? image.name : 'image' };
  if (image instanceof Uint8Array || image instanceof ArrayBuffer) return { blob: new Blob([image]), filename: 'image' };
  const chunks: Uint8Array[] = [];
  const iterable: AsyncIterable<Uint8Array> =
    Symbol.asyncIterator in image ? (image as AsyncIterable<Uint8Array>) : readerIterable(image as WebReadableStream<Uint8Array>);
  for await (const chunk of iterable) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return { blob: new Blob(chunks), filename: 'image' };
}

async function* readerIterable(stream: WebReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

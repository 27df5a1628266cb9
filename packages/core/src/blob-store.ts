import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/*
 * Blobs are files under the data directory, written to a temporary name and renamed into place,
 * so a reader never sees half a file and a re-run replaces rather than duplicates. Keys are
 * relative paths built by Darkroom (never from client input). Kept behind this small interface so
 * an object-store backend can follow.
 */
export interface BlobStore {
  /** Writes bytes under `key` atomically; returns size and sha256. */
  put(key: string, data: Buffer): Promise<{ bytes: number; sha256: string }>;
  /** Moves a finished temporary file (from `tempPath()`) into place under `key`. */
  adopt(tempFile: string, key: string): Promise<void>;
  /** A path on the data volume for a temporary file that will be adopted or removed. */
  tempPath(): string;
  localPath(key: string): string;
  openRead(key: string, opts?: { start?: number }): ReadStream;
  exists(key: string): Promise<boolean>;
  delete(key: string): Promise<void>;
  ensureReady(): Promise<void>;
}

export class FsBlobStore implements BlobStore {
  readonly root: string;
  readonly #tmp: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.#tmp = path.join(this.root, 'tmp');
  }

  async ensureReady(): Promise<void> {
    await fs.mkdir(this.#tmp, { recursive: true });
    await fs.mkdir(path.join(this.root, 'inputs'), { recursive: true });
    await fs.mkdir(path.join(this.root, 'outputs'), { recursive: true });
  }

  localPath(key: string): string {
    const p = path.resolve(this.root, key);
    if (!p.startsWith(this.root + path.sep)) throw new Error(`blob key escapes the data directory: ${key}`);
    return p;
  }

  tempPath(): string {
    return path.join(this.#tmp, `${randomUUID()}.part`);
  }

  async put(key: string, data: Buffer): Promise<{ bytes: number; sha256: string }> {
    const tmp = this.tempPath();
    try {
      const fh = await fs.open(tmp, 'wx');
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.adopt(tmp, key);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
  }

  async adopt(tempFile: string, key: string): Promise<void> {
    const dest = this.localPath(key);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await fs.rename(tempFile, dest);
  }

  openRead(key: string, opts: { start?: number } = {}): ReadStream {
    return createReadStream(this.localPath(key), opts);
  }

  async exists(key: string): Promise<boolean> {
    try {
      await fs.access(this.localPath(key));
      return true;
    } catch {
      return false;
    }
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.localPath(key), { force: true });
  }
}

export const blobKeys = {
  input: (jobId: string) => `inputs/${jobId}`,
  output: (jobId: string, ext: string) => `outputs/${jobId}.${ext}`,
};

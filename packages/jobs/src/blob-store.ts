import crypto, { createHash, randomUUID } from 'node:crypto';
import { close, createReadStream, fdatasync, open, type ReadStream, write } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const fsOpen = promisify(open);
const fsWrite = (fd: number, b: Buffer, offset: number, length: number, position: null) =>
  new Promise<number>((resolve, reject) => write(fd, b, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
const fsFdatasync = promisify(fdatasync);
const fsClose = promisify(close);

/*
 * Blobs are files under the data directory, written to a temporary name and renamed into place,
 * so a reader never sees half a file and a re-run replaces rather than duplicates. Keys are
 * relative paths built by Darkroom (never from client input). Kept behind this small interface so
 * an object-store backend can follow.
 */
export interface BlobStore {
  /** Writes bytes under `key` atomically; returns size and sha256. */
  put(key: string, data: Buffer): Promise<{ bytes: number; sha256: string }>;
  /**
   * Writes a new blob under a key no one else writes (a fresh job id): straight to its name, no
   * temporary file, failing if it exists. The caller publishes the key only after this resolves,
   * so no reader sees a partial file; a crash midway leaves an orphan for the sweeper.
   */
  create(key: string, data: Buffer, opts?: { sync?: boolean }): Promise<void>;
  /** Moves a finished temporary file (from `tempPath()`) into place under `key`; `sync` flushes it to disk first. */
  adopt(tempFile: string, key: string, opts?: { sync?: boolean }): Promise<void>;
  /** A path on the data volume for a temporary file that will be adopted or removed; named after `forKey` if given. */
  tempPath(forKey?: string): string;
  /** Removes temporary files an earlier, interrupted write of `key` left behind; returns how many. */
  removeTemps(key: string): Promise<number>;
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

  tempPath(forKey?: string): string {
    return path.join(this.#tmp, `${forKey ? `${path.basename(forKey)}.` : ''}${randomUUID()}.part`);
  }

  /**
   * Removes temporary files left by earlier writes of `key` (a writer killed between writing and
   * renaming). Only for a caller that alone writes `key` now: a job's worker, holding its lock.
   */
  async removeTemps(key: string): Promise<number> {
    const prefix = `${path.basename(key)}.`;
    const names = (await fs.readdir(this.#tmp)).filter((n) => n.startsWith(prefix) && n.endsWith('.part'));
    await Promise.all(names.map((n) => fs.rm(path.join(this.#tmp, n), { force: true })));
    return names.length;
  }

  async put(key: string, data: Buffer): Promise<{ bytes: number; sha256: string }> {
    const tmp = this.tempPath(key);
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

  async create(key: string, data: Buffer, opts: { sync?: boolean } = {}): Promise<void> {
    const dest = this.localPath(key);
    // The callback API with a bare fd: fs/promises' FileHandle costs more than the write itself here.
    const fd = await fsOpen(dest, 'wx');
    try {
      let at = 0;
      while (at < data.length) at += await fsWrite(fd, data, at, data.length - at, null);
      if (opts.sync) await fsFdatasync(fd);
    } catch (err) {
      await fsClose(fd).catch(() => {});
      await fs.rm(dest, { force: true });
      throw err;
    }
    await fsClose(fd);
  }

  async adopt(tempFile: string, key: string, opts: { sync?: boolean } = {}): Promise<void> {
    const dest = this.localPath(key);
    if (opts.sync) {
      const fh = await fs.open(tempFile, 'r+');
      try {
        await fh.datasync();
      } finally {
        await fh.close();
      }
    }
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

/** sha256 of the bytes, hex; the one-shot form where Node has it (≥ 20.12). */
export function sha256Hex(data: Buffer): string {
  return typeof crypto.hash === 'function' ? crypto.hash('sha256', data, 'hex') : createHash('sha256').update(data).digest('hex');
}

export const blobKeys = {
  input: (jobId: string) => `inputs/${jobId}`,
  output: (jobId: string, ext: string) => `outputs/${jobId}.${ext}`,
};

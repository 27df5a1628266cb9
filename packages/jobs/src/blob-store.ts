import crypto, { createHash, randomUUID } from 'node:crypto';
import {
  close,
  createReadStream,
  createWriteStream,
  type Dir,
  fdatasync,
  constants as fsConstants,
  fstat,
  open,
  type WriteStream,
  write,
} from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { BlobNotFound } from './errors.ts';

const fsOpen = promisify(open);
const fsWrite = (fd: number, b: Buffer, offset: number, length: number, position: null) =>
  new Promise<number>((resolve, reject) => write(fd, b, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
const fsFdatasync = promisify(fdatasync);
const fsClose = promisify(close);

/*
 * Where images live: the data directory (FsBlobStore) or an S3-compatible bucket (S3BlobStore, in
 * s3-blob-store.ts). Either way a reader never sees half a blob and a re-run replaces rather than
 * duplicates. Keys are relative paths built by Darkroom (never from client input): `inputs/<id>`,
 * `outputs/<id>.<ext>`; temporary writes live under `tmp/`.
 */

/** A write whose key is chosen later (an upload still arriving): adopted under a key, or discarded. */
export interface StagedWrite {
  /** A local file holding the bytes as written, to read them back here; gone after adopt or discard. */
  readonly path: string;
  /** Where the bytes go as they arrive: 'finish' once all are stored, 'error' if they cannot be. */
  readonly out: Writable;
}

/** A stored blob as a local file (the blob's own file, or a copy): `release` once done with it. */
export interface LocalBlob {
  path: string;
  release(): Promise<void>;
}

/** One listed blob: its name under the listed directory and, where the listing gives it, when it was written. */
export interface BlobEntry {
  name: string;
  modifiedMs?: number;
}

export interface BlobStore {
  readonly kind: 'fs' | 's3';
  /** Writes bytes under `key` atomically (replacing any blob there); returns size and sha256. */
  put(key: string, data: Buffer): Promise<{ bytes: number; sha256: string }>;
  /**
   * Writes a new blob under a key no one else writes (a fresh job id). The caller publishes the
   * key only after this resolves, so no reader sees a partial blob; a crash midway leaves an
   * orphan for the sweeper. The file store refuses an existing key.
   */
  create(key: string, data: Buffer, opts?: { sync?: boolean }): Promise<void>;
  /** Starts a write whose key is given later (see StagedWrite); named after `forKey` if given. */
  stage(forKey?: string): StagedWrite;
  /** Moves a finished staged write (by its `path`) into place under `key`; `sync` flushes it to disk first. */
  adopt(stagedPath: string, key: string, opts?: { sync?: boolean }): Promise<void>;
  /** Drops a staged write (by its `path`) that will not be adopted: nothing of it stays behind. */
  discard(stagedPath: string): Promise<void>;
  /**
   * Copies the blob under `from` to a new key no one else writes (as `create`); rejects with
   * BlobNotFound when `from` is gone. The file store refuses an existing key.
   */
  copy(from: string, to: string): Promise<void>;
  /** Removes temporary files an earlier, interrupted write of `key` left behind; returns how many. */
  removeTemps(key: string): Promise<number>;
  /** The blob as a local file, for a reader that needs a path (a pipeline); `dir` is where a copy goes. Rejects with BlobNotFound. */
  fetch(key: string, opts?: { dir?: string }): Promise<LocalBlob>;
  /** The blob's bytes as a stream and its size; rejects with BlobNotFound or BlobStoreUnavailable. */
  openRead(key: string): Promise<{ body: Readable; bytes: number }>;
  exists(key: string): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** The blobs under `dir` ('inputs' or 'outputs'), a page at a time: never the whole listing at once. */
  list(dir: string): AsyncIterable<BlobEntry[]>;
  /** When the blob was last written (ms since the epoch); undefined when it is gone. */
  modifiedMs(key: string): Promise<number | undefined>;
  /** Removes temporary blobs older than `ageMs` (left by writers that died); returns how many. */
  sweepTemps(ageMs: number): Promise<number>;
  /** A short-lived URL a client can GET the blob from directly; only where the store can sign one. */
  presignGet?(key: string, opts: { expiresInSeconds: number; contentType?: string }): Promise<string>;
  ensureReady(): Promise<void>;
  close?(): void;
}

/** How many names one page of a file-store listing holds. */
const LIST_PAGE = 500;

export class FsBlobStore implements BlobStore {
  readonly kind = 'fs' as const;
  readonly root: string;
  readonly #tmp: string;
  /** Staged writes still open, by path, so a discard can wait for theirs to close. */
  readonly #staged = new Map<string, WriteStream>();

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

  async copy(from: string, to: string): Promise<void> {
    const dest = this.localPath(to);
    try {
      // A clone where the file system has them, else a plain copy; never over an existing blob.
      await fs.copyFile(this.localPath(from), dest, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFound(from);
      await fs.rm(dest, { force: true }).catch(() => {});
      throw err;
    }
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

  stage(forKey?: string): StagedWrite {
    const p = this.tempPath(forKey);
    const out = createWriteStream(p, { flags: 'wx' });
    this.#staged.set(p, out);
    out.once('close', () => this.#staged.delete(p));
    return { path: p, out };
  }

  async discard(stagedPath: string): Promise<void> {
    // The stream opens its file asynchronously: a discard right after stage() must wait for it
    // to close, or the file would appear after the removal.
    const out = this.#staged.get(stagedPath);
    if (out && !out.closed) {
      const closed = new Promise<void>((resolve) => out.once('close', () => resolve()));
      out.destroy();
      await closed;
    }
    await fs.rm(stagedPath, { force: true });
  }

  async fetch(key: string): Promise<LocalBlob> {
    const p = this.localPath(key);
    if (!(await this.exists(key))) throw new BlobNotFound(key);
    return { path: p, release: async () => {} };
  }

  openRead(key: string): Promise<{ body: Readable; bytes: number }> {
    const stream = createReadStream(this.localPath(key));
    return new Promise((resolve, reject) => {
      stream.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new BlobNotFound(key) : err));
      stream.once('open', (fd: number) => {
        fstat(fd, (err, st) => {
          if (!err) return resolve({ body: stream, bytes: st.size });
          stream.destroy();
          reject(err);
        });
      });
    });
  }

  async *list(dir: string): AsyncIterable<BlobEntry[]> {
    let handle: Dir;
    try {
      handle = await fs.opendir(this.localPath(dir), { bufferSize: 256 });
    } catch {
      return;
    }
    let page: BlobEntry[] = [];
    for await (const entry of handle) {
      if (!entry.isFile()) continue;
      page.push({ name: entry.name });
      if (page.length < LIST_PAGE) continue;
      yield page;
      page = [];
    }
    if (page.length > 0) yield page;
  }

  async modifiedMs(key: string): Promise<number | undefined> {
    const stat = await fs.stat(this.localPath(key)).catch(() => undefined);
    return stat?.isFile() ? stat.mtimeMs : undefined;
  }

  async sweepTemps(ageMs: number): Promise<number> {
    let removed = 0;
    for (const name of await fs.readdir(this.#tmp).catch(() => [] as string[])) {
      const file = path.join(this.#tmp, name);
      const stat = await fs.stat(file).catch(() => undefined);
      if (stat?.isFile() && Date.now() - stat.mtimeMs > ageMs) {
        await fs.rm(file, { force: true });
        removed++;
      }
    }
    return removed;
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

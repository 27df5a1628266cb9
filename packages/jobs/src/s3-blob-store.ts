import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BlobEntry, BlobStore, LocalBlob, StagedWrite } from './blob-store.ts';
import { BlobNotFound, BlobStoreUnavailable } from './errors.ts';

/*
 * Blobs as objects in an S3-compatible bucket, under an optional key prefix. A PUT replaces an
 * object whole and at once, so a reader never sees half a result and a re-run leaves one object.
 * An upload still arriving is sent as it comes (a multipart upload above one part) to a staging
 * object under `tmp/`, then copied under its job's key; a copy of its bytes stays on the local
 * disk only for the api to read the image's header. Credentials and region come from the SDK's
 * standard chain (AWS_* variables, profiles, instance roles).
 */

export interface S3BlobStoreOptions {
  bucket: string;
  /** Key prefix, empty or ending in '/'. */
  prefix?: string;
  endpoint?: string | undefined;
  forcePathStyle?: boolean;
  /** Local directory for staged copies and fetched inputs (the process's own data directory). */
  localDir: string;
  /** Extra client settings (tests: credentials and region). */
  client?: S3ClientConfig;
  /** Most keys (or multipart uploads) one listing request asks for; default 1000, the most S3 gives. */
  listPageSize?: number;
}

const PART_BYTES = 5 * 1024 * 1024;

interface Staged {
  key: string;
  out: Writable;
  upload: Upload;
  /** Settles once every byte is stored (or the upload failed). */
  done: Promise<unknown>;
  /** Settles once the local copy's file is closed. */
  fileClosed: Promise<void>;
}

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  readonly #tmp: string;
  readonly #staged = new Map<string, Staged>();
  readonly #pageSize: number;

  constructor(opts: S3BlobStoreOptions) {
    this.bucket = opts.bucket;
    this.#pageSize = opts.listPageSize ?? 1000;
    this.prefix = opts.prefix ?? '';
    this.#tmp = path.join(path.resolve(opts.localDir), 'tmp');
    this.client = new S3Client({
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      forcePathStyle: opts.forcePathStyle ?? false,
      // Checksums only where an operation requires them: S3-compatible stores (Swift, older MinIO
      // and Ceph) refuse the streaming checksum bodies current SDKs send by default.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      ...opts.client,
    });
  }

  #key(key: string): string {
    if (key === '' || key.split('/').some((s) => s === '' || s === '.' || s === '..')) throw new Error(`bad blob key: ${key}`);
    return this.prefix + key;
  }

  async #call<T>(what: string, fn: () => Promise<T>, key?: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.#translate(err, what, key);
    }
  }

  #translate(err: unknown, what: string, key?: string): Error {
    if (err instanceof BlobNotFound || err instanceof BlobStoreUnavailable) return err;
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (key !== undefined && (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404)) {
      return new BlobNotFound(key);
    }
    return new BlobStoreUnavailable(`the object store could not ${what} (${e.name ?? 'error'})`, { cause: err });
  }

  async ensureReady(): Promise<void> {
    await fs.mkdir(this.#tmp, { recursive: true });
    await this.#call('be reached', () =>
      this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, MaxKeys: 1 })),
    );
  }

  async put(key: string, data: Buffer): Promise<{ bytes: number; sha256: string }> {
    await this.#call('store the object', () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.#key(key), Body: data, ContentLength: data.length })),
    );
    return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
  }

  async create(key: string, data: Buffer): Promise<void> {
    // No conditional create on every S3-compatible store: the key is a fresh job id no one else writes.
    await this.put(key, data);
  }

  async copy(from: string, to: string): Promise<void> {
    await this.#call(
      'copy the object',
      () =>
        this.client.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: this.#key(to),
            CopySource: `${this.bucket}/${encodeURIComponent(this.#key(from)).replace(/%2F/g, '/')}`,
          }),
        ),
      from,
    );
  }

  stage(forKey?: string): StagedWrite {
    const name = `${forKey ? `${path.basename(forKey)}.` : ''}${randomUUID()}.part`;
    const local = path.join(this.#tmp, name);
    const key = this.#key(`tmp/${name}`);
    const file = createWriteStream(local, { flags: 'wx' });
    const body = new PassThrough({ highWaterMark: PART_BYTES });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: body },
      partSize: PART_BYTES,
      queueSize: 2,
      leavePartsOnError: false,
    });
    const done = upload.done();
    done.catch(() => {});
    const fileClosed = new Promise<void>((resolve, reject) => {
      file.once('close', resolve);
      file.once('error', reject);
    });
    fileClosed.catch(() => {});
    const out = new Writable({
      highWaterMark: 256 * 1024,
      write: (chunk: Buffer, _enc, cb) => {
        let waiting = 2;
        let failed = false;
        const one = (err?: Error | null) => {
          if (failed) return;
          if (err) {
            failed = true;
            return cb(err);
          }
          if (--waiting === 0) cb();
        };
        file.write(chunk, one);
        if (body.write(chunk)) one();
        else body.once('drain', () => one());
      },
      final: (cb) => {
        file.end();
        body.end();
        Promise.all([fileClosed, done]).then(
          () => cb(),
          (err: unknown) => cb(this.#translate(err, 'store the upload')),
        );
      },
      destroy: (err, cb) => {
        file.destroy();
        body.destroy();
        cb(err);
      },
    });
    this.#staged.set(local, { key, out, upload, done, fileClosed });
    // An upload that fails midway fails the write at once, so the sender is answered without waiting for the end.
    done.catch((err: unknown) => out.destroy(this.#translate(err, 'store the upload')));
    fileClosed.catch((err: Error) => out.destroy(err));
    return { path: local, out };
  }

  async adopt(stagedPath: string, key: string): Promise<void> {
    const staged = this.#staged.get(stagedPath);
    if (!staged) {
      // A local file written some other way: sent as it is read.
      await this.#call('store the object', () =>
        new Upload({
          client: this.client,
          params: { Bucket: this.bucket, Key: this.#key(key), Body: createReadStream(stagedPath) },
          partSize: PART_BYTES,
          queueSize: 2,
          leavePartsOnError: false,
        }).done(),
      );
      await fs.rm(stagedPath, { force: true });
      return;
    }
    await this.#call('store the upload', () => staged.done);
    await this.#call('store the object', () =>
      this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: this.#key(key),
          CopySource: `${this.bucket}/${encodeURIComponent(staged.key).replace(/%2F/g, '/')}`,
        }),
      ),
    );
    await this.discard(stagedPath);
  }

  async discard(stagedPath: string): Promise<void> {
    const staged = this.#staged.get(stagedPath);
    this.#staged.delete(stagedPath);
    if (!staged) {
      await fs.rm(stagedPath, { force: true });
      return;
    }
    staged.out.on('error', () => {}); // the abort below fails the write: no one listens any more
    staged.out.destroy();
    // The local copy opens asynchronously: removed before it has closed, it would appear afterwards.
    await staged.fileClosed.catch(() => {});
    await fs.rm(stagedPath, { force: true });
    await staged.upload.abort().catch(() => {});
    await staged.done.catch(() => {});
    await this.#call('remove the object', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: staged.key })));
  }

  async removeTemps(): Promise<number> {
    return 0; // a PUT is whole or nothing: an interrupted one leaves no object
  }

  async fetch(key: string, opts: { dir?: string } = {}): Promise<LocalBlob> {
    const dir = opts.dir ?? this.#tmp;
    const local = path.join(dir, `${path.basename(key)}.${randomUUID()}.in`);
    const { body } = await this.openRead(key);
    try {
      await pipeline(body, createWriteStream(local, { flags: 'wx' }));
    } catch (err) {
      await fs.rm(local, { force: true });
      throw this.#translate(err, 'read the object', key);
    }
    return { path: local, release: () => fs.rm(local, { force: true }) };
  }

  async openRead(key: string): Promise<{ body: Readable; bytes: number }> {
    const r = await this.#call(
      'read the object',
      () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key) })),
      key,
    );
    return { body: r.Body as Readable, bytes: r.ContentLength ?? 0 };
  }

  async exists(key: string): Promise<boolean> {
    return (await this.modifiedMs(key)) !== undefined;
  }

  async modifiedMs(key: string): Promise<number | undefined> {
    try {
      const r = await this.#call(
        'read the object',
        () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(key) })),
        key,
      );
      return r.LastModified?.getTime() ?? Date.now();
    } catch (err) {
      if (err instanceof BlobNotFound) return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.#call('remove the object', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(key) })));
  }

  async *list(dir: string): AsyncIterable<BlobEntry[]> {
    const base = this.#key(dir) + '/';
    let token: string | undefined;
    do {
      const r = await this.#call('list objects', () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, MaxKeys: this.#pageSize, ContinuationToken: token }),
        ),
      );
      const page: BlobEntry[] = [];
      for (const o of r.Contents ?? []) {
        const name = o.Key!.slice(base.length);
        if (name === '' || name.includes('/')) continue;
        page.push({ name, ...(o.LastModified ? { modifiedMs: o.LastModified.getTime() } : {}) });
      }
      if (page.length > 0) yield page;
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async sweepTemps(ageMs: number): Promise<number> {
    let removed = 0;
    const cutoff = Date.now() - ageMs;
    for await (const page of this.list('tmp')) {
      for (const e of page) {
        if ((e.modifiedMs ?? Date.now()) < cutoff) {
          await this.delete(`tmp/${e.name}`);
          removed++;
        }
      }
    }
    // Multipart uploads a dying api never completed hold parts, not objects; listed a page at a time too.
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const uploads = await this.client
        .send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.#key('tmp') + '/',
            MaxUploads: this.#pageSize,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        )
        .catch(() => undefined);
      for (const u of uploads?.Uploads ?? []) {
        if (u.Initiated && u.Initiated.getTime() < cutoff && u.Key && u.UploadId) {
          await this.client
            .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }))
            .catch(() => {});
          removed++;
        }
      }
      // A store that does not move its markers on would list the same page forever.
      const more =
        uploads?.IsTruncated &&
        (uploads.NextKeyMarker !== keyMarker || uploads.NextUploadIdMarker !== uploadIdMarker) &&
        (uploads.NextKeyMarker || uploads.NextUploadIdMarker);
      keyMarker = more ? uploads.NextKeyMarker : undefined;
      uploadIdMarker = more ? uploads.NextUploadIdMarker : undefined;
    } while (keyMarker || uploadIdMarker);
    for (const name of await fs.readdir(this.#tmp).catch(() => [] as string[])) {
      const file = path.join(this.#tmp, name);
      const stat = await fs.stat(file).catch(() => undefined);
      if (stat?.isFile() && stat.mtimeMs < cutoff && !this.#staged.has(file)) {
        await fs.rm(file, { force: true });
        removed++;
      }
    }
    return removed;
  }

  presignGet(key: string, opts: { expiresInSeconds: number; contentType?: string }): Promise<string> {
    return getSignedUrl(
      this.client,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: this.#key(key),
        ...(opts.contentType ? { ResponseContentType: opts.contentType } : {}),
      }),
      { expiresIn: opts.expiresInSeconds },
    );
  }

  close(): void {
    this.client.destroy();
  }
}

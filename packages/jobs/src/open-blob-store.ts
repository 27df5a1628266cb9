import type { Config } from '@darkroom/runtime';
import { type BlobStore, FsBlobStore } from './blob-store.ts';
import { S3BlobStore } from './s3-blob-store.ts';

/** The blob store the configuration names: the data directory (the default) or an S3-compatible bucket. */
export function openBlobStore(config: Config): BlobStore {
  const { kind, s3 } = config.blobStore;
  if (kind === 'fs') return new FsBlobStore(config.dataDir);
  return new S3BlobStore({
    bucket: s3.bucket,
    prefix: s3.prefix,
    endpoint: s3.endpoint,
    forcePathStyle: s3.forcePathStyle,
    localDir: config.dataDir,
  });
}

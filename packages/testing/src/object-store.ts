import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, uniquePrefix } from './redis.ts';

/*
 * A real S3-compatible object store for tests, never a fake: a one-node, one-replica OpenStack
 * Swift with its s3api middleware (Debian: swift-proxy swift-object swift-container swift-account
 * memcached), on a temporary directory and ephemeral loopback ports, one per test file. Its
 * servers are stopped by PID. Swift's S3 layer wants what older MinIO and Ceph want of the AWS
 * SDK: path-style addressing and checksums only when required (see `s3ClientOptions`). Its
 * gatekeeper lets a request carry its own X-Timestamp, so a test can write an object (or start a
 * multipart upload) that looks written long ago: S3 has no way to set a LastModified.
 */

export interface ObjectStoreHandle {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Options for `new S3Client(...)` that this server answers. */
  s3ClientOptions(): {
    endpoint: string;
    region: string;
    forcePathStyle: true;
    credentials: { accessKeyId: string; secretAccessKey: string };
    requestChecksumCalculation: 'WHEN_REQUIRED';
    responseChecksumValidation: 'WHEN_REQUIRED';
  };
  /** The environment a Darkroom process needs to use this store (the SDK's standard variables plus Darkroom's). */
  env(bucket: string, prefix?: string): Record<string, string>;
  /** A fresh, empty bucket (created on the server). */
  createBucket(name?: string): Promise<string>;
  /** Writes an object whose LastModified (in listings) is `at`, in the past or the future. */
  putAt(bucket: string, key: string, body: string | Buffer, at: Date): Promise<void>;
  /** Starts a multipart upload, never completed, whose Initiated time is `at`; returns its UploadId. */
  startUploadAt(bucket: string, key: string, at: Date): Promise<string>;
  /** The multipart uploads in progress under `prefix`, as `key` strings. */
  listUploads(bucket: string, prefix?: string): Promise<string[]>;
  /** Every key in the bucket (one page of up to 1000: tests hold few objects). */
  listKeys(bucket: string, prefix?: string): Promise<string[]>;
  /** Stops the front server (the proxy) at once, as an outage would: requests are refused until `up()`. The objects stay. */
  down(): Promise<void>;
  /** Starts the front server again on the same port and waits until it answers. */
  up(): Promise<void>;
  stop(): Promise<void>;
  /** The servers' logs, for a failing test to show. */
  logs(): string;
}

const PACKAGES = 'swift-proxy swift-object swift-container swift-account memcached';

export function hasObjectStoreServer(): boolean {
  return ['swift-proxy-server', 'swift-object-server', 'swift-container-server', 'swift-account-server', 'memcached'].every(
    (bin) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0,
  );
}

export async function startObjectStore(): Promise<ObjectStoreHandle> {
  if (!hasObjectStoreServer()) {
    throw new Error(`tests need an S3-compatible store: apt-get install -y --no-install-recommends ${PACKAGES}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-swift-'));
  const devices = path.join(dir, 'srv');
  fs.mkdirSync(path.join(devices, 'd1'), { recursive: true });
  const logDir = path.join(dir, 'log');
  fs.mkdirSync(logDir);
  const [proxy, object, container, account, memcache] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);

  fs.writeFileSync(
    path.join(dir, 'swift.conf'),
    `[swift-hash]\nswift_hash_path_suffix = ${uniquePrefix('s')}\nswift_hash_path_prefix = ${uniquePrefix('p')}\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n`,
  );
  for (const [ring, port] of [
    ['account', account],
    ['container', container],
    ['object', object],
  ] as const) {
    const builder = path.join(dir, `${ring}.builder`);
    for (const args of [['create', '10', '1', '1'], ['add', `r1z1-127.0.0.1:${port}/d1`, '1'], ['rebalance']]) {
      const r = spawnSync('swift-ring-builder', [builder, ...args], { cwd: dir, encoding: 'utf8' });
      // rebalance answers 1 for a warning (a single device); 2 is an error.
      if (r.status !== 0 && !(args[0] === 'rebalance' && r.status === 1)) {
        throw new Error(`swift-ring-builder ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
      }
    }
  }
  const common = (port: number) =>
    `[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = ${port}\nworkers = 0\nswift_dir = ${dir}\ndevices = ${devices}\nmount_check = false\nlog_facility = LOG_LOCAL0\nlog_level = WARNING\n`;
  const backend = (kind: 'account' | 'container' | 'object', port: number) =>
    `${common(port)}\n[pipeline:main]\npipeline = ${kind}-server\n\n[app:${kind}-server]\nuse = egg:swift#${kind}\n\n` +
    `[${kind}-replicator]\n\n[${kind}-updater]\n\n[${kind}-auditor]\n`;
  fs.writeFileSync(path.join(dir, 'account-server.conf'), backend('account', account));
  fs.writeFileSync(path.join(dir, 'container-server.conf'), backend('container', container));
  fs.writeFileSync(path.join(dir, 'object-server.conf'), backend('object', object));
  fs.writeFileSync(
    path.join(dir, 'proxy-server.conf'),
    `${common(proxy)}
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
# The backends are single processes on a machine busy with the rest of the suite: the default
# 0.5 s to connect makes the proxy answer 503 (s3api's "SlowDown") under load.
conn_timeout = 5
node_timeout = 30

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${memcache}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
# A test may back-date what it writes (putAt, startUploadAt).
shunt_inbound_x_timestamp = false
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
`,
  );

  const procs: ChildProcess[] = [];
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, EVENTLET_NO_GREENDNS: 'yes', PYTHONDONTWRITEBYTECODE: '1' };
  const start = (name: string, cmd: string, args: string[]) => {
    const out = fs.openSync(path.join(logDir, `${name}.log`), 'a');
    const p = spawn(cmd, args, { cwd: dir, env, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    procs.push(p);
    return p;
  };
  const kill = (p: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  const stop = async () => {
    await Promise.all(procs.map(kill));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  let proxyProc: ChildProcess | undefined;
  const startProxy = async () => {
    proxyProc = start('proxy', 'swift-proxy-server', [path.join(dir, 'proxy-server.conf')]);
    await waitForHealth(`http://127.0.0.1:${proxy}/healthcheck`, procs, 30_000);
  };
  const logs = () =>
    fs.existsSync(logDir)
      ? fs
          .readdirSync(logDir)
          .map((f) => `--- ${f}\n${fs.readFileSync(path.join(logDir, f), 'utf8').slice(-4000)}`)
          .join('\n')
      : '';
  live.add(procs);
  try {
    start('memcached', 'memcached', ['-l', '127.0.0.1', '-p', String(memcache), '-U', '0', '-m', '16', '-u', 'root']);
    for (const kind of ['account', 'container', 'object'] as const) {
      start(kind, `swift-${kind}-server`, [path.join(dir, `${kind}-server.conf`)]);
    }
    await startProxy();
  } catch (err) {
    const text = logs();
    await stop();
    live.delete(procs);
    throw new Error(`${(err as Error).message}\n${text}`);
  }

  const endpoint = `http://127.0.0.1:${proxy}`;
  const region = 'us-east-1';
  const accessKeyId = 'test:tester';
  const secretAccessKey = 'testing';
  const s3ClientOptions = () => ({
    endpoint,
    region,
    forcePathStyle: true as const,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  });
  const { S3Client, CreateBucketCommand, CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectsV2Command } = await import(
    '@aws-sdk/client-s3'
  );
  const client = new S3Client(s3ClientOptions());
  const swiftTimestamp = (at: Date) => (at.getTime() / 1000).toFixed(5);
  // Swift's own API (tempauth), for what S3 cannot say: when an object was written.
  const swiftAuth = async () => {
    const res = await fetch(`${endpoint}/auth/v1.0`, { headers: { 'x-auth-user': accessKeyId, 'x-auth-key': secretAccessKey } });
    const storageUrl = res.headers.get('x-storage-url');
    const token = res.headers.get('x-auth-token');
    if (!res.ok || !storageUrl || !token) throw new Error(`Swift refused its test user (${res.status})`);
    return { storageUrl, token };
  };
  // The first request may meet a backend that is still binding its port.
  const retry = async <T>(fn: () => Promise<T>): Promise<T> => {
    for (let i = 0; ; i++) {
      try {
        return await fn();
      } catch (err) {
        if (i >= 40) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  return {
    endpoint,
    region,
    accessKeyId,
    secretAccessKey,
    s3ClientOptions,
    env: (bucket, prefix = '') => ({
      DARKROOM_BLOB_STORE: 's3',
      DARKROOM_S3_BUCKET: bucket,
      DARKROOM_S3_PREFIX: prefix,
      DARKROOM_S3_ENDPOINT: endpoint,
      DARKROOM_S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
      AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
    }),
    createBucket: async (name = uniquePrefix('bucket')) => {
      await retry(() => client.send(new CreateBucketCommand({ Bucket: name })));
      return name;
    },
    putAt: async (bucket, key, body, at) => {
      const { storageUrl, token } = await swiftAuth();
      const path = key.split('/').map(encodeURIComponent).join('/');
      const res = await fetch(`${storageUrl}/${bucket}/${path}`, {
        method: 'PUT',
        headers: { 'x-auth-token': token, 'x-timestamp': swiftTimestamp(at) },
        body: typeof body === 'string' ? body : new Uint8Array(body),
      });
      if (res.status !== 201) throw new Error(`Swift refused to write ${key} (${res.status})`);
    },
    startUploadAt: async (bucket, key, at) => {
      const command = new CreateMultipartUploadCommand({ Bucket: bucket, Key: key });
      command.middlewareStack.add(
        (next) => async (args) => {
          (args.request as { headers: Record<string, string> }).headers['x-timestamp'] = swiftTimestamp(at);
          return next(args);
        },
        { step: 'build' },
      );
      const r = await client.send(command);
      return r.UploadId!;
    },
    listUploads: async (bucket, prefix) => {
      const r = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, ...(prefix ? { Prefix: prefix } : {}) }));
      return (r.Uploads ?? []).map((u) => u.Key!).sort();
    },
    listKeys: async (bucket, prefix) => {
      const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, ...(prefix ? { Prefix: prefix } : {}) }));
      return (r.Contents ?? []).map((o) => o.Key!).sort();
    },
    down: async () => {
      const p = proxyProc;
      if (!p) return;
      proxyProc = undefined;
      await kill(p);
      procs.splice(procs.indexOf(p), 1);
    },
    up: async () => {
      if (!proxyProc) await startProxy();
    },
    stop: async () => {
      client.destroy();
      await stop();
      live.delete(procs);
    },
    logs,
  };
}

const live = new Set<ChildProcess[]>();
process.on('exit', () => {
  for (const procs of live) for (const p of procs) p.kill('SIGKILL');
});

async function waitForHealth(url: string, procs: ChildProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = procs.find((p) => p.exitCode !== null);
    if (dead) throw new Error(`a Swift server exited (${dead.spawnfile}, code ${dead.exitCode})`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`Swift did not answer at ${url} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

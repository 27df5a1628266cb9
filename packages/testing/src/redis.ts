import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

/*
 * A real Redis for tests, never a mock. In order of preference:
 * 1. DARKROOM_TEST_REDIS_URL, shared, each test isolated by its own key prefix;
 * 2. a private `redis-server` on an ephemeral port, one per test file (the usual case);
 * 3. Testcontainers, where a Docker engine answers and no redis-server is installed.
 */

export interface RedisHandle {
  url: string;
  port: number;
  /** True for a private server the test may kill and restart. */
  private: boolean;
  /** Stops the server (SIGKILL when `hard`). A private server only. */
  kill(hard?: boolean): Promise<void>;
  /** Starts it again on the same port, with the same data directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisOptions {
  /** Append-only persistence (for crash tests), with `appendfsync always` when 'always'. */
  appendonly?: boolean | 'always';
  /** Refuse the shared URL: the test kills the server. */
  needPrivate?: boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function uniquePrefix(label = 't'): string {
  return `${label}${randomBytes(5).toString('hex')}`;
}

function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisHandle> {
  const shared = process.env.DARKROOM_TEST_REDIS_URL;
  if (shared && !opts.needPrivate) {
    const port = Number(new URL(shared).port || 6379);
    const unsupported = async () => {
      throw new Error('the shared test Redis cannot be stopped or restarted');
    };
    return { url: shared, port, private: false, kill: unsupported, restart: unsupported, stop: async () => {} };
  }
  if (hasRedisServer()) return startPrivateRedis(opts);
  return startContainerRedis();
}

async function startPrivateRedis(opts: RedisOptions): Promise<RedisHandle> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--logfile', path.join(dir, 'redis.log')];
  if (opts.appendonly) {
    args.push('--appendonly', 'yes', '--appendfsync', opts.appendonly === 'always' ? 'always' : 'everysec');
  } else {
    args.push('--appendonly', 'no');
  }
  let proc: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}`;
  const start = async () => {
    proc = spawn('redis-server', args, { stdio: 'ignore' });
    await waitForPing(url, 10_000);
  };
  const kill = async (hard = true) => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
  };
  await start();
  return {
    url,
    port,
    private: true,
    kill,
    restart: start,
    stop: async () => {
      await kill(true);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startContainerRedis(): Promise<RedisHandle> {
  let mod: typeof import('@testcontainers/redis');
  try {
    mod = await import('@testcontainers/redis');
  } catch {
    throw new Error('tests need Redis: install redis-server (apt-get install redis-server), or set DARKROOM_TEST_REDIS_URL');
  }
  const container = await new mod.RedisContainer('redis:7').start();
  const url = container.getConnectionUrl();
  const port = Number(new URL(url).port);
  return {
    url,
    port,
    private: true,
    kill: async () => {
      await container.stop();
    },
    restart: async () => {
      throw new Error('restart is not supported for container Redis');
    },
    stop: async () => {
      await container.stop();
    },
  };
}

export async function waitForPing(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      return;
    } catch {
      r.disconnect();
      if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer within ${timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

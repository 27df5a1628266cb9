import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, type ProcessHandle, REPO_ROOT, type RedisHandle, spawnApp, startRedis } from '../../packages/testing/src/index.ts';
import { sleep } from './stats.ts';

/*
 * The system under test: a private redis-server, the real api and worker processes (spawned as a
 * deployment runs them), configured for measuring: warn-level logs, no per-station or per-queue
 * caps (the submit benchmarks fill the queues far past them), and aging/expiry pushed out of
 * the way so housekeeping does not change jobs while a figure is taken.
 */

export const BENCH_STATION = { name: 'bench', key: 'bench-key-0123456789abcdef0123' };
export const BENCH_ADMIN = 'bench-admin-0123456789abcdef0123';
export const PREFIX = 'darkroom';

export interface BenchSystem {
  redis: RedisHandle;
  dataDir: string;
  env: Record<string, string>;
  api?: ProcessHandle & { port: number };
  worker?: ProcessHandle & { metricsPort: number };
  startApi(extra?: Record<string, string>): Promise<ProcessHandle & { port: number }>;
  stopApi(): Promise<void>;
  startWorker(extra?: Record<string, string>): Promise<ProcessHandle & { metricsPort: number }>;
  stopWorker(): Promise<void>;
  /** An api process beside `api`; the caller stops it with stopGracefully. */
  spawnApi(extra?: Record<string, string>): Promise<ProcessHandle & { port: number }>;
  /** A worker process beside `worker` (a fleet); the caller stops it with stopGracefully. */
  spawnWorker(extra?: Record<string, string>): Promise<ProcessHandle & { metricsPort: number }>;
  stop(): Promise<void>;
}

/** `dataRoot`: where the data directory is made (`--data-dir`); the OS temp directory by default. */
export async function startBenchSystem(opts: { dataRoot?: string } = {}): Promise<BenchSystem> {
  const root = path.resolve(opts.dataRoot ?? os.tmpdir());
  fs.mkdirSync(root, { recursive: true });
  const redis = await startRedis({ needPrivate: true });
  const dataDir = fs.mkdtempSync(path.join(root, 'darkroom-bench-data-'));
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    DARKROOM_REDIS_PREFIX: PREFIX,
    DARKROOM_DATA_DIR: dataDir,
    DARKROOM_API_KEYS: `${BENCH_STATION.name}:${BENCH_STATION.key}`,
    DARKROOM_ADMIN_TOKEN: BENCH_ADMIN,
    DARKROOM_LOG_LEVEL: 'warn',
    DARKROOM_STATION_MAX_PENDING: 'off',
    DARKROOM_MAX_QUEUE_SIZE: 'off',
    // Housekeeping would promote or expire the 100k queued jobs during a long run.
    DARKROOM_MAX_WAIT_SECONDS: '86400',
    DARKROOM_JOB_TTL_SECONDS: '86400',
  };
  const sys: BenchSystem = {
    redis,
    dataDir,
    env,
    startApi: async (extra = {}) => {
      sys.api = await sys.spawnApi(extra);
      return sys.api;
    },
    stopApi: async () => {
      const h = sys.api;
      sys.api = undefined;
      if (h) await stopGracefully(h);
    },
    startWorker: async (extra = {}) => {
      sys.worker = await sys.spawnWorker(extra);
      return sys.worker;
    },
    stopWorker: async () => {
      const h = sys.worker;
      sys.worker = undefined;
      if (h) await stopGracefully(h);
    },
    spawnApi: async (extra = {}) => {
      const port = await freePort();
      const h = spawnApp('api', { ...env, PORT: String(port), ...extra });
      await waitHttp(h, `http://127.0.0.1:${port}/readyz`);
      return Object.assign(h, { port });
    },
    spawnWorker: async (extra = {}) => {
      const metricsPort = await freePort();
      const h = spawnApp('worker', {
        ...env,
        DARKROOM_WORKER_NAME: 'bench-worker',
        DARKROOM_WORKER_METRICS_PORT: String(metricsPort),
        ...extra,
      });
      // The metrics server starts listening just before the BullMQ workers start running.
      await waitHttp(h, `http://127.0.0.1:${metricsPort}/healthz`);
      return Object.assign(h, { metricsPort });
    },
    stop: async () => {
      await Promise.allSettled([sys.stopApi(), sys.stopWorker()]);
      await redis.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return sys;
}

/** SIGTERM (so a CPU profile is written on the way out), SIGKILL if it lingers. */
export async function stopGracefully(h: ProcessHandle): Promise<void> {
  const killer = setTimeout(() => h.proc.kill('SIGKILL'), 20_000);
  await h.stop('SIGTERM');
  clearTimeout(killer);
}

async function waitHttp(h: ProcessHandle, url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (h.proc.exitCode !== null || h.proc.signalCode !== null) {
      throw new Error(`${h.kind} exited during start; output:\n${h.output().slice(-4000)}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(`${h.kind} did not answer ${url} within ${timeoutMs} ms; output:\n${h.output().slice(-4000)}`);
    await sleep(100);
  }
}

/**
 * A bare BullMQ worker in a process of its own (bench/lib/bare-worker.ts), the baseline for the
 * dispatch and duty-cycle figures.
 */
export async function startBareWorker(redisUrl: string, prefix: string, queue: string): Promise<{ stop(): Promise<void> }> {
  return spawnBaseline('bare-worker.ts', { BENCH_REDIS_URL: redisUrl, BENCH_PREFIX: prefix, BENCH_QUEUE: queue });
}

/** The HTTP floor (bench/lib/bare-http.ts): node:http + Queue.add in a process of its own. */
export async function startBareHttp(
  redisUrl: string,
  prefix: string,
  dataDir: string,
): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  return spawnBaseline('bare-http.ts', { BENCH_REDIS_URL: redisUrl, BENCH_PREFIX: prefix, BENCH_DATA_DIR: dataDir });
}

async function spawnBaseline(file: string, env: Record<string, string>): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const entry = path.join(REPO_ROOT, 'bench/lib', file);
  const proc = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ready ?(\d*)\n/.exec(out);
      if (m) resolve(Number(m[1] || 0));
    });
    proc.once('exit', (code) => reject(new Error(`${file} exited (${code}) before it was ready`)));
  });
  return {
    port,
    pid: proc.pid!,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ProcessHandle, startApi, startWorker } from './processes.ts';
import { freePort, type RedisHandle, type RedisOptions, startRedis, uniquePrefix } from './redis.ts';

/*
 * A whole Darkroom for an end-to-end test: a real Redis, the api and workers as separate
 * processes, a private data directory, and two stations with keys.
 */

export const STATIONS = {
  alpha: { name: 'alpha', key: 'alpha-key-0123456789abcdef' },
  beta: { name: 'beta', key: 'beta-key-0123456789abcdef' },
} as const;
export const ADMIN_TOKEN = 'admin-token-0123456789abcdef';

export interface SystemOptions {
  redis?: RedisOptions;
  /** Extra environment for the api and every worker. */
  env?: Record<string, string>;
  apiEnv?: Record<string, string>;
  workerEnv?: Record<string, string>;
  /** Workers to start (default 1); 0 for none. */
  workers?: number;
  /** An existing directory to use as the data volume (kept on stop); default a fresh temporary one. */
  dataDir?: string;
}

export interface System {
  url: string;
  redis: RedisHandle;
  prefix: string;
  dataDir: string;
  env: Record<string, string>;
  api: ProcessHandle;
  workers: ProcessHandle[];
  addWorker(env?: Record<string, string>): Promise<ProcessHandle>;
  restartApi(): Promise<void>;
  stop(): Promise<void>;
  /** Fetch as a station (default alpha). */
  fetch(pathname: string, init?: RequestInit & { station?: keyof typeof STATIONS | null }): Promise<Response>;
}

export async function startSystem(opts: SystemOptions = {}): Promise<System> {
  const redis = await startRedis(opts.redis);
  const port = await freePort();
  const prefix = uniquePrefix('e2e');
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-data-'));
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    DARKROOM_REDIS_PREFIX: prefix,
    DARKROOM_DATA_DIR: dataDir,
    DARKROOM_API_KEYS: Object.values(STATIONS)
      .map((s) => `${s.name}:${s.key}`)
      .join(','),
    DARKROOM_ADMIN_TOKEN: ADMIN_TOKEN,
    DARKROOM_RETRY_BACKOFF_MS: '200',
    DARKROOM_LOG_LEVEL: 'info',
    // Several workers share this host: each takes a free port for its metrics.
    DARKROOM_WORKER_METRICS_PORT: '0',
    ...opts.env,
  };
  const url = `http://127.0.0.1:${port}`;
  const apiEnv = { ...env, PORT: String(port), ...opts.apiEnv };
  let api = await startApi(apiEnv);
  const workers: ProcessHandle[] = [];
  const addWorker = async (extra: Record<string, string> = {}) => {
    const w = await startWorker({ ...env, DARKROOM_WORKER_NAME: `w${workers.length + 1}`, ...opts.workerEnv, ...extra });
    workers.push(w);
    return w;
  };
  for (let i = 0; i < (opts.workers ?? 1); i++) await addWorker();
  const sys: System = {
    url,
    redis,
    prefix,
    dataDir,
    env,
    get api() {
      return api;
    },
    workers,
    addWorker,
    restartApi: async () => {
      await api.stop('SIGTERM');
      api = await startApi(apiEnv);
    },
    stop: async () => {
      await Promise.all([api, ...workers].map((p) => p.stop('SIGKILL')));
      await redis.stop();
      if (!process.env.DARKROOM_KEEP_TEST_DATA && !opts.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
    fetch: (pathname, init = {}) => {
      const { station = 'alpha', ...rest } = init;
      const headers = new Headers(rest.headers);
      if (station && !headers.has('authorization')) headers.set('authorization', `Bearer ${STATIONS[station].key}`);
      return fetch(url + pathname, { ...rest, headers, signal: rest.signal ?? AbortSignal.timeout(30_000) });
    },
  };
  return sys;
}

/** Every file under the data directory (relative paths), to prove a refused request stored nothing. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out.sort();
}

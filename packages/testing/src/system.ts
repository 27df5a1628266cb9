import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type HaproxyHandle, type HaproxyOptions, startHaproxy } from './haproxy.ts';
import { type ProcessHandle, startApi, startWorker } from './processes.ts';
import { freePort, type RedisHandle, type RedisOptions, startRedis, uniquePrefix } from './redis.ts';

/*
 * A whole Darkroom for an end-to-end test: a real Redis, the api and workers as separate
 * processes, a private data directory, and two stations with keys. With `apiReplicas`, several
 * api processes share that Redis and data directory behind a real HAProxy, as on many hosts.
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
  /** Api processes to start (default 1). Above 1, `url` is a HAProxy balancing them round-robin. */
  apiReplicas?: number;
  /** Settings of that HAProxy. */
  haproxy?: HaproxyOptions;
}

export interface System {
  url: string;
  redis: RedisHandle;
  prefix: string;
  dataDir: string;
  env: Record<string, string>;
  /** The first api process. */
  api: ProcessHandle;
  /** Every api process (replica `i` is HAProxy's server `api${i + 1}`). */
  apis: ProcessHandle[];
  /** Each api process's own address, bypassing the load balancer. */
  apiUrls: string[];
  /** The load balancer in front of the replicas (with `apiReplicas` above 1). */
  lb: HaproxyHandle | undefined;
  workers: ProcessHandle[];
  addWorker(env?: Record<string, string>): Promise<ProcessHandle>;
  /** Stops api process `i` (default 0) with SIGTERM and starts it again on the same port. */
  restartApi(i?: number): Promise<void>;
  /** Kills api process `i` with SIGKILL, as a host failure would; it stays down until restartApi(i). */
  killApi(i: number): Promise<void>;
  stop(): Promise<void>;
  /** Fetch as a station (default alpha). */
  fetch(pathname: string, init?: RequestInit & { station?: keyof typeof STATIONS | null }): Promise<Response>;
}

export async function startSystem(opts: SystemOptions = {}): Promise<System> {
  const redis = await startRedis(opts.redis);
  const replicas = Math.max(1, opts.apiReplicas ?? 1);
  const ports: number[] = [];
  for (let i = 0; i < replicas; i++) ports.push(await freePort());
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
  const apiUrls = ports.map((p) => `http://127.0.0.1:${p}`);
  const apiEnv = (i: number) => ({ ...env, PORT: String(ports[i]), ...opts.apiEnv });
  const apis = await Promise.all(ports.map((_, i) => startApi(apiEnv(i))));
  const lb =
    replicas > 1
      ? await startHaproxy(
          ports.map((port, i) => ({ name: `api${i + 1}`, port })),
          opts.haproxy,
        )
      : undefined;
  const url = lb?.url ?? (apiUrls[0] as string);
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
      return apis[0] as ProcessHandle;
    },
    apis,
    apiUrls,
    lb,
    workers,
    addWorker,
    restartApi: async (i = 0) => {
      await apis[i]?.stop('SIGTERM');
      apis[i] = await startApi(apiEnv(i));
    },
    killApi: async (i) => {
      await apis[i]?.stop('SIGKILL');
    },
    stop: async () => {
      await lb?.stop();
      await Promise.all([...apis, ...workers].map((p) => p.stop('SIGKILL')));
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

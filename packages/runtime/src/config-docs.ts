import { EnvSchema } from './config.ts';

/*
 * What each setting does, in one line. README's configuration table and .env.example are written
 * from this (`pnpm env:example`), and the map is keyed by the schema, so a setting cannot be added
 * without its line: typecheck and config-docs.test.ts both fail.
 */

export type SettingName = keyof typeof EnvSchema.shape;

export interface SettingDoc {
  /** One line, in Markdown. */
  meaning: string;
  /** How README shows the default, where the schema's own default says too little (or there is none). */
  shownDefault?: string;
}

export const SETTING_DOCS: Record<SettingName, SettingDoc> = {
  NODE_ENV: { meaning: '`production`: refuses to start without station keys, binds the API to all interfaces, logs JSON lines' },
  PORT: { meaning: 'API port' },
  DARKROOM_HOST: { meaning: 'API bind address', shownDefault: '`127.0.0.1` (`0.0.0.0` in production)' },
  REDIS_URL: { meaning: 'Redis (`maxmemory-policy` must be `noeviction`; checked and warned about at start)' },
  DARKROOM_REDIS_PREFIX: { meaning: 'key prefix, so several deployments can share one Redis' },
  DARKROOM_REDIS_SENTINELS: {
    meaning: '`host:port,…` of Redis Sentinels: find the master through them and follow its failovers (see "Running on many hosts")',
  },
  DARKROOM_REDIS_CLUSTER_NODES: {
    meaning: '`host:port,…` of Redis Cluster nodes; the prefix becomes a hash tag, `{darkroom}` (see "Running on many hosts")',
  },
  DARKROOM_REDIS_SENTINEL_NAME: { meaning: "the master's name in the Sentinels" },
  DARKROOM_REDIS_SENTINEL_PASSWORD: { meaning: "the Sentinels' own password (the master's comes from `REDIS_URL`)" },
  DARKROOM_REDIS_MIN_REPLICAS: {
    meaning: 'answer a submit `202` only once its job reached this many replicas, else `503` (see docs/api.md)',
  },
  DARKROOM_REDIS_REPLICA_TIMEOUT_MS: { meaning: 'how long a submit waits for those replicas (at most 1500)' },
  DARKROOM_API_KEYS: { meaning: 'station keys: `station:key,station:key`', shownDefault: '—' },
  DARKROOM_STATIONS_FILE: {
    meaning:
      'JSON list of stations: `name`, `key`, `maxPriority`, `defaultPriority`, `maxPending`, `requestsPerMinute`, `weight`, `gpuSecondsPerDay`, `webhookSecret`',
  },
  DARKROOM_OPENAI_MODELS: { meaning: 'model names for `/v1/images/*`: a JSON file, model → `{pipeline, params}` (read at start)' },
  DARKROOM_ADMIN_TOKEN: {
    meaning: 'admin credential for `/admin/queues` and `/v1/admin/*` (Bearer, or the Basic password)',
    shownDefault: '— (`pnpm start` makes one)',
  },
  DARKROOM_DATA_DIR: { meaning: 'blob directory (inputs, outputs); shared by the api and workers' },
  DARKROOM_FSYNC_INPUTS: { meaning: 'fsync each uploaded image before answering 202 (see below)' },
  DARKROOM_BLOB_STORE: {
    meaning: 'where images live: `fs` (the data directory) or `s3` (an S3-compatible bucket; see "Running on many hosts")',
  },
  DARKROOM_S3_BUCKET: { meaning: 'the bucket (required with `s3`)' },
  DARKROOM_S3_PREFIX: {
    meaning: 'key prefix inside the bucket, ending in `/` (several deployments can share a bucket)',
    shownDefault: '—',
  },
  DARKROOM_S3_ENDPOINT: { meaning: 'endpoint of an S3-compatible store (MinIO, Ceph, Swift s3api)', shownDefault: '— (AWS)' },
  DARKROOM_S3_FORCE_PATH_STYLE: { meaning: 'path-style addressing (`http://host/bucket/key`), as most S3-compatible stores want' },
  DARKROOM_RESULT_REDIRECT: {
    meaning: '`presigned`: the result route answers 302 to a presigned GET on the bucket instead of streaming (s3 only)',
  },
  DARKROOM_RESULT_URL_SECONDS: { meaning: 'how long such a presigned URL is valid' },
  DARKROOM_LOG_LEVEL: { meaning: '`trace` … `fatal`, `silent`' },
  DARKROOM_LOG_PRETTY: {
    meaning: 'pretty log lines instead of JSON lines (by default: on a terminal, outside production)',
    shownDefault: 'in a terminal',
  },

  DARKROOM_MAX_UPLOAD_BYTES: { meaning: 'image size limit, after base64 decoding', shownDefault: '`20971520` (20 MiB)' },
  DARKROOM_UPLOAD_MEMORY_BYTES: {
    meaning: 'a multipart image larger than this is written to the data directory as it arrives instead of held in memory (see below)',
    shownDefault: '`1048576` (1 MiB)',
  },
  DARKROOM_MAX_IMAGE_EDGE: { meaning: 'longest image edge in pixels' },
  DARKROOM_MAX_IMAGE_PIXELS: { meaning: 'pixels per frame (a 48 MP photo passes)' },
  DARKROOM_MAX_QUEUE_SIZE: { meaning: 'waiting jobs per pipeline (`off` to disable)' },
  DARKROOM_STATION_MAX_PENDING: { meaning: 'default waiting + active jobs per station (`off` to disable)' },
  DARKROOM_STATION_MAX_PRIORITY: { meaning: 'default highest priority a station may use' },
  DARKROOM_STATION_DEFAULT_PRIORITY: { meaning: 'default priority when a submit names none' },
  DARKROOM_JOB_TIMEOUT_SECONDS: { meaning: 'execution limit per attempt; past it the pipeline is aborted and the job fails `timeout`' },
  DARKROOM_JOB_TTL_SECONDS: { meaning: 'time-to-live in the queue: a job not started by then fails `expired` and never runs' },
  DARKROOM_RETENTION_SECONDS: { meaning: 'how long final jobs and their images are kept' },
  DARKROOM_MAX_WAIT_SECONDS: {
    meaning: 'a waiting job moves up one priority class per third of this; past it, it runs ahead of any newer work',
  },
  DARKROOM_TOMBSTONE_SECONDS: { meaning: "how long a removed job's id answers `410` (`expired`) instead of `404`" },
  DARKROOM_MAINTENANCE_INTERVAL_MS: {
    meaning: 'how often the maintenance leader (one api at a time) ages waiting jobs, expires stale ones and removes old ones',
  },
  DARKROOM_WEBHOOK_ATTEMPTS: { meaning: 'webhook delivery tries, on network errors and 5xx' },
  DARKROOM_WEBHOOK_BACKOFF_MS: { meaning: 'first webhook retry delay; doubles each try' },
  DARKROOM_WEBHOOK_TIMEOUT_MS: { meaning: 'limit for one webhook delivery request' },
  DARKROOM_JOB_ATTEMPTS: { meaning: 'attempts for errors a retry can fix (bad input, timeouts and cancels are never retried)' },
  DARKROOM_RETRY_BACKOFF_MS: { meaning: 'first retry delay; doubles each attempt' },
  DARKROOM_FAIR_SHARE: {
    meaning: '`off`: a priority class is served in arrival order instead of stations taking turns by their `weight`',
  },
  DARKROOM_AFFINITY: {
    meaning: '`off`: a free device slot takes the next job even when a job of a model its worker has loaded waits behind it',
  },
  DARKROOM_AFFINITY_MAX_BYPASS_SECONDS: {
    meaning: 'how long a job needing a model load may be passed over for jobs of models a worker has loaded',
  },
  DARKROOM_SYNTHETIC_WARM_MODELS: { meaning: 'models the `synthetic` pipeline keeps loaded; the others cost their `loadMs` again' },

  DARKROOM_WEBHOOK_SECRET: { meaning: 'webhook signing secret for stations without their own (at least 16 characters)' },
  DARKROOM_WEBHOOK_ALLOW_PRIVATE: { meaning: 'allow webhooks to loopback/private addresses' },
  DARKROOM_INPUT_URL_ALLOW_PRIVATE: {
    meaning: "allow a submit's `imageUrl` to name loopback/private addresses (development and tests only)",
  },
  DARKROOM_INPUT_URL_TIMEOUT_MS: { meaning: "limit for fetching a submit's `imageUrl`: lookup, connection, redirects and the whole body" },
  DARKROOM_METRICS_TOKEN: { meaning: 'Bearer token for `/metrics`' },

  DARKROOM_WORKER_PIPELINES: { meaning: 'pipelines a worker serves: `edit,synthetic`', shownDefault: 'every pipeline its host can run' },
  DARKROOM_COMFYUI_URL: {
    meaning: 'the ComfyUI server a worker runs `comfyui` jobs on (`http://comfyui:8188`); unset, it does not serve `comfyui`',
  },
  DARKROOM_COMFYUI_REQUEST_TIMEOUT_MS: { meaning: 'limit for each HTTP request to ComfyUI (not for the run)' },
  DARKROOM_COMFYUI_WORKFLOWS_DIR: { meaning: 'a directory of workflow templates replacing the built-in ones by name' },
  DARKROOM_COMFYUI_UNHEALTHY_AFTER: {
    meaning: 'GPU failures in a row after which a worker stops taking `comfyui` jobs until its ComfyUI recovers',
  },
  DARKROOM_BACKEND_PROBE_MS: { meaning: 'how often an unhealthy backend is probed' },
  DARKROOM_MODEL_DIR: { meaning: 'ONNX models, `<name>/model.onnx` + `manifest.json`; a worker serves `onnx` when it holds one' },
  DARKROOM_ONNX_PROVIDER: { meaning: '`auto` (CUDA, else WebGPU, else CPU), `cuda`, `webgpu` or `cpu`' },
  DARKROOM_WORKER_CONCURRENCY: { meaning: 'device slots per pipeline: jobs a worker computes at once' },
  DARKROOM_WORKER_OVERLAP: {
    meaning: 'jobs per pipeline that may finish (encode, store, record) off the device while the next ones compute; `0` = none',
  },
  DARKROOM_WORKER_NAME: { meaning: 'name shown in `/v1/queue`', shownDefault: '`<hostname>-<pid>`' },
  DARKROOM_WORKER_DEVICE: {
    meaning: 'device shown in `/v1/queue`, instead of the one found at start',
    shownDefault: 'the GPU `nvidia-smi` finds, else `cpu (<model>)`',
  },
  DARKROOM_WORKER_METRICS_PORT: { meaning: "the worker's own `/metrics`, `/healthz` and `/readyz` port; `0` picks a free one" },
  DARKROOM_GPU_POLL_SECONDS: {
    meaning: 'how often a worker reads its GPUs with `nvidia-smi` for `/v1/queue` and its metrics; `0` = never',
  },
  DARKROOM_SHUTDOWN_GRACE_SECONDS: { meaning: 'on SIGTERM, how long a running job may finish before it is handed back to the queue' },
  DARKROOM_STALLED_INTERVAL_MS: { meaning: 'how often workers look for jobs whose worker died' },
  DARKROOM_LOCK_DURATION_MS: { meaning: 'worker lock on a running job (renewed at half)' },
  DARKROOM_MAX_STALLED_COUNT: { meaning: 'times a job may be recovered from a dead worker before it fails' },
};

/** Every setting the schema knows, in the schema's order. */
export const SETTING_NAMES = Object.keys(EnvSchema.shape) as SettingName[];

/** The schema's default for a setting as the environment would spell it, or undefined when it has none. */
export function settingDefault(name: SettingName): string | undefined {
  const field = EnvSchema.shape[name];
  const parsed = field.safeParse(undefined);
  if (!parsed.success || parsed.data === undefined || parsed.data === '') return undefined;
  return String(parsed.data);
}

const ENV_EXAMPLE_HEAD = [
  '# Every Darkroom setting with its default. Generated from packages/runtime/src/config-docs.ts',
  '# by `pnpm env:example`: edit the descriptions there, not here.',
  '# An empty value means "not set". Copy it to .env and hand that to the processes: a compose',
  '# `env_file:`, systemd `EnvironmentFile=`, or `node --env-file=.env`.',
];

/** .env.example: each setting with its default (empty when it has none) under a line on what it does. */
export function renderEnvExample(): string {
  const blocks = SETTING_NAMES.map((name) => {
    const doc = SETTING_DOCS[name];
    const plain = (s: string) => s.replaceAll('`', '');
    const lines = [`# ${plain(doc.meaning).replace(' (see below)', '')}`];
    if (doc.shownDefault && !/^—$/.test(doc.shownDefault)) lines.push(`# default: ${plain(doc.shownDefault)}`);
    lines.push(`${name}=${settingDefault(name) ?? ''}`);
    return lines.join('\n');
  });
  return `${ENV_EXAMPLE_HEAD.join('\n')}\n\n${blocks.join('\n\n')}\n`;
}

/** README's configuration table (variable, default, meaning), padded as a formatter leaves it. */
export function renderConfigTable(): string {
  const rows = SETTING_NAMES.map((name) => {
    const doc = SETTING_DOCS[name];
    const value = settingDefault(name);
    const shown = doc.shownDefault ?? (value === undefined ? '—' : `\`${value}\``);
    return [`\`${name}\``, shown, doc.meaning.replaceAll('|', '\\|')];
  });
  const header = ['variable', 'default', 'meaning'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]!].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c + ' '.repeat(widths[i]! - [...c].length)).join(' | ')} |`;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

export const README_TABLE_START = '<!-- settings:start (generated by `pnpm env:example` from packages/runtime/src/config-docs.ts) -->';
export const README_TABLE_END = '<!-- settings:end -->';

/** README with its configuration table (between the markers) rewritten. */
export function withConfigTable(readme: string): string {
  const start = readme.indexOf(README_TABLE_START);
  const end = readme.indexOf(README_TABLE_END);
  if (start < 0 || end < start) throw new Error('README has no settings markers');
  return `${readme.slice(0, start + README_TABLE_START.length)}\n${renderConfigTable()}\n${readme.slice(end)}`;
}

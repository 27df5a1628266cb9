import os from 'node:os';
import path from 'node:path';
import { PIPELINE_NAMES, Priority } from '@darkroom/contracts';
import { z } from 'zod';

/*
 * Every setting is an environment variable, parsed once at start and frozen. A bad value stops
 * the process with a message naming the variable. No other module reads process.env.
 */

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no', '']).transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number) => z.coerce.number().int().min(min);
/** A limit where 0 or "off" switches it off (null). */
const optionalLimit = z
  .string()
  .regex(/^(off|\d+)$/, 'must be a whole number, or "off"')
  .transform((v) => (v === 'off' || v === '0' ? null : Number(v)));
const csv = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

/** `host:port,host:port`: the Redis Sentinels to ask for the master. */
const hostPorts = z.string().transform((v, ctx) => {
  const out: { host: string; port: number }[] = [];
  for (const item of v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(item);
    const port = Number(m?.[3]);
    if (!m || port < 1 || port > 65535) {
      ctx.addIssue({ code: 'custom', message: `"${item.slice(0, 64)}" is not host:port` });
      return z.NEVER;
    }
    out.push({ host: (m[1] ?? m[2])!, port });
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'names no host:port' });
    return z.NEVER;
  }
  return out;
});

export const EnvSchema = z.object({
  NODE_ENV: z.string().default('development'),
  PORT: int(0).max(65535).default(8080),
  DARKROOM_HOST: z.string().optional(),
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).default('redis://127.0.0.1:6379'),
  DARKROOM_REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/)
    .default('darkroom'),
  DARKROOM_REDIS_SENTINELS: hostPorts.optional(),
  DARKROOM_REDIS_CLUSTER_NODES: hostPorts.optional(),
  DARKROOM_REDIS_SENTINEL_NAME: z.string().default('mymaster'),
  DARKROOM_REDIS_SENTINEL_PASSWORD: z.string().optional(),
  DARKROOM_REDIS_MIN_REPLICAS: int(0).max(16).default(0),
  // Below the api's 2 s command timeout, so the wait ends as a 503 of its own and not a timeout.
  DARKROOM_REDIS_REPLICA_TIMEOUT_MS: int(1).max(1500).default(1000),
  DARKROOM_API_KEYS: z.string().default(''),
  DARKROOM_STATIONS_FILE: z.string().optional(),
  DARKROOM_OPENAI_MODELS: z.string().optional(),
  DARKROOM_ADMIN_TOKEN: z.string().optional(),
  DARKROOM_DATA_DIR: z.string().default('.darkroom/data'),
  DARKROOM_FSYNC_INPUTS: bool.default(false),
  DARKROOM_BLOB_STORE: z.enum(['fs', 's3']).default('fs'),
  DARKROOM_S3_BUCKET: z.string().optional(),
  DARKROOM_S3_PREFIX: z
    .string()
    .regex(/^([A-Za-z0-9_.-]+\/)*$/, 'must be empty, or path segments each ending in "/"')
    .default(''),
  DARKROOM_S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  DARKROOM_S3_FORCE_PATH_STYLE: bool.default(false),
  DARKROOM_RESULT_REDIRECT: z.enum(['off', 'presigned']).default('off'),
  DARKROOM_RESULT_URL_SECONDS: int(1).max(604800).default(300),
  DARKROOM_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  DARKROOM_LOG_PRETTY: bool.optional(),

  DARKROOM_MAX_UPLOAD_BYTES: int(1).default(20 * 1024 * 1024),
  DARKROOM_UPLOAD_MEMORY_BYTES: int(64 * 1024).default(1024 * 1024),
  DARKROOM_MAX_IMAGE_EDGE: int(1).default(8192),
  DARKROOM_MAX_IMAGE_PIXELS: int(1).default(50_000_000),
  DARKROOM_MAX_QUEUE_SIZE: optionalLimit.default(1000),
  DARKROOM_STATION_MAX_PENDING: optionalLimit.default(100),
  DARKROOM_STATION_MAX_PRIORITY: Priority.default('critical'),
  DARKROOM_STATION_DEFAULT_PRIORITY: Priority.default('normal'),
  DARKROOM_JOB_TIMEOUT_SECONDS: int(1).default(300),
  DARKROOM_JOB_TTL_SECONDS: int(1).default(3600),
  DARKROOM_RETENTION_SECONDS: int(1).default(86400),
  DARKROOM_MAX_WAIT_SECONDS: int(1).default(600),
  DARKROOM_TOMBSTONE_SECONDS: int(1).default(7 * 86400),
  DARKROOM_MAINTENANCE_INTERVAL_MS: int(100).default(1000),
  DARKROOM_WEBHOOK_ATTEMPTS: int(1).max(20).default(6),
  DARKROOM_WEBHOOK_BACKOFF_MS: int(0).default(30_000),
  DARKROOM_WEBHOOK_TIMEOUT_MS: int(100).default(10_000),
  DARKROOM_JOB_ATTEMPTS: int(1).max(20).default(3),
  DARKROOM_RETRY_BACKOFF_MS: int(0).default(1000),
  DARKROOM_FAIR_SHARE: z.enum(['on', 'off']).default('on'),
  DARKROOM_AFFINITY: z.enum(['on', 'off']).default('on'),
  DARKROOM_AFFINITY_MAX_BYPASS_SECONDS: int(0).default(30),
  DARKROOM_SYNTHETIC_WARM_MODELS: int(1).max(64).default(1),

  DARKROOM_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  DARKROOM_WEBHOOK_ALLOW_PRIVATE: bool.default(false),
  DARKROOM_INPUT_URL_ALLOW_PRIVATE: bool.default(false),
  DARKROOM_INPUT_URL_TIMEOUT_MS: int(100).max(600_000).default(15_000),
  DARKROOM_METRICS_TOKEN: z.string().optional(),

  DARKROOM_WORKER_PIPELINES: csv.optional(),
  DARKROOM_COMFYUI_URL: z.url({ protocol: /^https?$/ }).optional(),
  DARKROOM_COMFYUI_REQUEST_TIMEOUT_MS: int(100).default(30_000),
  DARKROOM_COMFYUI_WORKFLOWS_DIR: z.string().optional(),
  DARKROOM_COMFYUI_UNHEALTHY_AFTER: int(1).default(3),
  DARKROOM_BACKEND_PROBE_MS: int(100).default(10_000),
  DARKROOM_MODEL_DIR: z.string().optional(),
  DARKROOM_ONNX_PROVIDER: z.enum(['auto', 'cuda', 'webgpu', 'cpu']).default('auto'),
  DARKROOM_WORKER_CONCURRENCY: int(1).max(256).default(1),
  DARKROOM_WORKER_OVERLAP: int(0).max(16).default(1),
  DARKROOM_WORKER_NAME: z.string().optional(),
  DARKROOM_WORKER_DEVICE: z.string().optional(),
  DARKROOM_WORKER_METRICS_PORT: int(0).max(65535).default(9091),
  DARKROOM_GPU_POLL_SECONDS: int(0).max(3600).default(15),
  DARKROOM_SHUTDOWN_GRACE_SECONDS: int(0).default(30),
  DARKROOM_STALLED_INTERVAL_MS: int(1000).default(30_000),
  DARKROOM_LOCK_DURATION_MS: int(1000).default(30_000),
  DARKROOM_MAX_STALLED_COUNT: int(0).max(100).default(2),
});

export type Env = z.input<typeof EnvSchema>;

function buildConfig(env: z.output<typeof EnvSchema>) {
  const production = env.NODE_ENV === 'production';
  // Without the variable a worker serves every pipeline its host can (decided at start).
  const requested = env.DARKROOM_WORKER_PIPELINES?.length ? env.DARKROOM_WORKER_PIPELINES : undefined;
  const workerPipelines = requested ?? PIPELINE_NAMES;
  const unknown = workerPipelines.filter((p) => !(PIPELINE_NAMES as string[]).includes(p));
  if (unknown.length > 0) {
    throw new ConfigError(`DARKROOM_WORKER_PIPELINES: unknown pipeline(s) ${unknown.join(', ')}; known: ${PIPELINE_NAMES.join(', ')}`);
  }
  const cluster = env.DARKROOM_REDIS_CLUSTER_NODES;
  if (cluster && env.DARKROOM_REDIS_SENTINELS) {
    throw new ConfigError(
      'DARKROOM_REDIS_CLUSTER_NODES and DARKROOM_REDIS_SENTINELS: set one or the other (a cluster fails over by itself)',
    );
  }
  if (cluster && env.DARKROOM_REDIS_MIN_REPLICAS > 0) {
    throw new ConfigError('DARKROOM_REDIS_MIN_REPLICAS: not supported with DARKROOM_REDIS_CLUSTER_NODES; leave it at 0');
  }
  if (env.DARKROOM_BLOB_STORE === 's3' && !env.DARKROOM_S3_BUCKET) {
    throw new ConfigError('DARKROOM_S3_BUCKET: required when DARKROOM_BLOB_STORE=s3');
  }
  if (env.DARKROOM_RESULT_REDIRECT === 'presigned' && env.DARKROOM_BLOB_STORE !== 's3') {
    throw new ConfigError('DARKROOM_RESULT_REDIRECT: "presigned" needs DARKROOM_BLOB_STORE=s3');
  }
  return {
    production,
    port: env.PORT,
    host: env.DARKROOM_HOST ?? (production ? '0.0.0.0' : '127.0.0.1'),
    redisUrl: env.REDIS_URL,
    /** Where Redis is and how to reach it; connections are built from this alone (see redis.ts). */
    redis: {
      /** The master's credentials, database and TLS; its host and port too when no sentinels are set. */
      url: env.REDIS_URL,
      /** Ask these Sentinels for the master named `sentinelName`, and follow its failovers. */
      sentinels: env.DARKROOM_REDIS_SENTINELS,
      sentinelName: env.DARKROOM_REDIS_SENTINEL_NAME,
      sentinelPassword: env.DARKROOM_REDIS_SENTINEL_PASSWORD,
      /** Seed nodes of a Redis Cluster (any few of its masters); it finds the rest. */
      clusterNodes: cluster,
      /** A submit is answered 202 only once its job reached this many replicas (Redis WAIT). */
      minReplicas: env.DARKROOM_REDIS_MIN_REPLICAS,
      /** How long a submit waits for them before it is answered 503. */
      replicaTimeoutMs: env.DARKROOM_REDIS_REPLICA_TIMEOUT_MS,
    },
    /**
     * Every key starts with it. On a cluster it is a hash tag (`{darkroom}`), so every key, and
     * so every multi-key script and transaction of BullMQ's and Darkroom's, is in one slot.
     */
    prefix: cluster ? `{${env.DARKROOM_REDIS_PREFIX}}` : env.DARKROOM_REDIS_PREFIX,
    apiKeys: env.DARKROOM_API_KEYS,
    stationsFile: env.DARKROOM_STATIONS_FILE,
    /** A JSON file naming OpenAI `model`s: model → {pipeline, params}. */
    openaiModelsFile: env.DARKROOM_OPENAI_MODELS,
    adminToken: env.DARKROOM_ADMIN_TOKEN || undefined,
    dataDir: path.resolve(env.DARKROOM_DATA_DIR),
    /**
     * fsync each uploaded image before answering 202. Off: an upload survives any process crash
     * (it is in the page cache), and only a power cut within the kernel's writeback window could
     * lose one, when Redis (appendfsync everysec) can lose the last second of jobs too.
     */
    fsyncInputs: env.DARKROOM_FSYNC_INPUTS,
    blobStore: {
      kind: env.DARKROOM_BLOB_STORE,
      s3: {
        bucket: env.DARKROOM_S3_BUCKET ?? '',
        prefix: env.DARKROOM_S3_PREFIX,
        endpoint: env.DARKROOM_S3_ENDPOINT,
        forcePathStyle: env.DARKROOM_S3_FORCE_PATH_STYLE,
      },
      resultRedirect: env.DARKROOM_RESULT_REDIRECT,
      resultUrlSeconds: env.DARKROOM_RESULT_URL_SECONDS,
    },
    logLevel: env.DARKROOM_LOG_LEVEL,
    logPretty: env.DARKROOM_LOG_PRETTY,
    limits: {
      maxUploadBytes: env.DARKROOM_MAX_UPLOAD_BYTES,
      /** A multipart image larger than this is written to the data volume as it arrives instead of held in memory. */
      uploadMemoryBytes: env.DARKROOM_UPLOAD_MEMORY_BYTES,
      maxImageEdge: env.DARKROOM_MAX_IMAGE_EDGE,
      maxImagePixels: env.DARKROOM_MAX_IMAGE_PIXELS,
      maxQueueSize: env.DARKROOM_MAX_QUEUE_SIZE,
      stationMaxPending: env.DARKROOM_STATION_MAX_PENDING,
      stationMaxPriority: env.DARKROOM_STATION_MAX_PRIORITY,
      stationDefaultPriority: env.DARKROOM_STATION_DEFAULT_PRIORITY,
      jobTimeoutMs: env.DARKROOM_JOB_TIMEOUT_SECONDS * 1000,
      jobTtlMs: env.DARKROOM_JOB_TTL_SECONDS * 1000,
      retentionSeconds: env.DARKROOM_RETENTION_SECONDS,
      maxWaitMs: env.DARKROOM_MAX_WAIT_SECONDS * 1000,
      tombstoneSeconds: env.DARKROOM_TOMBSTONE_SECONDS,
    },
    maintenanceIntervalMs: env.DARKROOM_MAINTENANCE_INTERVAL_MS,
    jobs: {
      attempts: env.DARKROOM_JOB_ATTEMPTS,
      backoffMs: env.DARKROOM_RETRY_BACKOFF_MS,
      /** Stations take turns within a priority class (start-time fair queueing); off: arrival order. */
      fairShare: env.DARKROOM_FAIR_SHARE === 'on',
      /** A free device slot prefers a waiting job of a model its worker has loaded (same priority class). */
      affinity: env.DARKROOM_AFFINITY === 'on',
      /** Waited this long, a job needing a model load is no longer passed over for warm ones. */
      affinityMaxBypassMs: env.DARKROOM_AFFINITY_MAX_BYPASS_SECONDS * 1000,
    },
    webhooks: {
      secret: env.DARKROOM_WEBHOOK_SECRET,
      allowPrivate: env.DARKROOM_WEBHOOK_ALLOW_PRIVATE,
      attempts: env.DARKROOM_WEBHOOK_ATTEMPTS,
      backoffMs: env.DARKROOM_WEBHOOK_BACKOFF_MS,
      timeoutMs: env.DARKROOM_WEBHOOK_TIMEOUT_MS,
    },
    /** Input images a submit names by `imageUrl`, fetched by the api. */
    inputUrl: {
      allowPrivate: env.DARKROOM_INPUT_URL_ALLOW_PRIVATE,
      /** The whole fetch: name lookup, connection, redirects and the body. */
      timeoutMs: env.DARKROOM_INPUT_URL_TIMEOUT_MS,
    },
    metricsToken: env.DARKROOM_METRICS_TOKEN,
    models: {
      comfyuiUrl: env.DARKROOM_COMFYUI_URL,
      comfyuiRequestTimeoutMs: env.DARKROOM_COMFYUI_REQUEST_TIMEOUT_MS,
      comfyuiWorkflowsDir: env.DARKROOM_COMFYUI_WORKFLOWS_DIR ? path.resolve(env.DARKROOM_COMFYUI_WORKFLOWS_DIR) : undefined,
      /** GPU failures in a row (out of memory, CUDA errors) after which a worker's ComfyUI is unhealthy. */
      comfyuiUnhealthyAfter: env.DARKROOM_COMFYUI_UNHEALTHY_AFTER,
      /** How often an unhealthy backend's health probe runs; its pipeline takes no jobs meanwhile. */
      backendProbeMs: env.DARKROOM_BACKEND_PROBE_MS,
      /** How many models the synthetic pipeline keeps loaded (the rest cost `loadMs` again). */
      syntheticWarmModels: env.DARKROOM_SYNTHETIC_WARM_MODELS,
      modelDir: env.DARKROOM_MODEL_DIR ? path.resolve(env.DARKROOM_MODEL_DIR) : undefined,
      onnxProvider: env.DARKROOM_ONNX_PROVIDER,
    },
    worker: {
      /** The pipelines asked for, or every known one when DARKROOM_WORKER_PIPELINES is not set. */
      pipelines: workerPipelines,
      /** Whether DARKROOM_WORKER_PIPELINES named them: then each must start, else the worker stops. */
      pipelinesExplicit: requested !== undefined,
      /** Device slots per pipeline: jobs computing at once. */
      concurrency: env.DARKROOM_WORKER_CONCURRENCY,
      /** Jobs per pipeline that may finish (encode, store, record) off the device while the next compute. */
      overlap: env.DARKROOM_WORKER_OVERLAP,
      name: env.DARKROOM_WORKER_NAME ?? `${os.hostname()}-${process.pid}`,
      device: env.DARKROOM_WORKER_DEVICE ?? `cpu (${os.cpus()[0]?.model?.trim() ?? 'unknown'})`,
      /** DARKROOM_WORKER_DEVICE as set: it replaces the device found at start (nvidia-smi). */
      deviceOverride: env.DARKROOM_WORKER_DEVICE,
      metricsPort: env.DARKROOM_WORKER_METRICS_PORT,
      /** How often the worker reads its GPUs (nvidia-smi) for the heartbeat and metrics; 0: never. */
      gpuPollMs: env.DARKROOM_GPU_POLL_SECONDS * 1000,
      shutdownGraceMs: env.DARKROOM_SHUTDOWN_GRACE_SECONDS * 1000,
      stalledIntervalMs: env.DARKROOM_STALLED_INTERVAL_MS,
      lockDurationMs: env.DARKROOM_LOCK_DURATION_MS,
      maxStalledCount: env.DARKROOM_MAX_STALLED_COUNT,
    },
  };
}

export type Config = Readonly<ReturnType<typeof buildConfig>>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parses the environment (process.env by default). Throws ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings mean "not set", as in most deployment tools.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return deepFreeze(buildConfig(parsed.data));
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '@darkroom/runtime';
import { describe, expect, it } from 'vitest';

/** The ConfigError thrown for `env`, or a failure if none is thrown. */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected loadConfig(${JSON.stringify(env)}) to throw`);
}

describe('loadConfig defaults', () => {
  const c = loadConfig({});

  it('uses the documented defaults', () => {
    expect(c.production).toBe(false);
    expect(c.port).toBe(8080);
    expect(c.host).toBe('127.0.0.1');
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.redis).toEqual({
      url: 'redis://127.0.0.1:6379',
      sentinels: undefined,
      sentinelName: 'mymaster',
      sentinelPassword: undefined,
      clusterNodes: undefined,
      minReplicas: 0,
      replicaTimeoutMs: 1000,
    });
    expect(c.prefix).toBe('darkroom');
    expect(c.apiKeys).toBe('');
    expect(c.stationsFile).toBeUndefined();
    expect(c.adminToken).toBeUndefined();
    expect(c.dataDir).toBe(path.resolve('.darkroom/data'));
    expect(c.logLevel).toBe('info');
    expect(c.logPretty).toBeUndefined();
    expect(c.metricsToken).toBeUndefined();
  });

  it('uses the documented limits', () => {
    expect(c.limits).toEqual({
      maxUploadBytes: 20 * 1024 * 1024,
      uploadMemoryBytes: 1024 * 1024,
      maxImageEdge: 8192,
      maxImagePixels: 50_000_000,
      maxQueueSize: 1000,
      stationMaxPending: 100,
      stationMaxPriority: 'critical',
      stationDefaultPriority: 'normal',
      jobTimeoutMs: 300_000,
      jobTtlMs: 3_600_000,
      retentionSeconds: 86400,
      maxWaitMs: 600_000,
      tombstoneSeconds: 7 * 86400,
    });
    expect(c.jobs).toEqual({ attempts: 3, backoffMs: 1000, fairShare: true, affinity: true, affinityMaxBypassMs: 30_000 });
    expect(c.maintenanceIntervalMs).toBe(1000);
    expect(c.webhooks).toEqual({ secret: undefined, allowPrivate: false, attempts: 6, backoffMs: 30_000, timeoutMs: 10_000 });
  });

  it('serves every pipeline by default, with worker defaults', () => {
    expect(c.worker.pipelines).toEqual(['edit', 'synthetic', 'upscale', 'comfyui', 'onnx']);
    expect(c.worker.pipelinesExplicit).toBe(false);
    expect(c.worker.deviceOverride).toBeUndefined();
    expect(c.models).toEqual({
      comfyuiUrl: undefined,
      comfyuiRequestTimeoutMs: 30_000,
      comfyuiWorkflowsDir: undefined,
      comfyuiUnhealthyAfter: 3,
      backendProbeMs: 10_000,
      syntheticWarmModels: 1,
      modelDir: undefined,
      onnxProvider: 'auto',
    });
    expect(c.worker.concurrency).toBe(1);
    expect(c.worker.shutdownGraceMs).toBe(30_000);
    expect(c.worker.stalledIntervalMs).toBe(30_000);
    expect(c.worker.lockDurationMs).toBe(30_000);
    expect(c.worker.gpuPollMs).toBe(15_000);
    expect(c.worker.name).toBe(`${os.hostname()}-${process.pid}`);
    expect(c.worker.device).toBe(`cpu (${os.cpus()[0]?.model?.trim() ?? 'unknown'})`);
  });

  it('treats empty strings as not set', () => {
    const e = loadConfig({ PORT: '', DARKROOM_MAX_QUEUE_SIZE: '', DARKROOM_ADMIN_TOKEN: '', DARKROOM_WORKER_PIPELINES: '' });
    expect([e.port, e.limits.maxQueueSize, e.adminToken, e.worker.pipelines]).toEqual([
      8080,
      1000,
      undefined,
      ['edit', 'synthetic', 'upscale', 'comfyui', 'onnx'],
    ]);
  });

  it('ignores variables it does not know', () => {
    expect(loadConfig({ SOMETHING_ELSE: 'x', PATH: '/bin' }).port).toBe(8080);
  });
});

describe('loadConfig host', () => {
  it('binds to loopback outside production', () => {
    expect(loadConfig({ NODE_ENV: 'development' }).host).toBe('127.0.0.1');
    expect(loadConfig({ NODE_ENV: 'test' }).host).toBe('127.0.0.1');
  });

  it('binds to every interface in production', () => {
    const c = loadConfig({ NODE_ENV: 'production' });
    expect([c.production, c.host]).toEqual([true, '0.0.0.0']);
  });

  it('takes DARKROOM_HOST over either default', () => {
    expect(loadConfig({ NODE_ENV: 'production', DARKROOM_HOST: '10.0.0.5' }).host).toBe('10.0.0.5');
    expect(loadConfig({ DARKROOM_HOST: '::' }).host).toBe('::');
  });
});

describe('loadConfig parsing', () => {
  it('reads numbers, booleans and names', () => {
    const c = loadConfig({
      PORT: '9090',
      REDIS_URL: 'rediss://cache.example:6380/2',
      DARKROOM_REDIS_PREFIX: 'dr-test.1',
      DARKROOM_LOG_LEVEL: 'debug',
      DARKROOM_LOG_PRETTY: 'yes',
      DARKROOM_MAX_UPLOAD_BYTES: '1024',
      DARKROOM_JOB_TIMEOUT_SECONDS: '7',
      DARKROOM_JOB_TTL_SECONDS: '60',
      DARKROOM_JOB_ATTEMPTS: '5',
      DARKROOM_WEBHOOK_ALLOW_PRIVATE: 'true',
      DARKROOM_WEBHOOK_SECRET: '0123456789abcdef',
      DARKROOM_STATION_MAX_PRIORITY: 'high',
      DARKROOM_STATION_DEFAULT_PRIORITY: 'low',
      DARKROOM_WORKER_CONCURRENCY: '4',
      DARKROOM_WORKER_NAME: 'w1',
      DARKROOM_WORKER_DEVICE: 'cuda:0',
      DARKROOM_DATA_DIR: '/var/lib/darkroom',
      DARKROOM_ADMIN_TOKEN: 'admin-secret',
    });
    expect(c.port).toBe(9090);
    expect(c.redisUrl).toBe('rediss://cache.example:6380/2');
    expect(c.prefix).toBe('dr-test.1');
    expect(c.logLevel).toBe('debug');
    expect(c.logPretty).toBe(true);
    expect(c.limits.maxUploadBytes).toBe(1024);
    expect(c.limits.jobTimeoutMs).toBe(7000);
    expect(c.limits.jobTtlMs).toBe(60_000);
    expect(c.limits.stationMaxPriority).toBe('high');
    expect(c.limits.stationDefaultPriority).toBe('low');
    expect(c.jobs.attempts).toBe(5);
    expect(c.webhooks).toMatchObject({ secret: '0123456789abcdef', allowPrivate: true });
    expect(c.worker.concurrency).toBe(4);
    expect(c.worker.name).toBe('w1');
    expect(c.worker.device).toBe('cuda:0');
    expect(c.dataDir).toBe('/var/lib/darkroom');
    expect(c.adminToken).toBe('admin-secret');
  });

  it.each([
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ])('reads boolean %s as %s', (v, expected) => {
    expect(loadConfig({ DARKROOM_WEBHOOK_ALLOW_PRIVATE: v }).webhooks.allowPrivate).toBe(expected);
  });

  it('switches optional limits off with "off" or 0', () => {
    expect(loadConfig({ DARKROOM_MAX_QUEUE_SIZE: 'off' }).limits.maxQueueSize).toBeNull();
    expect(loadConfig({ DARKROOM_MAX_QUEUE_SIZE: '0' }).limits.maxQueueSize).toBeNull();
    expect(loadConfig({ DARKROOM_MAX_QUEUE_SIZE: '25' }).limits.maxQueueSize).toBe(25);
    expect(loadConfig({ DARKROOM_STATION_MAX_PENDING: 'off' }).limits.stationMaxPending).toBeNull();
    expect(loadConfig({ DARKROOM_STATION_MAX_PENDING: '7' }).limits.stationMaxPending).toBe(7);
  });

  it('reads Sentinels and the replicas a submit waits for', () => {
    const c = loadConfig({
      REDIS_URL: 'redis://:master-secret@ignored:6379/3',
      DARKROOM_REDIS_SENTINELS: ' 10.0.0.1:26379, sentinel-b:26380 ,[::1]:26381',
      DARKROOM_REDIS_SENTINEL_NAME: 'darkroom',
      DARKROOM_REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
      DARKROOM_REDIS_MIN_REPLICAS: '1',
      DARKROOM_REDIS_REPLICA_TIMEOUT_MS: '500',
    });
    expect(c.redis).toEqual({
      url: 'redis://:master-secret@ignored:6379/3',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: 'sentinel-b', port: 26380 },
        { host: '::1', port: 26381 },
      ],
      sentinelName: 'darkroom',
      sentinelPassword: 'sentinel-secret',
      clusterNodes: undefined,
      minReplicas: 1,
      replicaTimeoutMs: 500,
    });
    expect(c.prefix).toBe('darkroom');
  });

  it('reads cluster seed nodes, and makes the prefix a hash tag so every key is in one slot', () => {
    const c = loadConfig({ DARKROOM_REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7000', DARKROOM_REDIS_PREFIX: 'dr' });
    expect(c.redis.clusterNodes).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7000 },
    ]);
    expect(c.prefix).toBe('{dr}');
    expect(configError({ DARKROOM_REDIS_CLUSTER_NODES: '10.0.0.1:7000', DARKROOM_REDIS_SENTINELS: '10.0.0.1:26379' }).message).toMatch(
      /DARKROOM_REDIS_CLUSTER_NODES/,
    );
    expect(configError({ DARKROOM_REDIS_CLUSTER_NODES: '10.0.0.1:7000', DARKROOM_REDIS_MIN_REPLICAS: '1' }).message).toMatch(
      /DARKROOM_REDIS_MIN_REPLICAS/,
    );
  });

  it('takes a subset of pipelines for a worker, trimming blanks', () => {
    expect(loadConfig({ DARKROOM_WORKER_PIPELINES: ' synthetic , ' }).worker.pipelines).toEqual(['synthetic']);
    expect(loadConfig({ DARKROOM_WORKER_PIPELINES: 'edit,synthetic' }).worker.pipelines).toEqual(['edit', 'synthetic']);
  });

  it('reads the GPU poll period in seconds, 0 switching it off', () => {
    expect(loadConfig({ DARKROOM_GPU_POLL_SECONDS: '2' }).worker.gpuPollMs).toBe(2000);
    expect(loadConfig({ DARKROOM_GPU_POLL_SECONDS: '0' }).worker.gpuPollMs).toBe(0);
  });
});

describe('loadConfig errors', () => {
  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['REDIS_URL', 'http://127.0.0.1:6379'],
    ['REDIS_URL', 'not a url'],
    ['DARKROOM_REDIS_PREFIX', 'has space'],
    ['DARKROOM_REDIS_PREFIX', 'a:b'],
    ['DARKROOM_REDIS_SENTINELS', 'sentinel-a'],
    ['DARKROOM_REDIS_SENTINELS', 'sentinel-a:99999'],
    ['DARKROOM_REDIS_SENTINELS', ' , '],
    ['DARKROOM_REDIS_MIN_REPLICAS', '-1'],
    ['DARKROOM_REDIS_REPLICA_TIMEOUT_MS', '5000'],
    ['DARKROOM_LOG_LEVEL', 'verbose'],
    ['DARKROOM_LOG_PRETTY', 'maybe'],
    ['DARKROOM_GPU_POLL_SECONDS', '-1'],
    ['DARKROOM_GPU_POLL_SECONDS', '0.5'],
    ['DARKROOM_MAX_UPLOAD_BYTES', '0'],
    // A spooled upload keeps its first 64 KiB for sniffing: the threshold cannot be below that.
    ['DARKROOM_UPLOAD_MEMORY_BYTES', '65535'],
    ['DARKROOM_MAX_IMAGE_EDGE', 'big'],
    ['DARKROOM_MAX_QUEUE_SIZE', 'none'],
    ['DARKROOM_MAX_QUEUE_SIZE', '-5'],
    ['DARKROOM_MAX_QUEUE_SIZE', '1.5'],
    ['DARKROOM_STATION_MAX_PRIORITY', 'urgent'],
    ['DARKROOM_STATION_DEFAULT_PRIORITY', 'NORMAL'],
    ['DARKROOM_JOB_ATTEMPTS', '21'],
    ['DARKROOM_WEBHOOK_SECRET', 'short'],
    ['DARKROOM_WORKER_CONCURRENCY', '0'],
    ['DARKROOM_WORKER_CONCURRENCY', '257'],
    ['DARKROOM_STALLED_INTERVAL_MS', '999'],
    ['DARKROOM_LOCK_DURATION_MS', '999'],
  ])('%s=%s throws a ConfigError naming the variable', (name, value) => {
    const err = configError({ [name]: value });
    expect(err.name).toBe('ConfigError');
    expect(err.message).toMatch(new RegExp(`^invalid configuration:\\n  ${name}: `));
  });

  it('names every bad variable at once', () => {
    const err = configError({ PORT: 'abc', DARKROOM_LOG_LEVEL: 'loud', DARKROOM_JOB_TIMEOUT_SECONDS: '0' });
    const named = err.message
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(':')[0]);
    expect(named.sort()).toEqual(['DARKROOM_JOB_TIMEOUT_SECONDS', 'DARKROOM_LOG_LEVEL', 'PORT']);
  });

  it('refuses a worker pipeline it does not know', () => {
    const err = configError({ DARKROOM_WORKER_PIPELINES: 'edit,sharpen' });
    expect(err.message).toBe('DARKROOM_WORKER_PIPELINES: unknown pipeline(s) sharpen; known: edit, synthetic, upscale, comfyui, onnx');
  });

  it('reads the model backends: ComfyUI, the model directory, the ONNX provider', () => {
    const m = loadConfig({
      DARKROOM_WORKER_PIPELINES: 'comfyui,onnx',
      DARKROOM_COMFYUI_URL: 'http://comfyui:8188',
      DARKROOM_COMFYUI_REQUEST_TIMEOUT_MS: '5000',
      DARKROOM_MODEL_DIR: '/models',
      DARKROOM_ONNX_PROVIDER: 'cuda',
    });
    expect(m.models).toMatchObject({
      comfyuiUrl: 'http://comfyui:8188',
      comfyuiRequestTimeoutMs: 5000,
      modelDir: '/models',
      onnxProvider: 'cuda',
    });
    expect(m.worker.pipelinesExplicit).toBe(true);
    const err = configError({ DARKROOM_COMFYUI_URL: 'ftp://x', DARKROOM_ONNX_PROVIDER: 'tpu' });
    expect(err.message).toMatch(/DARKROOM_COMFYUI_URL/);
    expect(err.message).toMatch(/DARKROOM_ONNX_PROVIDER/);
  });
});

describe('loadConfig result', () => {
  it('is frozen all the way down', () => {
    const c = loadConfig({ DARKROOM_WORKER_PIPELINES: 'edit' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.limits)).toBe(true);
    expect(Object.isFrozen(c.worker)).toBe(true);
    expect(Object.isFrozen(c.worker.pipelines)).toBe(true);
    expect(() => {
      (c as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (c.limits as { maxImageEdge: number }).maxImageEdge = 1;
    }).toThrow(TypeError);
    expect(() => (c.worker.pipelines as string[]).push('synthetic')).toThrow(TypeError);
    expect([c.port, c.limits.maxImageEdge, c.worker.pipelines]).toEqual([8080, 8192, ['edit']]);
  });

  it('returns a new object per call, not shared state', () => {
    const a = loadConfig({ PORT: '1000' });
    const b = loadConfig({ PORT: '2000' });
    expect([a.port, b.port]).toEqual([1000, 2000]);
    expect(a.limits).not.toBe(b.limits);
  });
});

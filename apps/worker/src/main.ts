import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  createWebhookQueue,
  DeviceSlots,
  DeviceWorker,
  JobLifecycle,
  jobsInProgress,
  openBlobStore,
  preferWarm,
  queueOptions,
  recordModelLoad,
  removeHeartbeat,
  sysKeys,
  writeHeartbeat,
} from '@darkroom/jobs';
import { createPipelines, detectDevice, pipelineSettings, startPipelines } from '@darkroom/pipelines';
import { ConfigError, createLogger, createRedis, loadConfig, Shutdown, watchEvictionPolicy } from '@darkroom/runtime';
import { CancelWatch } from './cancel-watch.ts';
import { GpuMonitor } from './gpus.ts';
import { assembleHeartbeat } from './heartbeat.ts';
import { WorkerMetrics } from './metrics.ts';
import { AbortReason, createProcessor } from './processor.ts';
import { UsageMeter } from './usage.ts';

const HEARTBEAT_MS = 5000;

async function main() {
  const config = loadConfig();
  const logger = createLogger({
    name: 'worker',
    level: config.logLevel,
    ...(config.logPretty !== undefined ? { pretty: config.logPretty } : {}),
  });
  const blobs = openBlobStore(config);
  await blobs.ensureReady();
  const redis = createRedis(config.redis, 'blocking', logger);
  watchEvictionPolicy(redis, logger);
  const shutdownController = new AbortController();
  const drainController = new AbortController();
  // `concurrency` device slots per pipeline, and up to `overlap` more jobs finishing (encode,
  // store, record) off the device while the next ones compute (see packages/jobs/src/device-worker.ts).
  const { name, concurrency, overlap } = config.worker;

  // What this worker runs on, and the pipelines it can serve here (each loads its models once).
  const found = await detectDevice();
  const device = config.worker.deviceOverride ?? (found.kind === 'gpu' ? found.description : config.worker.device);
  // Model load times are kept per kind of device: the same model loads at different speeds on each.
  const deviceKind = found.kind === 'gpu' ? found.description : 'cpu';
  logger.info({ device, gpus: found.gpus }, found.kind === 'gpu' ? 'gpu found' : 'no gpu found: cpu only');
  const started = await startPipelines(
    createPipelines(pipelineSettings(config)),
    config.worker.pipelines,
    config.worker.pipelinesExplicit,
    logger,
  );
  if (started.length === 0) throw new ConfigError('no pipeline can be served on this host (see the log above)');
  const pipelines = started.map((s) => s.pipeline);
  const served = pipelines.map((p) => p.spec.name);
  const modelLoadMs = started.reduce((n, s) => n + s.initMs, 0);
  const gpuMonitor = new GpuMonitor({ intervalMs: config.worker.gpuPollMs, logger });
  await gpuMonitor.start();

  const counters = { processed: 0, failed: 0 };
  const metrics = new WorkerMetrics();
  for (const p of pipelines) metrics.slots.set({ pipeline: p.spec.name }, concurrency);
  const webhooks = createWebhookQueue(config, redis);
  const lifecycle = new JobLifecycle({ config, logger, redis, webhooks });
  const keys = sysKeys(config.prefix);
  const { prefix } = queueOptions(config, redis);
  const usage = new UsageMeter({ redis, prefix: config.prefix, metrics, logger });
  // Cancel requests for active jobs: whichever worker holds the job aborts its signal. Subscribed
  // before any job is taken, so the processor can trust it (see cancel-watch.ts).
  const workers: DeviceWorker[] = [];
  // Same options, so it finds the master through Sentinel and follows a failover like the rest.
  const subscriber = redis.duplicate();
  subscriber.on('error', () => {});
  const cancels = new CancelWatch(subscriber, keys.cancelChannel, (id) => {
    for (const w of workers) if (w.cancelJob(id, 'cancel')) logger.info({ jobId: id }, 'cancel request received');
  });
  await cancels.start();
  for (const pipeline of pipelines) {
    const slots = new DeviceSlots(concurrency);
    const w: DeviceWorker = new DeviceWorker(
      pipeline.spec.name,
      createProcessor(pipeline, {
        config,
        logger,
        redis,
        blobs,
        shutdownSignal: shutdownController.signal,
        drainSignal: drainController.signal,
        slots,
        cancels,
        metrics,
        usage,
        onUnhealthy: () => unhealthy(),
        onModelLoad: (model, ms) => {
          if (ms > 0) void recordModelLoad(redis, config.prefix, pipeline.spec.name, model, deviceKind, ms).catch(() => {});
        },
      }),
      {
        connection: redis,
        prefix,
        name,
        concurrency: concurrency + overlap,
        lockDuration: config.worker.lockDurationMs,
        stalledInterval: config.worker.stalledIntervalMs,
        maxStalledCount: config.worker.maxStalledCount,
        autorun: false,
      },
      slots,
      // Warm models first: before a free slot takes a job, one of a model loaded here is moved in front.
      config.jobs.affinity && pipeline.warmModels
        ? () => preferWarm(redis, w, pipeline.warmModels?.() ?? [], { maxBypassMs: config.jobs.affinityMaxBypassMs })
        : undefined,
    );
    w.on('active', (job) => void lifecycle.jobStarted(job));
    w.on('completed', (job) => {
      counters.processed++;
      // Logged here, after BullMQ recorded the result: a run whose lock was lost never gets this line.
      logger.info(
        {
          jobId: job.id,
          pipeline: pipeline.spec.name,
          station: job.data.station,
          attempts: job.attemptsMade,
          durationMs: (job.finishedOn ?? Date.now()) - (job.processedOn ?? Date.now()),
        },
        'job completed',
      );
      void lifecycle.finalizeJob(w, job, 'completed');
      void usage.record(job, true);
    });
    w.on('failed', (job) => {
      if (!job) return;
      // Every attempt that reached the device counts, a retried one too.
      void usage.record(job, Boolean(job.finishedOn));
      if (!job.finishedOn) return; // an attempt that will be retried
      counters.failed++;
      logger.info(
        {
          jobId: job.id,
          pipeline: pipeline.spec.name,
          station: job.data.station,
          attempts: job.attemptsMade,
          durationMs: job.processedOn ? (job.finishedOn ?? Date.now()) - job.processedOn : 0,
          reason: job.failedReason,
        },
        job.failedReason?.startsWith('[cancelled]') ? 'job cancelled' : 'job failed',
      );
      void lifecycle.finalizeJob(w, job, job.failedReason?.startsWith('[cancelled]') ? 'cancelled' : 'failed');
    });
    w.on('error', (err) => logger.warn({ err: err.message, pipeline: pipeline.spec.name }, 'worker error'));
    workers.push(w);
    // An unhealthy backend: this worker takes none of the pipeline's jobs (others on other workers
    // still run them) until the pipeline's probe passes; jobs it held go back to the queue.
    let probing: NodeJS.Timeout | undefined;
    const unhealthy = () => {
      if (probing || shutdownController.signal.aborted) return;
      logger.warn({ pipeline: pipeline.spec.name }, 'backend unhealthy: pipeline paused on this worker until its probe passes');
      void w.pause(true).catch(() => {});
      probing = setInterval(() => {
        void (pipeline.probe?.() ?? Promise.resolve(true)).then((ok) => {
          if (!ok || !probing || shutdownController.signal.aborted) return;
          clearInterval(probing);
          probing = undefined;
          w.resume();
          logger.info({ pipeline: pipeline.spec.name }, 'backend healthy again: pipeline resumed on this worker');
        });
      }, config.models.backendProbeMs);
      probing.unref();
    };
  }

  const loopDelay = monitorEventLoopDelay({ resolution: 20 });
  loopDelay.enable();
  const heartbeat = async () => {
    const eventLoopDelayMaxMs = Math.round(loopDelay.max / 1e6);
    loopDelay.reset();
    const activeJobs = workers.reduce((n, w) => n + jobsInProgress(w), 0);
    const hb = await assembleHeartbeat(
      {
        name,
        activeJobs,
        processed: counters.processed,
        failed: counters.failed,
        lastSeen: new Date().toISOString(),
        device,
        modelLoadMs,
        concurrency,
        eventLoopDelayMaxMs,
      },
      pipelines,
      gpuMonitor.latest,
    );
    metrics.report(hb);
    await writeHeartbeat(redis, config.prefix, hb).catch(() => {});
  };
  await heartbeat();
  const hbTimer = setInterval(() => void heartbeat(), HEARTBEAT_MS);
  const metricsServer = await metrics.listen(config.worker.metricsPort, config.host, () => redis.status === 'ready');
  for (const w of workers) void w.run().catch((err) => logger.error({ err }, 'worker stopped'));
  logger.info(
    { worker: name, pipelines: served, device, concurrency, overlap, metrics: `http://${config.host}:${metricsServer.port}/metrics` },
    'worker ready',
  );

  const shutdown = new Shutdown(logger);
  // Closed last (steps run in reverse): a job finishing within the grace period still writes its result.
  shutdown.add('blobs', async () => blobs.close?.());
  shutdown.add('redis', async () => {
    await subscriber.quit().catch(() => subscriber.disconnect());
    await removeHeartbeat(redis, config.prefix, name).catch(() => {});
    await redis.quit().catch(() => redis.disconnect());
  });
  shutdown.add('metrics', () => metricsServer.close());
  shutdown.add('webhooks', () => webhooks.close());
  shutdown.add('pipelines', async () => {
    await Promise.allSettled(pipelines.map((p) => p.close?.()));
  });
  shutdown.add('workers', async () => {
    clearInterval(hbTimer);
    gpuMonitor.stop();
    // Stop taking jobs. Jobs still waiting for a device slot go back to the queue now; running
    // ones get the grace period, then are handed back too.
    drainController.abort(new AbortReason('shutdown'));
    const grace = setTimeout(() => shutdownController.abort(new AbortReason('shutdown')), config.worker.shutdownGraceMs);
    await Promise.all(workers.map((w) => w.close()));
    clearTimeout(grace);
  });
  shutdown.installSignalHandlers(config.worker.shutdownGraceMs + 15_000);
}

main().catch((err) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`darkroom worker: ${err.message}\n`);
    process.exit(78);
  }
  process.stderr.write(`darkroom worker: failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});

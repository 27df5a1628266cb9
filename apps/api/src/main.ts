import { once } from 'node:events';
import { PIPELINE_NAMES } from '@darkroom/contracts';
import {
  ConfigError,
  checkEvictionPolicy,
  createLogger,
  createRedis,
  FsBlobStore,
  loadConfig,
  QueueRegistry,
  Shutdown,
  StatsReader,
} from '@darkroom/core';
import { createApp } from './app.ts';
import { loadStations, StationConfigError } from './auth/stations.ts';

async function main() {
  const config = loadConfig();
  const logger = createLogger({
    name: 'api',
    level: config.logLevel,
    ...(config.logPretty !== undefined ? { pretty: config.logPretty } : {}),
  });
  const stations = loadStations(config);
  if (stations.open) {
    logger.warn(
      '!!! NO STATION KEYS CONFIGURED: the API is OPEN to anyone who can reach it. Set DARKROOM_API_KEYS or DARKROOM_STATIONS_FILE. (Refused with NODE_ENV=production.) !!!',
    );
  }
  if (!stations.hasAdmin) logger.warn('DARKROOM_ADMIN_TOKEN is not set: the dashboard and admin routes refuse every request');

  const blobs = new FsBlobStore(config.dataDir);
  await blobs.ensureReady();
  const redis = createRedis(config.redisUrl, 'producer', logger);
  const queues = new QueueRegistry(config, redis);
  const stats = new StatsReader(redis, config.prefix, PIPELINE_NAMES);
  redis.once('ready', () => void checkEvictionPolicy(redis, logger));

  const { app } = createApp({ config, logger, redis, queues, blobs, stats }, stations);
  const server = app.listen(config.port, config.host);
  await once(server, 'listening');
  server.requestTimeout = 120_000;
  server.headersTimeout = 30_000;
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  logger.info({ url: `http://${config.host}:${port}`, dashboard: `http://${config.host}:${port}/admin/queues` }, 'api listening');

  const shutdown = new Shutdown(logger);
  shutdown.add('redis', async () => {
    await redis.quit().catch(() => redis.disconnect());
  });
  shutdown.add('queues', () => queues.close());
  shutdown.add(
    'http',
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  );
  shutdown.installSignalHandlers(config.worker.shutdownGraceMs || 10_000);
}

main().catch((err) => {
  if (err instanceof ConfigError || err instanceof StationConfigError) {
    process.stderr.write(`darkroom api: ${err.message}\n`);
    process.exit(78);
  }
  process.stderr.write(`darkroom api: failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});

import { once } from 'node:events';
import http from 'node:http';
import { createJobSystem, InvalidSubmit, Maintenance, openBlobStore } from '@darkroom/jobs';
import { ConfigError, createLogger, createRedis, loadConfig, Shutdown, watchEvictionPolicy } from '@darkroom/runtime';
import { checkWebhookTarget, createWebhookProcessor, WEBHOOK_QUEUE, type WebhookJobData, type WebhookResult } from '@darkroom/webhooks';
import { Worker } from 'bullmq';
import { createApp } from './app.ts';
import { loadStations, StationConfigError } from './auth/stations.ts';
import { HttpError } from './http/problem.ts';

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

  const blobs = openBlobStore(config);
  await blobs.ensureReady();
  const redis = createRedis(config.redis, 'producer', logger);
  watchEvictionPolicy(redis, logger);
  const deps = createJobSystem({
    config,
    logger,
    redis,
    blobs,
    checkWebhookTarget: async (url) => {
      const r = await checkWebhookTarget(url, { allowPrivate: config.webhooks.allowPrivate });
      if (!r.ok) throw new InvalidSubmit('the request is invalid', [{ path: 'webhookUrl', message: r.reason }]);
    },
  });
  // Deliveries run here, from their own queue; a worker of its own with its own blocking connection.
  const deliveryRedis = createRedis(config.redis, 'blocking');
  deliveryRedis.on('error', () => {});
  const secrets = new Map(stations.stations.map((s) => [s.name, s.webhookSecret]));
  const delivery = new Worker<WebhookJobData, WebhookResult>(
    WEBHOOK_QUEUE,
    createWebhookProcessor({
      secretFor: (station) => secrets.get(station) ?? config.webhooks.secret,
      allowPrivate: config.webhooks.allowPrivate,
      timeoutMs: config.webhooks.timeoutMs,
      logger,
    }),
    { connection: deliveryRedis, prefix: config.prefix, concurrency: 16 },
  );
  delivery.on('error', (err) => logger.debug({ err: err.message }, 'webhook worker error'));
  const maintenance = new Maintenance(deps, { stations: () => (stations.open ? ['default'] : stations.stations.map((s) => s.name)) });
  const { listener } = createApp(deps, stations);
  // Start answering once Redis is there (or after a while without it: then /readyz and the job routes answer 503).
  if (redis.status !== 'ready') await Promise.race([once(redis, 'ready'), new Promise((r) => setTimeout(r, 10_000).unref())]);
  if (redis.status !== 'ready') logger.warn('redis is not reachable yet; answering 503 until it is');
  const server = http.createServer(listener).listen(config.port, config.host);
  await once(server, 'listening');
  server.requestTimeout = 120_000;
  server.headersTimeout = 30_000;
  // Requests Node's HTTP parser refuses never reach Express: answer them as problems too.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) return socket.destroy();
    const refusal =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new HttpError('headers_too_large', 'the request headers are too large')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new HttpError('request_timeout', 'the request took too long to arrive')
          : new HttpError('invalid_request', 'the request could not be parsed as HTTP');
    const problem = JSON.stringify(refusal.body());
    socket.end(
      `HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status]}\r\n` +
        `Content-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(problem)}\r\nConnection: close\r\n\r\n${problem}`,
    );
  });
  server.on('checkExpectation', (_req, res) => {
    const refusal = new HttpError('expectation_failed', 'only "Expect: 100-continue" is supported');
    res.writeHead(refusal.status, { 'Content-Type': 'application/problem+json', Connection: 'close' }).end(JSON.stringify(refusal.body()));
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  logger.info({ url: `http://${config.host}:${port}`, dashboard: `http://${config.host}:${port}/admin/queues` }, 'api listening');

  const shutdown = new Shutdown(logger);
  // Closed last (steps run in reverse): requests, maintenance and deliveries may still use the store until then.
  shutdown.add('blobs', async () => blobs.close?.());
  shutdown.add('redis', async () => {
    await redis.quit().catch(() => redis.disconnect());
  });
  shutdown.add('jobs', () => deps.close());
  shutdown.add('webhooks', async () => {
    await delivery.close();
    await deliveryRedis.quit().catch(() => deliveryRedis.disconnect());
  });
  shutdown.add('maintenance', () => maintenance.stop());
  shutdown.add(
    'http',
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  );
  maintenance.start();
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

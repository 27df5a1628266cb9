/*
 * The baseline worker: a bare BullMQ Worker in its own process, as the Darkroom worker runs in
 * its own, with the same connection kind and concurrency 1. Its processor only does what the
 * synthetic pipeline's contract requires: `steps` sleeps of `stepMs`, a progress report after
 * each. No Darkroom code runs here.
 */
import { Redis, Worker } from './deps.ts';

const url = process.env.BENCH_REDIS_URL!;
const prefix = process.env.BENCH_PREFIX!;
const queue = process.env.BENCH_QUEUE!;
const connection = new Redis(url, { maxRetriesPerRequest: null });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const worker = new Worker(
  queue,
  async (job) => {
    const { steps = 1, stepMs = 0 } = (job.data?.params ?? {}) as { steps?: number; stepMs?: number };
    for (let i = 1; i <= steps; i++) {
      await sleep(stepMs);
      await job.updateProgress({ percent: Math.round((100 * i) / steps) });
    }
    return { ok: true };
  },
  { connection, prefix, concurrency: 1, lockDuration: 30_000, stalledInterval: 30_000, autorun: false },
);
worker.on('error', (err) => process.stderr.write(`bare worker: ${err.message}\n`));
void worker.run();
await worker.waitUntilReady();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.close().then(() => {
    connection.disconnect();
    process.exit(0);
  });
});

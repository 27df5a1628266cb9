import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/*
 * A worker's own Prometheus metrics, on its own port (DARKROOM_WORKER_METRICS_PORT), with
 * /healthz for container healthchecks. Run times and waits are histograms per pipeline; busy
 * and total slots give utilisation (busy / slots): the share of GPU time spent working. A job
 * counts as busy only while it computes: not while it waits for a slot or finishes after it.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly runSeconds: Histogram<'pipeline' | 'outcome'>;
  readonly waitSeconds: Histogram<'pipeline'>;
  readonly finished: Counter<'pipeline' | 'outcome'>;
  readonly busy: Gauge<'pipeline'>;
  readonly slots: Gauge<'pipeline'>;
  readonly waiting: Gauge<'pipeline'>;
  readonly finishing: Gauge<'pipeline'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'darkroom_' });
    const buckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
    this.runSeconds = new Histogram({
      name: 'darkroom_job_run_seconds',
      help: 'Time a job attempt spent in its pipeline, by outcome',
      labelNames: ['pipeline', 'outcome'],
      buckets,
      registers,
    });
    this.waitSeconds = new Histogram({
      name: 'darkroom_job_queue_wait_seconds',
      help: 'Time from submit to the first start of a job',
      labelNames: ['pipeline'],
      buckets,
      registers,
    });
    this.finished = new Counter({
      name: 'darkroom_jobs_finished_total',
      help: 'Job attempts ended, by outcome (completed, failed, cancelled, retry)',
      labelNames: ['pipeline', 'outcome'],
      registers,
    });
    this.busy = new Gauge({
      name: 'darkroom_worker_busy_slots',
      help: 'Device slots held now: jobs running their compute',
      labelNames: ['pipeline'],
      registers,
    });
    this.slots = new Gauge({
      name: 'darkroom_worker_slots',
      help: 'Device slots: jobs this worker can compute at once',
      labelNames: ['pipeline'],
      registers,
    });
    this.waiting = new Gauge({
      name: 'darkroom_worker_waiting_jobs',
      help: 'Jobs taken ahead (prefetched) and waiting for a device slot',
      labelNames: ['pipeline'],
      registers,
    });
    this.finishing = new Gauge({
      name: 'darkroom_worker_finishing_jobs',
      help: 'Jobs past their compute, encoding and storing their result off the device',
      labelNames: ['pipeline'],
      registers,
    });
  }

  /** Serves /metrics, /healthz and /readyz; resolves with the port it listens on. */
  async listen(port: number, host: string, ready: () => boolean): Promise<{ port: number; close: () => Promise<void> }> {
    const server = http.createServer((req, res) => {
      const url = req.url?.split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405).end();
        return;
      }
      if (url === '/metrics') {
        this.registry.metrics().then(
          (text) => res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
      } else if (url === '/healthz') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
      } else if (url === '/readyz') {
        const ok = ready();
        res
          .writeHead(ok ? 200 : 503, { 'Content-Type': 'application/json' })
          .end(ok ? '{"status":"ready"}' : '{"status":"redis unreachable"}');
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return {
      port: (server.address() as AddressInfo).port,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }
}

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WorkerInfo } from '@darkroom/contracts';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const MIB = 1024 * 1024;

/*
 * A worker's own Prometheus metrics, on its own port (DARKROOM_WORKER_METRICS_PORT), with
 * /healthz for container healthchecks. Run times and waits are histograms per pipeline; busy
 * and total slots give utilisation (busy / slots): the share of GPU time spent working. A job
 * counts as busy only while it computes: not while it waits for a slot or finishes after it.
 * The GPU and backend gauges repeat what the heartbeat last reported, labelled with the worker's
 * name so series from many workers stay apart once Prometheus gathers them.
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
  readonly gpuMemoryUsed: Gauge<'worker' | 'gpu' | 'name'>;
  readonly gpuMemoryTotal: Gauge<'worker' | 'gpu' | 'name'>;
  readonly gpuUtilization: Gauge<'worker' | 'gpu' | 'name'>;
  readonly backendHealthy: Gauge<'worker' | 'pipeline'>;
  readonly backendVramTotal: Gauge<'worker' | 'pipeline'>;
  readonly backendVramFree: Gauge<'worker' | 'pipeline'>;
  readonly deviceSeconds: Counter<'station' | 'pipeline'>;
  readonly queuedSeconds: Counter<'station' | 'pipeline'>;
  readonly modelLoadSeconds: Counter<'station' | 'pipeline'>;

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
    const gpuLabels: ('worker' | 'gpu' | 'name')[] = ['worker', 'gpu', 'name'];
    this.gpuMemoryUsed = new Gauge({
      name: 'darkroom_gpu_memory_used_bytes',
      help: 'GPU memory in use, as nvidia-smi last reported it',
      labelNames: gpuLabels,
      registers,
    });
    this.gpuMemoryTotal = new Gauge({
      name: 'darkroom_gpu_memory_total_bytes',
      help: 'GPU memory, as nvidia-smi reports it',
      labelNames: gpuLabels,
      registers,
    });
    this.gpuUtilization = new Gauge({
      name: 'darkroom_gpu_utilization_ratio',
      help: 'Share of the last sample period a GPU kernel ran (0-1), as nvidia-smi last reported it',
      labelNames: gpuLabels,
      registers,
    });
    this.backendHealthy = new Gauge({
      name: 'darkroom_backend_healthy',
      help: "1 while a pipeline's backend is healthy, 0 while it is not (pipelines that report a backend)",
      labelNames: ['worker', 'pipeline'],
      registers,
    });
    this.backendVramTotal = new Gauge({
      name: 'darkroom_backend_vram_total_bytes',
      help: "Memory of the GPU a pipeline's backend runs on, where it reports it",
      labelNames: ['worker', 'pipeline'],
      registers,
    });
    this.backendVramFree = new Gauge({
      name: 'darkroom_backend_vram_free_bytes',
      help: "Free memory of the GPU a pipeline's backend runs on, where it reports it",
      labelNames: ['worker', 'pipeline'],
      registers,
    });
    // The same figures as GET /v1/usage, counted when a job's attempt ends.
    this.deviceSeconds = new Counter({
      name: 'darkroom_device_seconds_total',
      help: 'Time jobs held a device slot (their compute phase, model loads included), by station',
      labelNames: ['station', 'pipeline'],
      registers,
    });
    this.queuedSeconds = new Counter({
      name: 'darkroom_queued_seconds_total',
      help: 'Time jobs waited from submit to their first start, by station',
      labelNames: ['station', 'pipeline'],
      registers,
    });
    this.modelLoadSeconds = new Counter({
      name: 'darkroom_model_load_seconds_total',
      help: 'Device time pipelines reported spending on loading models for jobs, by station',
      labelNames: ['station', 'pipeline'],
      registers,
    });
  }

  /**
   * Sets the GPU and backend gauges to what a heartbeat carries. Series of a GPU or backend that is
   * no longer reported (nvidia-smi failing, a figure gone to [N/A]) are dropped, not left stale.
   */
  report(hb: Pick<WorkerInfo, 'name' | 'gpus' | 'backends'>): void {
    const gauges = [
      this.gpuMemoryUsed,
      this.gpuMemoryTotal,
      this.gpuUtilization,
      this.backendHealthy,
      this.backendVramTotal,
      this.backendVramFree,
    ];
    for (const g of gauges) g.reset();
    for (const gpu of hb.gpus ?? []) {
      const labels = { worker: hb.name, gpu: String(gpu.index), name: gpu.name };
      if (gpu.memoryUsedMiB !== undefined) this.gpuMemoryUsed.set(labels, gpu.memoryUsedMiB * MIB);
      if (gpu.memoryTotalMiB !== undefined) this.gpuMemoryTotal.set(labels, gpu.memoryTotalMiB * MIB);
      if (gpu.utilizationPercent !== undefined) this.gpuUtilization.set(labels, gpu.utilizationPercent / 100);
    }
    for (const [pipeline, backend] of Object.entries(hb.backends ?? {})) {
      const labels = { worker: hb.name, pipeline };
      this.backendHealthy.set(labels, backend.healthy ? 1 : 0);
      if (backend.vramTotalBytes !== undefined) this.backendVramTotal.set(labels, backend.vramTotalBytes);
      if (backend.vramFreeBytes !== undefined) this.backendVramFree.set(labels, backend.vramFreeBytes);
    }
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

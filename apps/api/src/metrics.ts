import type { IncomingMessage, ServerResponse } from 'node:http';
import { type PipelineQueueInfo, PRIORITIES } from '@darkroom/contracts';
import { type Deps, waitingByPriority } from '@darkroom/jobs';
import type { NextFunction, Request, Response } from 'express';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/*
 * The API's Prometheus metrics. Queue figures are read from Redis when scraped (one pass over
 * the pipelines per scrape), request figures are counted as requests finish.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly submitted: Counter<'pipeline' | 'priority'>;
  readonly rejected: Counter<'reason'>;
  readonly http: Histogram<'method' | 'route' | 'status'>;
  #newScrape: () => void = () => {};

  constructor(deps: Deps) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'darkroom_' });
    this.submitted = new Counter({
      name: 'darkroom_jobs_submitted_total',
      help: 'Jobs accepted (202), by pipeline and priority',
      labelNames: ['pipeline', 'priority'],
      registers,
    });
    this.rejected = new Counter({
      name: 'darkroom_jobs_rejected_total',
      help: 'Submits answered with an error, by problem code',
      labelNames: ['reason'],
      registers,
    });
    this.http = new Histogram({
      name: 'darkroom_http_request_duration_seconds',
      help: 'HTTP request duration by route pattern',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });

    // prom-client reads the gauges of a scrape in parallel, so each one awaits the same snapshot:
    // one pass over the pipelines per scrape, and every figure from the same moment.
    type Snapshot = Map<string, { waiting: PipelineQueueInfo['waiting']; active: number; paused: boolean; live: number }>;
    let snapshot: { at: number; value: Promise<Snapshot> } | undefined;
    this.#newScrape = () => {
      snapshot = undefined;
    };
    const take = (): Promise<Snapshot> => {
      if (snapshot) return snapshot.value;
      const value = (async () => {
        const stats = await deps.stats.all();
        const out: Snapshot = new Map();
        await Promise.all(
          deps.queues.all().map(async (q) => {
            const [waiting, counts, isPaused] = await Promise.all([waitingByPriority(q), q.getJobCounts('active'), q.isPaused()]);
            out.set(q.name, { waiting, active: counts.active ?? 0, paused: isPaused, live: stats.get(q.name)?.workers.length ?? 0 });
          }),
        );
        return out;
      })();
      snapshot = { at: Date.now(), value };
      value.catch(() => {
        if (snapshot?.value === value) snapshot = undefined;
      });
      return value;
    };
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (g: Gauge<L>, s: Snapshot) => void) => {
      const g: Gauge<L> = new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect: async () => fill(g, await take()),
      });
    };
    gauge(
      'darkroom_queue_waiting_jobs',
      'Jobs waiting, by pipeline and the priority class they wait in',
      ['pipeline', 'priority'],
      (g, snap) => {
        for (const [pipeline, q] of snap) {
          for (const p of PRIORITIES) g.set({ pipeline, priority: p }, q.waiting[p]);
        }
      },
    );
    gauge('darkroom_queue_active_jobs', 'Jobs running', ['pipeline'], (g, snap) => {
      for (const [pipeline, q] of snap) g.set({ pipeline }, q.active);
    });
    gauge('darkroom_queue_paused', '1 while a pipeline is paused', ['pipeline'], (g, snap) => {
      for (const [pipeline, q] of snap) g.set({ pipeline }, q.paused ? 1 : 0);
    });
    gauge('darkroom_workers_live', 'Workers serving a pipeline (heartbeat younger than 20 s)', ['pipeline'], (g, snap) => {
      for (const [pipeline, q] of snap) g.set({ pipeline }, q.live);
    });
  }

  /** The exposition text; queue figures are read once, fresh, for each scrape. */
  async scrape(): Promise<string> {
    this.#newScrape();
    return this.registry.metrics();
  }

  /** Times every request by its route pattern (never the raw URL: ids would explode the label set). */
  middleware() {
    return (req: Request, res: Response, next: NextFunction) => {
      this.track(req, res, () =>
        req.route?.path ? `${req.baseUrl}${String(req.route.path)}` : req.path.startsWith('/admin/queues') ? '/admin/queues' : 'unmatched',
      );
      next();
    };
  }

  /** Times one request; `route` and `problemCode` are read when it finishes. */
  track(req: IncomingMessage, res: ServerResponse & { locals?: Record<string, unknown> }, route: () => string): void {
    const start = process.hrtime.bigint();
    res.once('finish', () => {
      const r = route();
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.http.observe({ method: req.method ?? '', route: r, status: String(res.statusCode) }, seconds);
      if (req.method === 'POST' && r === '/v1/jobs' && res.statusCode >= 400) {
        this.rejected.inc({ reason: String(res.locals?.problemCode ?? res.statusCode) });
      }
    });
  }
}

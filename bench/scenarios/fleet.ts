import fs from 'node:fs';
import path from 'node:path';
import { mulberry32 } from '../../packages/pipelines/src/synthetic.ts';
import type { ProcessHandle } from '../../packages/testing/src/index.ts';
import { type Ctx, darkroomQueue, type FleetSizes, timed } from '../lib/context.ts';
import { buildRequest, Connection } from '../lib/http.ts';
import { percentile, round, sleep } from '../lib/stats.ts';
import { stopGracefully } from '../lib/system.ts';

/*
 * 9. The scheduler on a simulated GPU fleet, no GPU needed: worker processes of one device slot
 * each (DARKROOM_WORKER_CONCURRENCY=1, DARKROOM_WORKER_OVERLAP=0, synthetic only) run
 * `synthetic` jobs that ask for one of a few models. A worker keeps one model warm
 * (DARKROOM_SYNTHETIC_WARM_MODELS=1) and pays `loadMs` whenever a job asks for another.
 *
 * Three stations (a stations file): `flood` submits its jobs first, back to back on one
 * connection; `light-a` and `light-b` each submit theirs one at a time, `lightEveryMs` apart,
 * light-a from the first flood submit on, light-b half a period later. Models and run times
 * come from a seeded generator, so both runs see the same jobs in the same order.
 *
 * The workload runs twice in the same bench run, each time on an api and workers of its own
 * (started, not yet used: every worker starts cold) and a Redis prefix of its own: with the scheduler off (DARKROOM_FAIR_SHARE=off,
 * DARKROOM_AFFINITY=off: priority then age, the baseline) and on (both on, the defaults). From
 * every job's status body: wait = startedAt − createdAt, busy = finishedAt − startedAt, the
 * model load it paid (modelLoadMs) and whether it started cold (coldStart).
 */

export const FLEET_STATIONS = [
  { name: 'flood', key: 'fleet-flood-key-0123456789abcdef' },
  { name: 'light-a', key: 'fleet-light-a-key-0123456789abcd' },
  { name: 'light-b', key: 'fleet-light-b-key-0123456789abcd' },
] as const;
export type FleetStation = (typeof FLEET_STATIONS)[number]['name'];

/** Fixed, so every run (and both modes of a run) draws the same models and run times. */
const SEED = 20261203;
/** Small results: the PNG encode is CPU work beside the device time being measured. */
const EDGE = 64;

export interface FleetJob {
  station: FleetStation;
  /** When it is submitted, from the first flood submit (the flood's own are sent back to back from 0). */
  atMs: number;
  params: { steps: 1; stepMs: number; model: string; loadMs: number; width: number; height: number };
}

/** The workload, identical for both modes: flood jobs, then light-a's, then light-b's, drawn in that order. */
export function fleetWorkload(s: FleetSizes): FleetJob[] {
  const rand = mulberry32(SEED);
  const models = Array.from({ length: s.models }, (_, i) => `model-${String.fromCharCode(97 + i)}`);
  const job = (station: FleetStation, atMs: number): FleetJob => {
    const model = models[Math.floor(rand() * models.length)]!;
    const stepMs = s.runMs[0] + Math.floor(rand() * (s.runMs[1] - s.runMs[0] + 1));
    return { station, atMs, params: { steps: 1, stepMs, model, loadMs: s.loadMs, width: EDGE, height: EDGE } };
  };
  return [
    ...Array.from({ length: s.floodJobs }, () => job('flood', 0)),
    ...Array.from({ length: s.lightJobs }, (_, k) => job('light-a', k * s.lightEveryMs)),
    ...Array.from({ length: s.lightJobs }, (_, k) => job('light-b', s.lightEveryMs / 2 + k * s.lightEveryMs)),
  ];
}

export interface WaitFigures {
  n: number;
  p50: number;
  p95: number;
  max: number;
}

export interface FleetRun {
  mode: 'off' | 'on';
  jobs: number;
  failed: number;
  /** How long the flood's submits took, back to back. */
  floodSubmitMs: number;
  /** First job created to last job finished (server timestamps). */
  makespanMs: number;
  /** Σ (finishedAt − startedAt): device slots held. */
  busyMs: number;
  /** Σ modelLoadMs. */
  modelLoadMs: number;
  /** modelLoadMs ÷ busyMs. */
  loadShare: number;
  coldStarts: number;
  /** Started jobs whose status body had no coldStart or modelLoadMs (then loadShare and coldStarts are NaN). */
  unreported: number;
  wait: Record<FleetStation, WaitFigures>;
}

export interface FleetResults {
  sizes: FleetSizes;
  seed: number;
  off: FleetRun;
  on: FleetRun;
}

interface StatusBody {
  id: string;
  status: string;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  coldStart?: boolean;
  modelLoadMs?: number;
  error?: { code: string; message: string };
}

export async function fleet(ctx: Ctx): Promise<FleetResults> {
  const s = ctx.sizes.fleet;
  const workload = fleetWorkload(s);
  const stationsFile = path.join(ctx.sys.dataDir, 'fleet-stations.json');
  // maxPending far above the flood, so no submit is refused.
  const maxPending = 10 * workload.length;
  fs.writeFileSync(stationsFile, JSON.stringify(FLEET_STATIONS.map((st) => ({ ...st, maxPending, weight: 1 }))));
  ctx.log(
    `   ${s.workers} workers × 1 slot, ${s.models} models, load ${s.loadMs} ms, run ${s.runMs[0]}–${s.runMs[1]} ms; ` +
      `flood ${s.floodJobs} jobs, light-a and light-b ${s.lightJobs} each, every ${s.lightEveryMs} ms`,
  );
  // The other benchmarks' api is not needed, and would only take CPU.
  await ctx.sys.stopApi();
  // Both set-ups start at once (starting processes is most of a quick run); the second one's
  // workers idle on a prefix of their own, with nothing to take, while the first one runs.
  const started = await Promise.allSettled((['off', 'on'] as const).map((mode) => startSetUp(ctx, mode, stationsFile)));
  const [off, on] = started.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
  try {
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const offRun = await runMode(ctx, off!, workload);
    await off!.stop();
    const onRun = await runMode(ctx, on!, workload);
    return { sizes: s, seed: SEED, off: offRun, on: onRun };
  } finally {
    await Promise.all([off?.stop(), on?.stop()]);
  }
}

interface SetUp {
  mode: 'off' | 'on';
  prefix: string;
  port: number;
  stop(): Promise<void>;
}

/** An api and the workers for one mode, on a Redis prefix of its own; stop() is safe to call twice. */
async function startSetUp(ctx: Ctx, mode: 'off' | 'on', stationsFile: string): Promise<SetUp> {
  const prefix = `benchfleet${mode}`;
  const env = {
    DARKROOM_REDIS_PREFIX: prefix,
    DARKROOM_STATIONS_FILE: stationsFile,
    DARKROOM_FAIR_SHARE: mode,
    DARKROOM_AFFINITY: mode,
  };
  const procs: ProcessHandle[] = [];
  const stop = () => Promise.all(procs.splice(0).map((p) => stopGracefully(p))).then(() => undefined);
  const spawned = await Promise.allSettled([
    ctx.sys.spawnApi(env),
    ...Array.from({ length: ctx.sizes.fleet.workers }, (_, i) =>
      ctx.sys.spawnWorker({
        ...env,
        DARKROOM_WORKER_NAME: `fleet-${mode}-${i}`,
        DARKROOM_WORKER_PIPELINES: 'synthetic',
        DARKROOM_WORKER_CONCURRENCY: '1',
        DARKROOM_WORKER_OVERLAP: '0',
        DARKROOM_SYNTHETIC_WARM_MODELS: '1',
      }),
    ),
  ]);
  for (const r of spawned) if (r.status === 'fulfilled') procs.push(r.value);
  const failed = spawned.find((r) => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  const api = (spawned[0] as PromiseFulfilledResult<ProcessHandle & { port: number }>).value;
  return { mode, prefix, port: api.port, stop };
}

async function runMode(ctx: Ctx, set: SetUp, workload: FleetJob[]): Promise<FleetRun> {
  const s = ctx.sizes.fleet;
  const { mode, port } = set;
  const queue = darkroomQueue(ctx, 'synthetic', set.prefix);
  try {
    const { ids, floodSubmitMs } = await timed(ctx, `9 fleet ${mode}`, async () => {
      const submitted = await submitAll(port, workload);
      ctx.log(`   ${mode}: ${workload.length} jobs submitted (flood in ${(submitted.floodSubmitMs / 1000).toFixed(1)} s); draining`);
      // Worst case every job starts cold; the margin covers process and Redis hiccups.
      const deadline = Date.now() + (workload.length * (s.loadMs + s.runMs[1] + 200)) / s.workers + 60_000;
      for (;;) {
        const c = await queue.getJobCounts('completed', 'failed');
        const done = (c.completed ?? 0) + (c.failed ?? 0);
        if (done >= workload.length) break;
        if (Date.now() > deadline) throw new Error(`${mode}: the jobs did not finish in time (${done} of ${workload.length})`);
        await sleep(100);
      }
      return submitted;
    });
    const run = figures(mode, workload, await statuses(port, workload, ids), floodSubmitMs);
    ctx.log(
      `   ${mode}: makespan ${(run.makespanMs / 1000).toFixed(1)} s, model loading ${(run.loadShare * 100).toFixed(1)} % of busy time, ${run.coldStarts} cold starts` +
        (run.failed ? `, ${run.failed} failed` : ''),
    );
    return run;
  } finally {
    await queue.close();
  }
}

function submitRequest(port: number, station: FleetStation, job: FleetJob): Buffer {
  const key = FLEET_STATIONS.find((st) => st.name === station)!.key;
  return buildRequest({
    method: 'POST',
    path: '/v1/jobs',
    host: `127.0.0.1:${port}`,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ pipeline: 'synthetic', params: job.params }),
  });
}

/** Each station on a keep-alive connection of its own; the light ones on their schedule from the first flood submit. */
async function submitAll(port: number, workload: FleetJob[]): Promise<{ ids: string[]; floodSubmitMs: number }> {
  const ids: string[] = new Array(workload.length);
  const conns = await Promise.all(FLEET_STATIONS.map(() => Connection.open('127.0.0.1', port)));
  let floodSubmitMs = 0;
  try {
    const t0 = performance.now();
    await Promise.all(
      FLEET_STATIONS.map(async (st, c) => {
        const conn = conns[c]!;
        for (const [i, job] of workload.entries()) {
          if (job.station !== st.name) continue;
          const wait = t0 + job.atMs - performance.now();
          if (wait > 0) await sleep(wait);
          const res = await conn.request(submitRequest(port, st.name, job));
          const text = res.body.toString('utf8');
          if (res.status !== 202) {
            throw new Error(`${st.name}: submit answered HTTP ${res.status}: ${text.slice(0, 300)} (params ${JSON.stringify(job.params)})`);
          }
          ids[i] = (JSON.parse(text) as { id: string }).id;
        }
        if (st.name === 'flood') floodSubmitMs = performance.now() - t0;
      }),
    );
  } finally {
    for (const c of conns) c.close();
  }
  return { ids, floodSubmitMs };
}

/** Every job's status body, read with its own station's key. */
async function statuses(port: number, workload: FleetJob[], ids: string[]): Promise<StatusBody[]> {
  const out: StatusBody[] = new Array(workload.length);
  await Promise.all(
    FLEET_STATIONS.map(async (st) => {
      const conn = await Connection.open('127.0.0.1', port);
      try {
        for (const [i, job] of workload.entries()) {
          if (job.station !== st.name) continue;
          const res = await conn.request(
            buildRequest({
              method: 'GET',
              path: `/v1/jobs/${ids[i]}`,
              host: `127.0.0.1:${port}`,
              headers: { Authorization: `Bearer ${st.key}` },
            }),
          );
          if (res.status !== 200)
            throw new Error(`GET /v1/jobs/${ids[i]} answered HTTP ${res.status}: ${res.body.toString('utf8', 0, 300)}`);
          out[i] = JSON.parse(res.body.toString('utf8')) as StatusBody;
        }
      } finally {
        conn.close();
      }
    }),
  );
  return out;
}

function figures(mode: 'off' | 'on', workload: FleetJob[], bodies: StatusBody[], floodSubmitMs: number): FleetRun {
  const t = (iso: string | undefined) => (iso ? Date.parse(iso) : Number.NaN);
  let failed = 0;
  let busyMs = 0;
  let modelLoadMs = 0;
  let coldStarts = 0;
  let unreported = 0;
  let firstCreated = Number.POSITIVE_INFINITY;
  let lastFinished = Number.NEGATIVE_INFINITY;
  const waits = new Map<FleetStation, number[]>(FLEET_STATIONS.map((st) => [st.name, []]));
  for (const [i, b] of bodies.entries()) {
    if (b.status !== 'completed') failed++;
    const created = t(b.createdAt);
    const started = t(b.startedAt);
    const finished = t(b.finishedAt);
    firstCreated = Math.min(firstCreated, created);
    if (Number.isFinite(finished)) lastFinished = Math.max(lastFinished, finished);
    if (!Number.isFinite(started)) continue;
    waits.get(workload[i]!.station)!.push(started - created);
    if (Number.isFinite(finished)) busyMs += finished - started;
    if (typeof b.modelLoadMs !== 'number' || typeof b.coldStart !== 'boolean') unreported++;
    else {
      modelLoadMs += b.modelLoadMs;
      if (b.coldStart) coldStarts++;
    }
  }
  const wait = {} as Record<FleetStation, WaitFigures>;
  for (const [name, w] of waits) {
    const sorted = w.sort((a, b) => a - b);
    wait[name] = {
      n: sorted.length,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      max: sorted[sorted.length - 1] ?? Number.NaN,
    };
  }
  return {
    mode,
    jobs: bodies.length,
    failed,
    floodSubmitMs: round(floodSubmitMs, 1),
    makespanMs: lastFinished - firstCreated,
    busyMs,
    modelLoadMs: unreported ? Number.NaN : modelLoadMs,
    loadShare: unreported ? Number.NaN : round(modelLoadMs / busyMs, 4),
    coldStarts: unreported ? Number.NaN : coldStarts,
    unreported,
    wait,
  };
}

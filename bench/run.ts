/*
 * `pnpm bench` — Darkroom against the limit of its own engine: bare BullMQ on the same Redis, on
 * the same machine, in the same run. Starts a private redis-server, the real api and worker
 * processes, runs the benchmarks, prints the figures and the targets (PASS/MISS, never an
 * exit code), and writes JSON and an SVG chart to bench/results/. `fleet` measures the scheduler
 * instead: the same GPU-fleet workload (simulated, no GPU) with the scheduler off, then on.
 *
 *   pnpm bench                 full run (about 7 minutes, 4 of them fleet)
 *   pnpm bench --quick         small sizes, seconds: proves the harness works (CI)
 *   pnpm bench --only=submit,latency   a subset: dispatch, duty, edit, submit, latency, lookup, uploads,
 *                              objectstore, fleet
 *   pnpm bench --profile       also CPU-profile the api and worker and print their hot spots
 *   pnpm bench --chart=docs/benchmarks.svg   also write the chart there
 *   pnpm bench --data-dir=/dev/shm/bench   make the data directory (Darkroom's and the HTTP
 *                              floor's) under this path instead of the OS temp directory
 *
 * Every run first probes the machine (file creation in the data directory, sha256 speed) and
 * prints it as context for the image-submit figures; see bench/lib/probe.ts.
 *
 * Exit code: 0 unless the harness itself broke (a process would not start, a benchmark threw).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../packages/testing/src/index.ts';
import { benchConfig, type Ctx, FULL, QUICK, type Sizes, type Window } from './lib/context.ts';
import { Redis, sharp } from './lib/deps.ts';
import type { OpenLoopResult } from './lib/http.ts';
import { describeProbe, type MachineProbe, probeMachine, yesNo } from './lib/probe.ts';
import { type ProfileSummary, printProfile, summarizeProfile } from './lib/profile.ts';
import { chartSvg, figuresTable, fmt, type Row, type Target, target, targetsTable } from './lib/report.ts';
import { round } from './lib/stats.ts';
import { startBenchSystem } from './lib/system.ts';
import { type DispatchResults, dispatch } from './scenarios/dispatch.ts';
import { duty } from './scenarios/duty.ts';
import { type EditResults, editOverhead } from './scenarios/edit.ts';
import { FLEET_STATIONS, type FleetResults, type FleetRun, fleet } from './scenarios/fleet.ts';
import { submitLatency } from './scenarios/latency.ts';
import { type LookupResults, lookups } from './scenarios/lookup.ts';
import { type ObjectStoreResults, objectStore, type StoreRun } from './scenarios/objectstore.ts';
import { bareAdd, floorSubmit, imageSubmit, jsonSubmit, type Throughput } from './scenarios/submit.ts';
import { type UploadResults, type UploadRun, uploadMemory } from './scenarios/uploads.ts';

const ALL = ['dispatch', 'duty', 'edit', 'submit', 'latency', 'lookup', 'uploads', 'objectstore', 'fleet'] as const;
type Bench = (typeof ALL)[number];

interface Args {
  quick: boolean;
  only: Set<Bench>;
  profile: boolean;
  chart?: string;
  connections?: number;
  dataDir?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, only: new Set(ALL), profile: false };
  for (const arg of argv) {
    if (arg === '--') continue;
    if (arg === '--quick') a.quick = true;
    else if (arg === '--profile') a.profile = true;
    else if (arg.startsWith('--only=')) {
      const names = arg.slice(7).split(',').filter(Boolean);
      for (const n of names)
        if (!(ALL as readonly string[]).includes(n)) throw new Error(`--only: unknown benchmark "${n}"; known: ${ALL.join(', ')}`);
      a.only = new Set(names as Bench[]);
    } else if (arg.startsWith('--chart=')) a.chart = arg.slice(8);
    else if (arg.startsWith('--connections=')) a.connections = Number(arg.slice(14));
    else if (arg.startsWith('--data-dir=')) {
      a.dataDir = arg.slice(11);
      if (!a.dataDir) throw new Error('--data-dir: give a directory, e.g. --data-dir=/dev/shm/bench (made if missing)');
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${fs.readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]}*/\n`);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (try --help)`);
  }
  // The latency benchmark paces at half the JSON submit rate measured just before it.
  if (a.only.has('latency')) a.only.add('submit');
  return a;
}

interface Results {
  machine: Record<string, unknown>;
  /** File creation in the data directory and sha256 speed, measured before the benchmarks. */
  probe?: MachineProbe;
  mode: 'quick' | 'full';
  sizes: Sizes;
  startedAt: string;
  finishedAt?: string;
  durationS?: number;
  loadAverage: { start: number[]; end?: number[] };
  dispatch?: DispatchResults;
  duty?: Awaited<ReturnType<typeof duty>>;
  edit?: EditResults;
  submit?: {
    imageBytes: number;
    bareAdd: Throughput[];
    imageSubmit?: Throughput;
    jsonSubmit?: Throughput;
    floor?: { image: Throughput; json: Throughput };
    bareAddMean: number;
  };
  latency?: OpenLoopResult & { maxRate: number };
  lookup?: LookupResults;
  uploads?: UploadResults;
  objectstore?: ObjectStoreResults;
  fleet?: FleetResults;
  rows: Row[];
  targets: Target[];
  windows: Window[];
  profiles?: ProfileSummary[];
  errors: string[];
}

async function machineInfo(redisUrl: string) {
  const r = new Redis(redisUrl);
  const info = await r.info('server');
  r.disconnect();
  const bullmq = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'packages/jobs/node_modules/bullmq/package.json'), 'utf8')).version;
  const ioredis = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'packages/jobs/node_modules/ioredis/package.json'), 'utf8')).version;
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown',
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    bullmq,
    ioredis,
    sharp: sharp.versions.sharp,
    libvips: sharp.versions.vips,
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const sizes: Sizes = { ...(args.quick ? QUICK : FULL), ...(args.connections ? { connections: args.connections } : {}) };
  const started = Date.now();
  const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
  const outDir = path.join(REPO_ROOT, 'bench/results');
  fs.mkdirSync(outDir, { recursive: true });
  const profDir = path.join(outDir, `profiles-${stamp}`);
  const log = (msg: string) => process.stdout.write(`${msg}\n`);

  log(`darkroom bench (${args.quick ? 'quick' : 'full'}): ${[...args.only].join(', ')}`);
  const sys = await startBenchSystem({ dataRoot: args.dataDir });
  // Ctrl-C: stop the private redis-server and the processes too (the api and worker die with us).
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`\n${sig}: stopping`);
      void sys.stop().finally(() => process.exit(130));
    });
  }
  const results: Results = {
    machine: await machineInfo(sys.redis.url),
    mode: args.quick ? 'quick' : 'full',
    sizes,
    startedAt: new Date(started).toISOString(),
    loadAverage: { start: os.loadavg().map((v) => round(v, 2)) },
    rows: [],
    targets: [],
    windows: [],
    errors: [],
  };
  const m = results.machine;
  log(
    `machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB; node ${m.node}, redis ${m.redis}, bullmq ${m.bullmq}, ioredis ${m.ioredis}, sharp ${m.sharp} (libvips ${m.libvips})`,
  );
  try {
    results.probe = probeMachine(sys.dataDir);
    log(`machine probe (data dir ${sys.dataDir}): ${describeProbe(results.probe)}`);
  } catch (err) {
    log(`machine probe failed: ${(err as Error).message}`);
  }
  log(`load average at start: ${results.loadAverage.start.join(' ')}`);

  const profEnv = args.profile
    ? { NODE_OPTIONS: `--import=${path.join(REPO_ROOT, 'bench/lib/cpu-profile.mjs')}`, BENCH_CPU_PROF_DIR: profDir }
    : ({} as Record<string, string>);
  const redis = new Redis(sys.redis.url);
  const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]) || undefined;
  const ctx: Ctx = {
    quick: args.quick,
    sizes,
    sys,
    config: benchConfig(sys),
    redis,
    windows: results.windows,
    pids: { redis: redisPid, bench: process.pid },
    log,
  };
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    log(`-- ${name}`);
    const t = Date.now();
    try {
      const r = await fn();
      log(`   done in ${((Date.now() - t) / 1000).toFixed(1)} s (load average ${os.loadavg()[0]!.toFixed(2)})`);
      return r;
    } catch (err) {
      const msg = `${name}: ${(err as Error).stack ?? err}`;
      results.errors.push(msg);
      log(`   FAILED: ${msg}`);
      return undefined;
    }
  };

  let apiPid: number | undefined;
  let workerPid: number | undefined;
  try {
    // fleet starts api processes of its own.
    if ([...args.only].some((b) => b !== 'fleet')) apiPid = (await sys.startApi(profEnv)).proc.pid;
    const needWorker = args.only.has('dispatch') || args.only.has('duty') || args.only.has('edit');
    if (needWorker) {
      workerPid = (await sys.startWorker({ ...profEnv, DARKROOM_WORKER_PIPELINES: 'synthetic,edit', DARKROOM_WORKER_CONCURRENCY: '1' }))
        .proc.pid;
      if (args.only.has('dispatch')) results.dispatch = await step('3. dispatch latency (idle worker)', () => dispatch(ctx));
      if (args.only.has('duty')) results.duty = await step('4. worker duty cycle (100 ms jobs, concurrency 1)', () => duty(ctx));
      if (args.only.has('edit')) results.edit = await step('5. edit overhead (4096×3072 JPEG → 2048 px WebP)', () => editOverhead(ctx));
      // From here on no worker runs: the queues just grow.
      await sys.stopWorker();
    }
    if (args.only.has('submit')) {
      const s: NonNullable<Results['submit']> = { imageBytes: 0, bareAdd: [], bareAddMean: Number.NaN };
      results.submit = s;
      const a1 = await step('1a. bare Queue.add, 64 in flight', () => bareAdd(ctx, 'a1'));
      if (a1) s.bareAdd.push(a1);
      const b = await step('1b. HTTP multipart submit, 32 KB PNG → edit', () => imageSubmit(ctx));
      if (b) {
        s.imageSubmit = b.result;
        s.imageBytes = b.imageBytes;
      }
      s.jsonSubmit = await step('1c. HTTP JSON submit → synthetic', () => jsonSubmit(ctx));
      s.floor = await step('1d. HTTP floor: node:http + Queue.add, same requests', () => floorSubmit(ctx));
      if (!args.quick) {
        // The baseline again, after the HTTP runs, so drift in the machine's load shows.
        const a2 = await step('1a. bare Queue.add again', () => bareAdd(ctx, 'a2'));
        if (a2) s.bareAdd.push(a2);
      }
      s.bareAddMean = s.bareAdd.length ? round(s.bareAdd.reduce((x, y) => x + y.jobsPerSec, 0) / s.bareAdd.length, 0) : Number.NaN;
    }
    if (args.only.has('latency') && results.submit?.jsonSubmit) {
      const max = results.submit.jsonSubmit.jobsPerSec;
      results.latency = await step(`2. submit latency at half the JSON maximum (${Math.round(max / 2)}/s, open loop)`, () =>
        submitLatency(ctx, max),
      );
    }
    if (args.only.has('lookup')) {
      results.lookup = await step(`6. memory and status lookups with ${fmt.n(sizes.lookupQueued)} jobs queued`, () => lookups(ctx));
    }
    if (args.only.has('uploads')) {
      results.uploads = await step('7. api memory under concurrent large uploads (spooled vs held in memory)', () => uploadMemory(ctx));
    }
    if (args.only.has('objectstore')) {
      results.objectstore = await step('8. blob store: S3 (one-node Swift) against fs, image submit and result download', async () => {
        const r = await objectStore(ctx, profEnv);
        if ('skipped' in r) log(`   skipped: ${r.skipped}`);
        return r;
      });
    }
    if (args.only.has('fleet')) {
      const f = sizes.fleet;
      results.fleet = await step(
        `9. fleet: scheduler off, then on (${f.workers} one-slot workers, ${f.models} models, ${f.floodJobs + 2 * f.lightJobs} jobs from 3 stations)`,
        () => fleet(ctx),
      );
    }
  } catch (err) {
    results.errors.push(`harness: ${(err as Error).stack ?? err}`);
    log(`harness failed: ${(err as Error).stack ?? err}`);
  } finally {
    redis.disconnect();
    await sys.stop().catch((err) => results.errors.push(`stop: ${(err as Error).message}`));
  }
  results.loadAverage.end = os.loadavg().map((v) => round(v, 2));
  results.finishedAt = new Date().toISOString();
  results.durationS = round((Date.now() - started) / 1000, 1);

  buildReport(results);
  log('');
  log(
    `Figures (${results.mode} run, ${results.durationS} s; load average ${results.loadAverage.start.join(' ')} → ${results.loadAverage.end.join(' ')}):`,
  );
  log(figuresTable(results.rows));
  log('');
  log('Targets:');
  log(targetsTable(results.targets));

  if (args.profile) {
    results.profiles = [];
    const files = fs.existsSync(profDir) ? fs.readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')) : [];
    for (const f of files) {
      const pid = Number(/^CPU\.(\d+)\.cpuprofile$/.exec(f)?.[1]);
      const os8 = results.objectstore;
      const storePids = os8 && !('skipped' in os8) ? os8.apiPids : [];
      const storeApi = storePids.includes(pid);
      const kind = pid === apiPid || storeApi ? 'api' : pid === workerPid ? 'worker' : undefined;
      if (!kind) continue;
      const wanted = storeApi
        ? new RegExp(`^8 objectstore .* ${storePids.indexOf(pid) === 0 ? 'fs' : 's3'}$`)
        : kind === 'api'
          ? /^(1b|1c|2 |6 status)/
          : /^(3 dispatch darkroom|4 duty darkroom|5 edit)/;
      for (const w of results.windows.filter((x) => wanted.test(x.name))) {
        const s = summarizeProfile(path.join(profDir, f), w);
        results.profiles.push(s);
        printProfile(s, log);
      }
    }
    log(`\nprofiles: ${profDir} (open in Chrome DevTools → Performance, or speedscope)`);
    log('note: the profiler itself costs CPU; take figures from a run without --profile.');
  }

  const jsonFile = path.join(outDir, `${stamp}${args.quick ? '-quick' : ''}.json`);
  fs.writeFileSync(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
  const svg = chartSvg(
    results.targets,
    `Darkroom vs bare BullMQ — targets (${results.mode} run)`,
    `${m.cpus} × ${m.cpuModel}, node ${m.node}, redis ${m.redis}, bullmq ${m.bullmq}; ${results.startedAt.slice(0, 16).replace('T', ' ')} UTC; load ${results.loadAverage.start[0]}`,
  );
  const svgFile = jsonFile.replace(/\.json$/, '.svg');
  fs.writeFileSync(svgFile, svg);
  if (args.chart) fs.writeFileSync(path.resolve(args.chart), svg);
  log(
    `\nresults: ${path.relative(process.cwd(), jsonFile)}, chart: ${path.relative(process.cwd(), svgFile)}${args.chart ? ` and ${args.chart}` : ''}`,
  );
  if (results.errors.length > 0) {
    log(`\n${results.errors.length} benchmark(s) failed to run:`);
    for (const e of results.errors) log(`  ${e.split('\n')[0]}`);
    process.exitCode = 1;
  }
}

/** Rows and targets from whatever ran. */
function buildReport(r: Results): void {
  const rows = r.rows;
  const t = r.targets;
  const s = r.submit;
  if (r.probe) {
    // Context for 1b and 1d (each upload is a new file and a sha256), never judged.
    const p = r.probe;
    rows.push({
      id: '—',
      metric: 'machine: file create in data dir p50/p90 µs; sha256 MB/s (SHA-NI yes/no)',
      darkroom: `${fmt.n(p.fileCreateUs.p50)} / ${fmt.n(p.fileCreateUs.p90)} µs; ${fmt.n(p.sha256MBps)} MB/s (SHA-NI ${yesNo(p.shaNi)})`,
      baseline: '—',
      ratio: p.fsType ? `data dir on ${p.fsType}${p.journal === undefined ? '' : p.journal ? ' (journal)' : ' (no journal)'}` : '—',
    });
  }
  if (s) {
    const base = s.bareAddMean;
    const a = s.bareAdd;
    const cpu = (x: Throughput | undefined) =>
      x
        ? Object.entries(x.cpuUsPerJob)
            .filter(([, v]) => Number.isFinite(v))
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')
        : '';
    rows.push({
      id: '1a',
      metric: 'CPU µs per job by process (bench = load generator / bare producer)',
      darkroom: [s.imageSubmit && `image: ${cpu(s.imageSubmit)}`, s.jsonSubmit && `JSON: ${cpu(s.jsonSubmit)}`].filter(Boolean).join('; '),
      baseline: cpu(a[0]),
      ratio: '—',
    });
    rows.push({
      id: '1a',
      metric: `bare Queue.add, ${r.sizes.connections} in flight (jobs/s)`,
      darkroom: '—',
      baseline: `${fmt.n(base)}${a.length > 1 ? ` (runs: ${a.map((x) => fmt.n(x.jobsPerSec)).join(', ')})` : ''}`,
      ratio: '—',
    });
    const tp = (id: string, label: string, short: string, x: Throughput | undefined, limit: number) => {
      if (!x) return;
      const ratio = x.jobsPerSec / base;
      rows.push({
        id,
        metric: `${label}, ${x.connections} clients (jobs/s)${x.errors ? ` [${x.errors} errors]` : ''}`,
        darkroom: fmt.n(x.jobsPerSec),
        baseline: fmt.n(base),
        ratio: fmt.x(ratio),
      });
      t.push(target(id, `${short} ÷ bare Queue.add`, round(ratio, 3), '×', 'min', limit));
    };
    tp('1b', 'image submit (multipart 32 KB PNG)', 'image submit', s.imageSubmit, 0.25);
    tp('1c', 'JSON submit (synthetic)', 'JSON submit', s.jsonSubmit, 0.4);
    const f = s.floor;
    if (f) {
      rows.push({
        id: '1d',
        metric: 'HTTP floor: node:http + Queue.add, no framework/auth/validation (jobs/s image / JSON)',
        darkroom: `${fmt.n(f.image.jobsPerSec)} / ${fmt.n(f.json.jobsPerSec)}`,
        baseline: fmt.n(base),
        ratio: `${fmt.x(f.image.jobsPerSec / base)} / ${fmt.x(f.json.jobsPerSec / base)}`,
      });
      rows.push({
        id: '1d',
        metric: 'Darkroom ÷ HTTP floor (image / JSON); floor CPU µs per job',
        darkroom: `${s.imageSubmit ? fmt.x(s.imageSubmit.jobsPerSec / f.image.jobsPerSec) : '—'} / ${s.jsonSubmit ? fmt.x(s.jsonSubmit.jobsPerSec / f.json.jobsPerSec) : '—'}`,
        baseline: `image: ${cpu(f.image)}; JSON: ${cpu(f.json)}`,
        ratio: '—',
      });
    }
  }
  if (r.latency) {
    const l = r.latency;
    rows.push({
      id: '2',
      metric: `submit latency p50 / p99 at ${fmt.n(l.targetRate)}/s open loop${l.errors ? ` [${l.errors} errors]` : ''}`,
      darkroom: `${fmt.ms(l.latency.p50)} / ${fmt.ms(l.latency.p99)}`,
      baseline: '—',
      ratio: `from schedule: ${fmt.ms(l.fromSchedule.p50)} / ${fmt.ms(l.fromSchedule.p99)}; client send lag p99 ${fmt.ms(l.sendLag.p99)}`,
    });
    t.push(target('2', 'submit latency p50', l.latency.p50, 'ms', 'max', 2));
    t.push(target('2', 'submit latency p99', l.latency.p99, 'ms', 'max', 10));
  }
  if (r.dispatch) {
    const d = r.dispatch;
    const pair = (x: { p50: number; p99: number }) => `${fmt.ms(x.p50)} / ${fmt.ms(x.p99)}`;
    rows.push({
      id: '3',
      metric: 'dispatch add → active p50 / p99 (idle worker)',
      darkroom: pair(d.darkroom.addToActive),
      baseline: pair(d.bare.addToActive),
      ratio: `${fmt.x(d.darkroom.addToActive.p50 / d.bare.addToActive.p50)} p50; in-process bare ${pair(d.bareInProcess.addToActive)}`,
    });
    rows.push({
      id: '3',
      metric: 'dispatch add → first progress p50 / p99',
      darkroom: pair(d.darkroom.addToProgress),
      baseline: pair(d.bare.addToProgress),
      ratio: `${fmt.x(d.darkroom.addToProgress.p50 / d.bare.addToProgress.p50)} p50`,
    });
    rows.push({
      id: '3',
      metric: 'dispatch processedOn − timestamp p50 / p99 (whole ms)',
      darkroom: pair(d.darkroom.processedMinusTimestamp),
      baseline: pair(d.bare.processedMinusTimestamp),
      ratio: '—',
    });
    t.push(target('3', 'dispatch p50 (add → active)', d.darkroom.addToActive.p50, 'ms', 'max', 1.5));
    t.push(target('3', 'dispatch p99 (add → active)', d.darkroom.addToActive.p99, 'ms', 'max', 10));
  }
  if (r.duty) {
    const { darkroom, bare } = r.duty;
    rows.push({
      id: '4',
      metric: `worker duty cycle, ${darkroom.jobs} × 100 ms jobs (device idle per job; in-job time past 100 ms / gap)`,
      darkroom: `${fmt.pct(darkroom.duty)} (${fmt.ms(darkroom.idlePerJobMs)}; ${fmt.ms(darkroom.inJobOverheadMs)} / ${fmt.ms(darkroom.gapMs)})`,
      baseline: `${fmt.pct(bare.duty)} (${fmt.ms(bare.idlePerJobMs)}; ${fmt.ms(bare.inJobOverheadMs)} / ${fmt.ms(bare.gapMs)})`,
      ratio: fmt.x(darkroom.duty / bare.duty),
    });
    t.push(target('4', 'worker duty cycle', darkroom.duty, '%', 'min', 0.98));
  }
  if (r.edit) {
    const e = r.edit;
    rows.push({
      id: '5',
      metric: `edit 4096×3072 JPEG → 2048 px WebP, median of ${e.reps} (download ${fmt.ms(e.downloadMedianMs)})`,
      darkroom: fmt.ms(e.e2eMedianMs),
      baseline: `${fmt.ms(e.directMedianMs)} (sharp direct)`,
      ratio: `${fmt.x(e.ratio)} (${fmt.x(e.ratioWithDownload)} with download)`,
    });
    t.push(target('5', 'edit end-to-end ÷ direct sharp', e.ratio, '×', 'max', 1.15));
  }
  const mem: number[] = [];
  if (s) {
    const a = s.bareAdd[0];
    const parts: string[] = [];
    if (s.imageSubmit) {
      parts.push(`edit via api ${fmt.n(s.imageSubmit.memory.bytesPerJob)} B (${fmt.n(s.imageSubmit.memory.jobs)} jobs)`);
      mem.push(s.imageSubmit.memory.bytesPerJob);
    }
    if (s.jsonSubmit) {
      parts.push(`synthetic via api ${fmt.n(s.jsonSubmit.memory.bytesPerJob)} B (${fmt.n(s.jsonSubmit.memory.jobs)} jobs)`);
      mem.push(s.jsonSubmit.memory.bytesPerJob);
    }
    if (r.lookup && Number.isFinite(r.lookup.memory.topUpBytesPerJob)) {
      parts.push(`top-up ${fmt.n(r.lookup.memory.topUpBytesPerJob)} B (${fmt.n(r.lookup.toppedUp)} jobs)`);
      mem.push(r.lookup.memory.topUpBytesPerJob);
    }
    rows.push({
      id: '6',
      metric: 'Redis memory per queued job (used_memory Δ ÷ jobs)',
      darkroom: parts.join('; '),
      baseline: a ? `${fmt.n(a.memory.bytesPerJob)} B (bare add, edit data)` : '—',
      ratio: a && mem.length ? fmt.x(Math.max(...mem) / a.memory.bytesPerJob) : '—',
    });
  }
  const finite = mem.filter(Number.isFinite);
  if (finite.length) t.push(target('6', 'Redis memory per queued job (worst)', Math.max(...finite), 'B', 'max', 2048));
  if (r.lookup) {
    const l = r.lookup;
    rows.push({
      id: '6',
      metric: `GET /v1/jobs/{id} p50 / p99, ${fmt.n(l.queued)} queued, ${fmt.n(l.lookup.ok)} lookups${l.lookup.errors ? ` [${l.lookup.errors} errors]` : ''}`,
      darkroom: `${fmt.ms(l.lookup.latency.p50)} / ${fmt.ms(l.lookup.latency.p99)}`,
      baseline: '—',
      ratio: `job hash ${fmt.n(l.memory.jobHashBytes)} B`,
    });
    t.push(target('6', `status lookup p99 (${fmt.n(l.queued)} queued)`, l.lookup.latency.p99, 'ms', 'max', 5));
  }
  if (r.uploads) {
    const u = r.uploads;
    const run = (x: UploadRun) =>
      `+${fmt.n(x.growthMiB)} MiB (peak ${fmt.n(x.peakRssMiB)}), ${x.mbPerSec} MB/s, ${fmt.n(x.uploads)} uploads${x.errors ? ` [${x.errors} errors: ${x.firstError}]` : ''}`;
    rows.push({
      id: '7',
      metric: `api RSS growth, ${u.connections} clients uploading a ${(u.imageBytes / 1e6).toFixed(1)} MB JPEG (multipart)`,
      darkroom: `spooled: ${run(u.spooled)}`,
      baseline: `held in memory: ${run(u.inMemory)}`,
      ratio: u.inMemory.growthMiB > 0 ? fmt.x(u.spooled.growthMiB / u.inMemory.growthMiB) : '—',
    });
  }
  if (r.objectstore) objectStoreRows(r.objectstore, rows);
  if (r.fleet) fleetReport(r.fleet, rows, t);
}

/**
 * 9: the scheduler on ÷ off, same workload, same run. The makespan target allows 5 % over the
 * baseline: both runs share the machine with whatever else runs, and a few jobs' order decides the
 * tail.
 */
function fleetReport(f: FleetResults, rows: Row[], t: Target[]): void {
  const { on, off, sizes: z } = f;
  const s = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s` : 'n/a');
  const failed = (x: FleetRun) => (x.failed ? ` [${x.failed} failed]` : '');
  const unreported = (x: FleetRun) => (x.unreported ? ` [${x.unreported} without coldStart/modelLoadMs]` : '');
  const load = (x: FleetRun) =>
    `${fmt.pct(x.loadShare)} (${fmt.n(x.modelLoadMs / 1000, 1)} of ${fmt.n(x.busyMs / 1000, 1)} s); ${fmt.n(x.coldStarts)} cold${unreported(x)}`;
  rows.push({
    id: '9',
    metric: `fleet: model loading ÷ busy device time; jobs started cold (${on.jobs} jobs, ${z.workers} one-slot workers, ${z.models} models, load ${fmt.n(z.loadMs)} ms); scheduler on vs off`,
    darkroom: `on: ${load(on)}`,
    baseline: `off: ${load(off)}`,
    ratio: fmt.x(on.loadShare / off.loadShare),
  });
  for (const st of FLEET_STATIONS) {
    const a = on.wait[st.name];
    const b = off.wait[st.name];
    rows.push({
      id: '9',
      metric: `fleet: wait (startedAt − createdAt) p50 / p95, station ${st.name} (${a.n} jobs)`,
      darkroom: `on: ${s(a.p50)} / ${s(a.p95)}`,
      baseline: `off: ${s(b.p50)} / ${s(b.p95)}`,
      ratio: `${fmt.x(a.p50 / b.p50)} p50, ${fmt.x(a.p95 / b.p95)} p95`,
    });
  }
  rows.push({
    id: '9',
    metric: 'fleet: makespan, first job created to last finished',
    darkroom: `on: ${s(on.makespanMs)}${failed(on)}`,
    baseline: `off: ${s(off.makespanMs)}${failed(off)}`,
    ratio: fmt.x(on.makespanMs / off.makespanMs),
  });
  t.push(target('9', 'fleet model loading share, on ÷ off', round(on.loadShare / off.loadShare, 3), '×', 'max', 0.25));
  for (const st of FLEET_STATIONS.filter((x) => x.name !== 'flood')) {
    t.push(target('9', `fleet ${st.name} wait p95, on ÷ off`, round(on.wait[st.name].p95 / off.wait[st.name].p95, 3), '×', 'max', 0.2));
  }
  t.push(target('9', 'fleet makespan, on ÷ off', round(on.makespanMs / off.makespanMs, 3), '×', 'max', 1.05));
}

/** 8: Darkroom with the S3 store ÷ Darkroom with the fs store, same run; a reference, no target. */
function objectStoreRows(o: ObjectStoreResults, rows: Row[]): void {
  if ('skipped' in o) {
    rows.push({
      id: '8',
      metric: 'blob store S3 ÷ fs (reference, no target)',
      darkroom: `skipped: ${o.skipped}`,
      baseline: '—',
      ratio: '—',
    });
    return;
  }
  const err = (n: number, first?: string) => (n ? ` [${n} errors: ${first?.slice(0, 80)}]` : '');
  const us = (x: Record<string, number>, k: string) => (Number.isFinite(x[k]) ? fmt.n(x[k]!) : 'n/a');
  const sub = (x: StoreRun) =>
    `${fmt.n(x.submit.jobsPerSec)}/s; api ${us(x.submit.cpuUsPerJob, 'api')} µs, store ${us(x.submit.cpuUsPerJob, 'store')} µs${err(x.submit.errors, x.submit.firstError)}`;
  const dl = (x: StoreRun) =>
    `${fmt.n(x.download.perSec)}/s; api ${us(x.download.cpuUsPerDownload, 'api')} µs, store ${us(x.download.cpuUsPerDownload, 'store')} µs${err(x.download.errors, x.download.firstError)}`;
  const lat = (x: StoreRun) => `${fmt.ms(x.download.latency.p50)} / ${fmt.ms(x.download.latency.p99)}`;
  // Two significant digits: an S3 figure can be a small fraction of the fs one.
  const x = (v: number) => (Number.isFinite(v) ? `${v < 1 ? v.toPrecision(2) : v.toFixed(2)}×` : 'n/a');
  const both = (a: number, b: number, c: number, d: number) => `${x(a / b)} per s; ${x(c / d)} api CPU`;
  const { fs: f, s3 } = o;
  rows.push({
    id: '8',
    metric: `image submit (multipart 32 KB PNG), S3 (one-node Swift) vs fs store, ${f.submit.connections} clients; CPU µs per submit (reference)`,
    darkroom: `S3: ${sub(s3)}`,
    baseline: `fs: ${sub(f)}`,
    ratio: both(s3.submit.jobsPerSec, f.submit.jobsPerSec, s3.submit.cpuUsPerJob.api!, f.submit.cpuUsPerJob.api!),
  });
  rows.push({
    id: '8',
    metric: `GET /v1/jobs/{id}/result (${fmt.n(f.download.resultBytes)} B WebP), ${f.download.connections} clients; CPU µs per download (reference)`,
    darkroom: `S3: ${dl(s3)}`,
    baseline: `fs: ${dl(f)}`,
    ratio: both(s3.download.perSec, f.download.perSec, s3.download.cpuUsPerDownload.api!, f.download.cpuUsPerDownload.api!),
  });
  rows.push({
    id: '8',
    metric: `result download latency p50 / p99, one at a time (${fmt.n(f.download.latency.n)} requests) (reference)`,
    darkroom: `S3: ${lat(s3)}`,
    baseline: `fs: ${lat(f)}`,
    ratio: `${x(s3.download.latency.p50 / f.download.latency.p50)} p50, ${x(s3.download.latency.p99 / f.download.latency.p99)} p99`,
  });
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);

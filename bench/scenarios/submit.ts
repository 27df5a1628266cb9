import fs from 'node:fs';
import path from 'node:path';
import {
  apiEquivalentJob,
  authHeaders,
  BASE_PREFIX,
  type Ctx,
  darkroomQueue,
  EDIT_PARAMS,
  jsonSubmitRequest,
  timed,
  usedMemory,
} from '../lib/context.ts';
import { perJobUs, snapshot } from '../lib/cpu.ts';
import { buildRequest, closedLoop, type LoadResult, multipartBody } from '../lib/http.ts';
import { noisePng } from '../lib/images.ts';
import { now, round, type Summary, sleep, summarize } from '../lib/stats.ts';
import { startBareHttp } from '../lib/system.ts';

/*
 * 1. Submit throughput with many concurrent clients, no worker running (the queues just grow):
 *   (a) bare Queue.add of the job the api would queue, 64 in flight, from this process;
 *   (b) POST /v1/jobs multipart with a 32 KB PNG to `edit`;
 *   (c) POST /v1/jobs JSON, a `synthetic` job with no image.
 * Each run also yields Redis memory per queued job (used_memory after − before, over the jobs
 * that run created).
 */

export interface Throughput {
  jobsPerSec: number;
  ok: number;
  errors: number;
  firstError?: string;
  /** Latency of each request under this closed-loop load (mostly queueing at saturation). */
  latency: Summary;
  connections: number;
  memory: { jobs: number; bytes: number; bytesPerJob: number };
  /** CPU µs per job created, per process (api, redis, bench = the load generator or the bare producer). */
  cpuUsPerJob: Record<string, number>;
}

export interface SubmitResults {
  imageBytes: number;
  bareAdd: Throughput[];
  imageSubmit: Throughput;
  jsonSubmit: Throughput;
}

export async function bareAdd(ctx: Ctx, label: string): Promise<Throughput> {
  const { sizes, config } = ctx;
  const png = await noisePng();
  // Its own prefix: the baseline starts on an empty queue, as the api's `edit` queue does.
  const queue = darkroomQueue(ctx, 'edit', `${BASE_PREFIX}${label}`);
  await queue.waitUntilReady();
  const image = { bytes: png.data.length, width: png.width, height: png.height };
  const before = await usedMemory(ctx.redis);
  const cpu0 = snapshot(ctx.pids);
  const t0 = now();
  const from = t0 + sizes.warmupMs;
  const to = from + sizes.submitMs;
  let ok = 0;
  let total = 0;
  let errors = 0;
  let firstError: string | undefined;
  const lat: number[] = [];
  await timed(ctx, `1a bare Queue.add ${label}`, () =>
    Promise.all(
      Array.from({ length: sizes.connections }, async () => {
        while (now() < to) {
          const job = apiEquivalentJob(config, 'edit', EDIT_PARAMS, image);
          const start = now();
          try {
            await queue.add(job.name, job.data as never, job.opts);
            total++;
            const end = now();
            if (start >= from && end <= to) {
              ok++;
              lat.push(end - start);
            }
          } catch (err) {
            errors++;
            firstError ??= (err as Error).message;
            await sleep(5);
          }
        }
      }),
    ),
  );
  const cpu1 = snapshot(ctx.pids);
  const after = await usedMemory(ctx.redis);
  await queue.close();
  return {
    cpuUsPerJob: perJobUs(cpu0, cpu1, total),
    jobsPerSec: round(ok / (sizes.submitMs / 1000), 0),
    ok,
    errors,
    firstError,
    latency: summarize(lat),
    connections: sizes.connections,
    memory: memoryOf(before, after, total),
  };
}

function memoryOf(before: number, after: number, jobs: number) {
  return { jobs, bytes: after - before, bytesPerJob: jobs > 0 ? round((after - before) / jobs, 0) : Number.NaN };
}

async function httpSubmit(
  ctx: Ctx,
  name: string,
  request: Buffer,
  server: { port: number; pid: number; label: string } = { port: ctx.sys.api!.port, pid: ctx.sys.api!.proc.pid!, label: 'api' },
): Promise<Throughput> {
  const before = await usedMemory(ctx.redis);
  const pids = { [server.label]: server.pid, ...ctx.pids };
  const cpu0 = snapshot(pids);
  const r: LoadResult = await timed(ctx, name, () =>
    closedLoop({
      host: '127.0.0.1',
      port: server.port,
      connections: ctx.sizes.connections,
      warmupMs: ctx.sizes.warmupMs,
      durationMs: ctx.sizes.submitMs,
      request: () => request,
      expect: 202,
    }),
  );
  const cpu1 = snapshot(pids);
  // The last answers can arrive a moment before the api's own bookkeeping settles.
  await sleep(50);
  const after = await usedMemory(ctx.redis);
  return {
    cpuUsPerJob: perJobUs(cpu0, cpu1, r.totalOk),
    jobsPerSec: round(r.rate, 0),
    ok: r.ok,
    errors: r.errors,
    firstError: r.firstError,
    latency: r.latency,
    connections: ctx.sizes.connections,
    memory: memoryOf(before, after, r.totalOk),
  };
}

async function imageRequest(port: number): Promise<{ request: Buffer; imageBytes: number }> {
  const png = await noisePng();
  const mp = multipartBody(
    { pipeline: 'edit', params: JSON.stringify(EDIT_PARAMS), priority: 'normal' },
    { name: 'image', filename: 'noise.png', type: 'image/png', data: png.data },
  );
  const request = buildRequest({
    method: 'POST',
    path: '/v1/jobs',
    host: `127.0.0.1:${port}`,
    headers: { ...authHeaders(), 'Content-Type': mp.contentType },
    body: mp.body,
  });
  return { request, imageBytes: png.data.length };
}

export async function imageSubmit(ctx: Ctx): Promise<{ result: Throughput; imageBytes: number }> {
  const { request, imageBytes } = await imageRequest(ctx.sys.api!.port);
  return { result: await httpSubmit(ctx, '1b image submit (multipart, 32 KB PNG)', request), imageBytes };
}

export async function jsonSubmit(ctx: Ctx): Promise<Throughput> {
  return httpSubmit(ctx, '1c JSON submit (synthetic)', jsonSubmitRequest(ctx.sys.api!.port));
}

/**
 * 1d. The HTTP floor: the same two requests against a bare node:http server that only writes the
 * upload to a file and calls Queue.add (bench/lib/bare-http.ts). What HTTP itself costs here.
 */
export async function floorSubmit(ctx: Ctx): Promise<{ image: Throughput; json: Throughput }> {
  const dir = path.join(ctx.sys.dataDir, 'floor');
  const srv = await startBareHttp(ctx.sys.redis.url, `${BASE_PREFIX}floor`, dir);
  try {
    const server = { port: srv.port, pid: srv.pid, label: 'floor' };
    const { request } = await imageRequest(srv.port);
    const image = await httpSubmit(ctx, '1d floor image submit', request, server);
    const json = await httpSubmit(ctx, '1d floor JSON submit', jsonSubmitRequest(srv.port), server);
    return { image, json };
  } finally {
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

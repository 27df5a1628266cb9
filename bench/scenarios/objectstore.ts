import fs from 'node:fs';
import { hasObjectStoreServer, type ObjectStoreHandle, startObjectStore } from '../../packages/testing/src/index.ts';
import { authHeaders, type Ctx, EDIT_PARAMS, timed } from '../lib/context.ts';
import { cpuMs, perJobUs, snapshot } from '../lib/cpu.ts';
import { buildRequest, closedLoop, multipartBody, sequential } from '../lib/http.ts';
import { noisePng } from '../lib/images.ts';
import { round, type Summary, sleep } from '../lib/stats.ts';

/*
 * 8. The blob store on an S3-compatible object store against the local filesystem: the same api
 * and worker, started once with DARKROOM_BLOB_STORE=fs and once with =s3 on a one-node
 * OpenStack Swift (packages/testing's startObjectStore), each on a Redis prefix of its own so
 * both start on empty queues. In each set-up:
 *   - a few `edit` jobs (the 32 KB PNG of 1b → 512 px WebP) run to completion (?wait), so there
 *     are results to download; then the worker stops;
 *   - image submit throughput, closed loop, as 1b measures it (api CPU µs per submit);
 *   - GET /v1/jobs/{id}/result throughput, closed loop over those results (api CPU µs per
 *     download), then unloaded latency, one request at a time on one connection.
 * CPU of the Swift servers and memcached (children of this process) is reported as `store`.
 * A reference row: no target. Without Swift installed (or if it does not start) the row says
 * it was skipped and why.
 */

export interface StoreRun {
  store: 'fs' | 's3';
  submit: { jobsPerSec: number; connections: number; ok: number; errors: number; firstError?: string; cpuUsPerJob: Record<string, number> };
  download: {
    perSec: number;
    ok: number;
    errors: number;
    firstError?: string;
    connections: number;
    cpuUsPerDownload: Record<string, number>;
    /** Under the closed-loop load (mostly queueing). */
    loadedLatency: Summary;
    /** One request at a time. */
    latency: Summary;
    resultBytes: number;
    results: number;
  };
}

export type ObjectStoreResults = { skipped: string } | { fs: StoreRun; s3: StoreRun; apiPids: number[] };

/** The Swift servers and memcached that startObjectStore spawned from this process. */
function storePids(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (/swift-|memcached/.test(cmd)) pids.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** One pseudo-process `store`: the sum of the store's processes. */
function withStore(pids: Record<string, number | undefined>, store: number[]) {
  const snap = snapshot(pids);
  snap.store = store.length ? store.reduce((sum, pid) => sum + cpuMs(pid), 0) : Number.NaN;
  return snap;
}

/** `procEnv`: extra environment for the api and worker (the CPU profiler under --profile). */
export async function objectStore(ctx: Ctx, procEnv: Record<string, string> = {}): Promise<ObjectStoreResults> {
  if (process.platform !== 'linux') return { skipped: 'the object store runs on Linux only' };
  if (!hasObjectStoreServer()) {
    return { skipped: 'OpenStack Swift is not installed (swift-proxy swift-object swift-container swift-account memcached)' };
  }
  let swift: ObjectStoreHandle;
  try {
    swift = await startObjectStore();
  } catch (err) {
    return { skipped: `Swift did not start: ${(err as Error).message.split('\n')[0]}` };
  }
  // On a busy machine a backend can answer 503 for a while after the proxy is up.
  let bucket: string | undefined;
  let lastError: unknown;
  for (const deadline = Date.now() + 30_000; !bucket && Date.now() < deadline; ) {
    bucket = await swift.createBucket(`darkroom-bench-${Date.now()}`).catch((err) => {
      lastError = err;
      return sleep(500).then(() => undefined);
    });
  }
  if (!bucket) {
    await swift.stop();
    return { skipped: `Swift started but would not create a bucket: ${(lastError as Error).message.split('\n')[0]}` };
  }
  try {
    const store = storePids();
    const apiPids: number[] = [];
    const run = async (kind: 'fs' | 's3'): Promise<StoreRun> => {
      const env = { ...(kind === 's3' ? swift.env(bucket!, 'bench/') : {}), DARKROOM_REDIS_PREFIX: `benchstore${kind}`, ...procEnv };
      await ctx.sys.stopApi();
      await ctx.sys.stopWorker();
      const api = await ctx.sys.startApi(env);
      apiPids.push(api.proc.pid!);
      await ctx.sys.startWorker({ ...env, DARKROOM_WORKER_PIPELINES: 'edit', DARKROOM_WORKER_CONCURRENCY: '2' });
      const png = await noisePng();
      const mp = multipartBody(
        { pipeline: 'edit', params: JSON.stringify(EDIT_PARAMS), priority: 'normal' },
        { name: 'image', filename: 'noise.png', type: 'image/png', data: png.data },
      );
      const submitRequest = (wait: boolean) =>
        buildRequest({
          method: 'POST',
          path: wait ? '/v1/jobs?wait=30' : '/v1/jobs',
          host: `127.0.0.1:${api.port}`,
          headers: { ...authHeaders(), 'Content-Type': mp.contentType },
          body: mp.body,
        });

      // Results to download: a few jobs run through the worker, then the worker stops.
      const ids: string[] = [];
      const made = await sequential({
        host: '127.0.0.1',
        port: api.port,
        requests: Array.from({ length: ctx.quick ? 2 : 16 }, () => submitRequest(true)),
        expect: 200,
        check: (res) => {
          const body = JSON.parse(res.body.toString('utf8')) as { id: string; status: string };
          if (body.status !== 'completed') return `job ${body.id} ended ${body.status}`;
          ids.push(body.id);
          return undefined;
        },
      });
      if (made.errors || ids.length === 0) throw new Error(`${kind}: edit jobs did not complete: ${made.firstError}`);
      await ctx.sys.stopWorker();

      const pids = { api: api.proc.pid, ...ctx.pids };
      // Image submit, as 1b.
      const c0 = withStore(pids, store);
      const sub = await timed(ctx, `8 objectstore submit ${kind}`, () =>
        closedLoop({
          host: '127.0.0.1',
          port: api.port,
          connections: ctx.sizes.connections,
          warmupMs: ctx.sizes.warmupMs,
          durationMs: ctx.sizes.submitMs,
          request: () => submitRequest(false),
          expect: 202,
        }),
      );
      const c1 = withStore(pids, store);

      // Result downloads, round robin over the finished jobs.
      const gets = ids.map((id) =>
        buildRequest({ method: 'GET', path: `/v1/jobs/${id}/result`, host: `127.0.0.1:${api.port}`, headers: authHeaders() }),
      );
      let resultBytes = 0;
      let n = 0;
      const connections = Math.min(ctx.sizes.connections, 16);
      const d0 = withStore(pids, store);
      const dl = await timed(ctx, `8 objectstore download ${kind}`, () =>
        closedLoop({
          host: '127.0.0.1',
          port: api.port,
          connections,
          warmupMs: ctx.sizes.warmupMs,
          durationMs: ctx.sizes.submitMs,
          request: () => gets[n++ % gets.length]!,
          expect: 200,
          onOk: (res) => {
            resultBytes = res.body.length;
          },
        }),
      );
      const d1 = withStore(pids, store);
      const seq = await timed(ctx, `8 objectstore download latency ${kind}`, () =>
        sequential({
          host: '127.0.0.1',
          port: api.port,
          requests: Array.from({ length: ctx.quick ? 100 : 1000 }, (_, i) => gets[i % gets.length]!),
          expect: 200,
        }),
      );
      return {
        store: kind,
        submit: {
          jobsPerSec: round(sub.rate, 0),
          connections: ctx.sizes.connections,
          ok: sub.ok,
          errors: sub.errors,
          ...(sub.firstError ? { firstError: sub.firstError } : {}),
          cpuUsPerJob: perJobUs(c0, c1, sub.totalOk),
        },
        download: {
          perSec: round(dl.rate, 0),
          ok: dl.ok,
          errors: dl.errors + seq.errors,
          ...(dl.firstError || seq.firstError ? { firstError: dl.firstError ?? seq.firstError } : {}),
          connections,
          cpuUsPerDownload: perJobUs(d0, d1, dl.totalOk),
          loadedLatency: dl.latency,
          latency: seq.latency,
          resultBytes,
          results: ids.length,
        },
      };
    };
    const fsRun = await run('fs');
    const s3Run = await run('s3');
    return { fs: fsRun, s3: s3Run, apiPids };
  } finally {
    // It runs last: the api stays up on its last set-up, until the bench stops it.
    await ctx.sys.stopWorker();
    await swift.stop();
  }
}

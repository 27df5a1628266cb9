import { authHeaders, type Ctx, jsonSubmitRequest, timed, usedMemory } from '../lib/context.ts';
import { buildRequest, closedLoop, sequential } from '../lib/http.ts';
import { round, type Summary } from '../lib/stats.ts';
import { PREFIX } from '../lib/system.ts';

/*
 * 6. With N jobs queued (100,000; --quick 2,000), all through the real api path (JSON submits of
 * `synthetic` jobs: job hash, prioritized entry, the station's pending-set entry, events):
 * Redis memory per queued job, and GET /v1/jobs/{id} latency for random ids, one request at a
 * time on a keep-alive connection. Every answer's position is checked against ZRANK.
 */

export interface LookupResults {
  queued: number;
  toppedUp: number;
  memory: {
    /** used_memory growth over the jobs the top-up submitted, per job. */
    topUpBytesPerJob: number;
    /** MEMORY USAGE of a job hash (sampled), the rest of a job's cost is in sorted/pending sets and the events stream. */
    jobHashBytes: number;
    /** used_memory now minus at the start of the submit benchmarks, over every job queued since. */
    usedMemory: number;
  };
  lookup: { latency: Summary; ok: number; errors: number; firstError?: string; perSec: number };
}

export async function lookups(ctx: Ctx): Promise<LookupResults> {
  const api = ctx.sys.api!;
  const key = `${PREFIX}:synthetic:prioritized`;
  const have = await ctx.redis.zcard(key);
  const need = Math.max(0, ctx.sizes.lookupQueued - have);
  ctx.log(`   ${have} synthetic jobs queued; submitting ${need} more through the api`);
  const before = await usedMemory(ctx.redis);
  let added = 0;
  if (need > 0) {
    const request = jsonSubmitRequest(api.port);
    const r = await timed(ctx, '6 top-up (JSON submits)', () =>
      closedLoop({
        host: '127.0.0.1',
        port: api.port,
        connections: 32,
        warmupMs: 0,
        durationMs: 0,
        count: need,
        request: () => request,
        expect: 202,
      }),
    );
    if (r.errors > 0) ctx.log(`   top-up: ${r.errors} errors (${r.firstError})`);
    added = r.totalOk;
  }
  const after = await usedMemory(ctx.redis);
  const ids = await ctx.redis.zrange(key, '0', '-1');
  const rank = new Map(ids.map((id, i) => [id, i + 1]));
  let hashSum = 0;
  const sample = ids.slice(-50);
  for (const id of sample) hashSum += Number((await ctx.redis.call('MEMORY', 'USAGE', `${PREFIX}:synthetic:${id}`, 'SAMPLES', '0')) ?? 0);

  const picks = Array.from({ length: ctx.sizes.lookups }, () => ids[Math.floor(Math.random() * ids.length)]!);
  const requests = picks.map((id) =>
    buildRequest({ method: 'GET', path: `/v1/jobs/${id}`, host: `127.0.0.1:${api.port}`, headers: authHeaders() }),
  );
  const r = await timed(ctx, '6 status lookups', () =>
    sequential({
      host: '127.0.0.1',
      port: api.port,
      requests,
      expect: 200,
      check: (res, i) => {
        const body = JSON.parse(res.body.toString()) as { status?: string; position?: number };
        const want = rank.get(picks[i]!);
        if (body.status !== 'queued') return `status ${body.status}, expected queued`;
        if (body.position !== want) return `position ${body.position}, ZRANK says ${want}`;
        return undefined;
      },
    }),
  );
  return {
    queued: ids.length,
    toppedUp: added,
    memory: {
      topUpBytesPerJob: added > 0 ? round((after - before) / added, 0) : Number.NaN,
      jobHashBytes: round(hashSum / Math.max(1, sample.length), 0),
      usedMemory: after,
    },
    lookup: { latency: r.latency, ok: r.ok, errors: r.errors, firstError: r.firstError, perSec: round(r.rate, 0) },
  };
}

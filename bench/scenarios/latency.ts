import { type Ctx, jsonSubmitRequest, timed } from '../lib/context.ts';
import { type OpenLoopResult, openLoop } from '../lib/http.ts';
import { round } from '../lib/stats.ts';

/*
 * 2. Submit latency at half the measured maximum JSON submit rate, open loop: requests leave on
 * a fixed schedule whatever the answers do, each on an idle keep-alive connection (or a new one).
 */
export async function submitLatency(ctx: Ctx, maxRate: number): Promise<OpenLoopResult & { maxRate: number }> {
  const api = ctx.sys.api!;
  const rate = Math.max(10, round(maxRate / 2, 0));
  const request = jsonSubmitRequest(api.port);
  const r = await timed(ctx, '2 submit latency (open loop)', () =>
    openLoop({
      host: '127.0.0.1',
      port: api.port,
      rate,
      warmupMs: ctx.sizes.warmupMs,
      durationMs: ctx.sizes.latencyMs,
      maxConnections: 256,
      request: () => request,
      expect: 202,
    }),
  );
  return { ...r, maxRate };
}

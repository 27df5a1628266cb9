import fs from 'node:fs';
import { authHeaders, type Ctx, EDIT_PARAMS, timed } from '../lib/context.ts';
import { buildRequest, closedLoop, multipartBody } from '../lib/http.ts';
import { photoJpeg } from '../lib/images.ts';
import { round } from '../lib/stats.ts';

/*
 * 7. The api's memory while many clients upload large images at once. The api runs twice in the
 * same run, each a fresh process: as configured by default (an image past
 * DARKROOM_UPLOAD_MEMORY_BYTES, 1 MiB, is written to disk as it arrives), and as the baseline
 * with the threshold at the upload limit, so every image is held in memory until it is stored.
 * Peak RSS (VmHWM) above the idle process, and upload throughput. No worker runs.
 */

export interface UploadRun {
  label: string;
  memoryBytes: number;
  uploads: number;
  errors: number;
  firstError?: string;
  mbPerSec: number;
  idleRssMiB: number;
  peakRssMiB: number;
  /** Peak above idle. */
  growthMiB: number;
}

export interface UploadResults {
  imageBytes: number;
  connections: number;
  spooled: UploadRun;
  inMemory: UploadRun;
}

const MAX_UPLOAD = 20 * 1024 * 1024;

const statusMiB = (pid: number, field: 'VmHWM' | 'VmRSS'): number => {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};

export async function uploadMemory(ctx: Ctx): Promise<UploadResults> {
  const { quick } = ctx;
  // A 24 MP photo-like JPEG at quality 97, as a camera writes it (quick: 6 MP).
  const image = await photoJpeg(quick ? 3000 : 6000, quick ? 2000 : 4000, 97);
  const connections = quick ? 4 : 16;
  const durationMs = quick ? 1500 : 8000;
  const run = async (label: string, memoryBytes: number): Promise<UploadRun> => {
    await ctx.sys.stopApi();
    const api = await ctx.sys.startApi({
      DARKROOM_UPLOAD_MEMORY_BYTES: String(memoryBytes),
      DARKROOM_MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
    });
    const pid = api.proc.pid!;
    const mp = multipartBody(
      { pipeline: 'edit', params: JSON.stringify(EDIT_PARAMS), priority: 'normal' },
      { name: 'image', filename: 'photo.jpg', type: 'image/jpeg', data: image },
    );
    const request = buildRequest({
      method: 'POST',
      path: '/v1/jobs',
      host: `127.0.0.1:${api.port}`,
      headers: { ...authHeaders(), 'Content-Type': mp.contentType },
      body: mp.body,
    });
    const idle = statusMiB(pid, 'VmRSS');
    const r = await timed(ctx, `7 uploads ${label}`, () =>
      closedLoop({ host: '127.0.0.1', port: api.port, connections, warmupMs: 0, durationMs, request: () => request, expect: 202 }),
    );
    const peak = statusMiB(pid, 'VmHWM');
    return {
      label,
      memoryBytes,
      uploads: r.totalOk,
      errors: r.errors,
      ...(r.firstError ? { firstError: r.firstError } : {}),
      mbPerSec: round((r.rate * image.length) / 1e6, 1),
      idleRssMiB: round(idle, 0),
      peakRssMiB: round(peak, 0),
      growthMiB: round(peak - idle, 0),
    };
  };
  const spooled = await run('spooled (default)', 1024 * 1024);
  const inMemory = await run('held in memory', MAX_UPLOAD);
  // Leave an api as configured for the bench, as the runs before found it.
  await ctx.sys.stopApi();
  await ctx.sys.startApi();
  return { imageBytes: image.length, connections, spooled, inMemory };
}

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { authHeaders, type Ctx, timed } from '../lib/context.ts';
import { sharp } from '../lib/deps.ts';
import { photoJpeg } from '../lib/images.ts';
import { median, now, round } from '../lib/stats.ts';

/*
 * 5. `edit` overhead: a 4096×3072 photo-like JPEG resized to 2048 px wide and written as WebP,
 * end to end through the api and worker (multipart submit with ?wait=30, timed to the 200
 * answer; then the result download, timed on its own), against the same sharp operations run
 * directly in this process (autoOrient, sRGB, resize, webp) on the same bytes read from a file,
 * as the worker reads its input. Runs alternate, after one unmeasured warm-up of each.
 */

const OPS = {
  operations: [
    { op: 'resize', width: 2048 },
    { op: 'format', type: 'webp', quality: 80 },
  ],
};

export interface EditResults {
  inputBytes: number;
  reps: number;
  e2eMs: number[];
  downloadMs: number[];
  directMs: number[];
  e2eMedianMs: number;
  downloadMedianMs: number;
  directMedianMs: number;
  ratio: number;
  ratioWithDownload: number;
  outputBytes: number;
}

async function direct(file: string): Promise<{ ms: number; bytes: number; width: number }> {
  const t = now();
  const { data, info } = await sharp(file, { limitInputPixels: 50_000_000, failOn: 'truncated' })
    .autoOrient()
    .toColourspace('srgb')
    .resize({ width: 2048 })
    .webp({ quality: 80 })
    .toBuffer({ resolveWithObject: true });
  return { ms: now() - t, bytes: data.length, width: info.width };
}

async function endToEnd(ctx: Ctx, jpeg: Buffer): Promise<{ ms: number; downloadMs: number; bytes: number }> {
  const base = `http://127.0.0.1:${ctx.sys.api!.port}`;
  const form = new FormData();
  form.set('pipeline', 'edit');
  form.set('params', JSON.stringify(OPS));
  form.set('image', new Blob([jpeg], { type: 'image/jpeg' }), 'photo.jpg');
  const t = now();
  const res = await fetch(`${base}/v1/jobs?wait=30`, {
    method: 'POST',
    body: form,
    headers: authHeaders(),
    signal: AbortSignal.timeout(60_000),
  });
  const body = (await res.json()) as { id: string; status: string; result?: { width: number }; error?: unknown };
  const ms = now() - t;
  if (res.status !== 200 || body.status !== 'completed' || body.result?.width !== 2048) {
    throw new Error(`edit job did not complete as expected: HTTP ${res.status} ${JSON.stringify(body).slice(0, 400)}`);
  }
  const t2 = now();
  const out = await fetch(`${base}/v1/jobs/${body.id}/result`, { headers: authHeaders() });
  const bytes = (await out.arrayBuffer()).byteLength;
  const downloadMs = now() - t2;
  if (out.status !== 200) throw new Error(`result download answered ${out.status}`);
  return { ms, downloadMs, bytes };
}

export async function editOverhead(ctx: Ctx): Promise<EditResults> {
  const jpeg = await photoJpeg(4096, 3072);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-bench-edit-'));
  // A fresh copy per run, as each job's input is a file of its own (no libvips cache hit).
  let n = 0;
  const copy = () => {
    const f = path.join(dir, `in-${n++}.jpg`);
    fs.writeFileSync(f, jpeg);
    return f;
  };
  const e2e: number[] = [];
  const dl: number[] = [];
  const dir_: number[] = [];
  let outputBytes = 0;
  try {
    await timed(ctx, '5 edit (e2e and direct)', async () => {
      await direct(copy());
      await endToEnd(ctx, jpeg);
      for (let i = 0; i < ctx.sizes.editReps; i++) {
        const d = await direct(copy());
        if (d.width !== 2048) throw new Error(`direct resize made ${d.width} px`);
        dir_.push(d.ms);
        const e = await endToEnd(ctx, jpeg);
        e2e.push(e.ms);
        dl.push(e.downloadMs);
        outputBytes = e.bytes;
      }
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const e2eMedianMs = round(median(e2e), 1);
  const directMedianMs = round(median(dir_), 1);
  const downloadMedianMs = round(median(dl), 2);
  return {
    inputBytes: jpeg.length,
    reps: e2e.length,
    e2eMs: e2e.map((v) => round(v, 1)),
    downloadMs: dl.map((v) => round(v, 2)),
    directMs: dir_.map((v) => round(v, 1)),
    e2eMedianMs,
    downloadMedianMs,
    directMedianMs,
    ratio: round(e2eMedianMs / directMedianMs, 3),
    ratioWithDownload: round((e2eMedianMs + downloadMedianMs) / directMedianMs, 3),
    outputBytes,
  };
}

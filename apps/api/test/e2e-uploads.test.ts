import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fixture, listFiles, STATIONS, type System, startSystem, waitFor } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, totalJobs, waitForFinal } from './helpers.ts';

/*
 * Uploads past DARKROOM_UPLOAD_MEMORY_BYTES are written to the data volume as they arrive, then
 * moved into place when the job is queued. Through the real api and worker: the stored input is
 * the upload byte for byte, the job runs from it, and no answer but a 202 leaves a file behind.
 */

const THRESHOLD = 64 * 1024;
const photo = () => fixture('2569067123_aca715a2ee_o.jpg'); // 829 KB, well past the threshold
const params = JSON.stringify({
  operations: [
    { op: 'resize', width: 256 },
    { op: 'format', type: 'webp', quality: 70 },
  ],
});
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let sys: System;
const files = (sub: string) => listFiles(path.join(sys.dataDir, sub));

beforeAll(async () => {
  sys = await startSystem({ workers: 0, env: { DARKROOM_UPLOAD_MEMORY_BYTES: String(THRESHOLD) } });
});
afterAll(async () => {
  await sys?.stop();
});

describe('uploads past the memory threshold', () => {
  it('are stored byte for byte, and the job runs from the stored file', async () => {
    const img = photo();
    const res = await submit(sys, multipart({ pipeline: 'edit', params }, { data: img, type: 'image/jpeg' }));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(files('tmp')).toEqual([]);
    const stored = fs.readFileSync(path.join(sys.dataDir, 'inputs', id));
    expect(stored.length).toBe(img.length);
    expect(sha(stored)).toBe(sha(img));

    await sys.addWorker();
    const done = await waitForFinal(sys, id);
    expect(done.status).toBe('completed');
    const out = await sys.fetch(`/v1/jobs/${id}/result`);
    expect(out.status).toBe(200);
    const meta = await sharp(Buffer.from(await out.arrayBuffer())).metadata();
    const source = await sharp(img).metadata();
    expect(meta.format).toBe('webp');
    expect(meta.width).toBe(256);
    expect(meta.height).toBe(Math.round((256 * source.height!) / source.width!));
    await sys.workers[0]!.stop();
    sys.workers.length = 0;
  });

  it('retried with the same Idempotency-Key, add no job and leave no second file', async () => {
    const img = photo();
    const before = { jobs: await totalJobs(sys), inputs: files('inputs').length };
    const send = () =>
      submit(sys, multipart({ pipeline: 'edit', params }, { data: img }), { headers: { 'Idempotency-Key': 'spooled-retry-1' } });
    const first = await send();
    expect(first.status).toBe(202);
    const again = await send();
    expect(again.status).toBe(200);
    const a = (await first.json()) as { id: string };
    const b = (await again.json()) as { id: string; deduplicated?: boolean };
    expect(b.id).toBe(a.id);
    expect(b.deduplicated).toBe(true);
    expect(await totalJobs(sys)).toBe(before.jobs + 1);
    expect(files('inputs').length).toBe(before.inputs + 1);
    expect(files('tmp')).toEqual([]);
  });

  it('refused after the spill, leave nothing: no job, no input, no temporary file', async () => {
    const img = photo();
    const before = { jobs: await totalJobs(sys), files: listFiles(sys.dataDir) };
    const refusals: [string, () => Promise<Response>, number][] = [
      ['truncated', () => submit(sys, multipart({ pipeline: 'edit', params }, { data: img.subarray(0, 500_000) })), 422],
      ['bad params', () => submit(sys, multipart({ pipeline: 'edit', params: '{"operations":[{"op":"explode"}]}' }, { data: img })), 400],
      ['a pipeline that takes no image', () => submit(sys, multipart({ pipeline: 'synthetic' }, { data: img })), 400],
      ['an unknown pipeline', () => submit(sys, multipart({ pipeline: 'teleport' }, { data: img })), 404],
      ['an invalid priority', () => submit(sys, multipart({ pipeline: 'edit', priority: 'urgent' }, { data: img })), 400],
    ];
    for (const [what, send, status] of refusals) {
      const res = await send();
      expect(res.status, what).toBe(status);
      expect(res.headers.get('content-type'), what).toMatch(/^application\/problem\+json/);
    }
    expect(await totalJobs(sys)).toBe(before.jobs);
    expect(listFiles(sys.dataDir)).toEqual(before.files);
  });

  it('cut off by the client mid-upload, leave no temporary file', async () => {
    const img = photo();
    const boundary = 'cutoffboundary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nedit\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
    );
    const length = head.length + img.length + boundary.length + 8;
    const sock = net.connect({ port: Number(new URL(sys.url).port), host: '127.0.0.1' });
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      `POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${STATIONS.alpha.key}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${length}\r\n\r\n`,
    );
    sock.write(head);
    sock.write(img.subarray(0, 300_000));
    // The spill has begun: the partial upload is on disk...
    await waitFor(() => files('tmp').length === 1, { timeoutMs: 10_000, what: 'the spooled upload' });
    sock.destroy();
    // ...and is gone once the client is.
    await waitFor(() => files('tmp').length === 0, { timeoutMs: 10_000, what: 'the spooled upload to be removed' });
    const res = await submit(sys, multipart({ pipeline: 'edit', params }, { data: img }));
    expect(res.status).toBe(202);
  });
});

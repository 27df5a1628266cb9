import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { fixture, listFiles, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, waitForFinal } from '../../api/test/helpers.ts';

/*
 * A data volume that fills up. The volume is a real 4 MiB tmpfs, so writes fail with ENOSPC as
 * they would on a full disk. Mounting needs root (CI runs as root); elsewhere the file is skipped.
 */

const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-full-'));
const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint]).status === 0;
if (!mounted) process.stdout.write('disk-full: cannot mount a tmpfs here (needs root); skipped\n');

let sys: System;
beforeAll(async () => {
  if (!mounted) return;
  sys = await startSystem({ dataDir: mountPoint, env: { DARKROOM_RETRY_BACKOFF_MS: '100' } });
});
afterAll(async () => {
  await sys?.stop();
  if (mounted) spawnSync('umount', ['-l', mountPoint]);
  fs.rmSync(mountPoint, { recursive: true, force: true });
});

const fill = (leave: number) => {
  const free = Number(spawnSync('df', ['--output=avail', '-B1', mountPoint]).stdout.toString().split('\n')[1]);
  fs.writeFileSync(path.join(mountPoint, 'filler'), Buffer.alloc(Math.max(0, free - leave)));
};

describe.skipIf(!mounted)('a full data volume', () => {
  it('answers 503 when an upload cannot be stored, leaving no partial file', async () => {
    fill(64 * 1024);
    try {
      const res = await submit(
        sys,
        multipart({ pipeline: 'edit', params: '{"operations":[{"op":"flip"}]}' }, { data: fixture('Landscape_1.jpg') }),
      );
      expect(res.status).toBe(503);
      expect(((await res.json()) as { code: string }).code).toBe('unavailable');
      expect(listFiles(mountPoint).filter((f) => f.startsWith('tmp/') || f.startsWith('inputs/'))).toEqual([]);
    } finally {
      fs.rmSync(path.join(mountPoint, 'filler'));
    }
  });

  it('fails a job whose result does not fit as backend_unavailable after its retries, with no partial file, then recovers', async () => {
    // A 2048² noise PNG is far larger than the 4 MiB volume.
    const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0, width: 2048, height: 2048, seed: 9 } });
    const { id } = (await res.json()) as JobStatusBody;
    const final = await waitForFinal(sys, id, 'alpha', 30_000);
    expect(final).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'backend_unavailable' } });
    expect(final.error!.message).toMatch(/could not be stored/);
    expect(listFiles(mountPoint).filter((f) => f.startsWith('tmp/') || f.startsWith('outputs/'))).toEqual([]);
    const small = await waitForFinal(
      sys,
      ((await (await submit(sys, { pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } })).json()) as JobStatusBody).id,
    );
    expect(small.status).toBe('completed');
  });
});

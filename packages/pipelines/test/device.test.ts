import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FAKE_H100S, writeFakeNvidiaSmi } from '../../testing/src/nvidia-smi.ts';
import { detectDevice, GPU_REPORT_ARGS, parseGpuReport, queryGpus } from '../src/device.ts';

/* The GPU report read from `nvidia-smi`: parsing its CSV, and running a real executable that answers as it does. */

const smi = writeFakeNvidiaSmi();
afterAll(() => smi.remove());
const nvidiaSmi = path.join(smi.binDir, 'nvidia-smi');

describe('parseGpuReport', () => {
  it('reads index, name, memory in MiB and utilisation in percent', () => {
    expect(parseGpuReport('0, NVIDIA H100 80GB HBM3, 81559, 1024, 3\n1, NVIDIA H100 80GB HBM3, 81559, 40960, 97\n')).toEqual([
      { index: 0, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 1024, utilizationPercent: 3 },
      { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 40960, utilizationPercent: 97 },
    ]);
  });

  it('leaves out figures the driver does not report, keeping the GPU', () => {
    expect(parseGpuReport('0, NVIDIA A100-SXM4-40GB, 40960, [N/A], [Not Supported]\r\n1, GRID T4-2Q, N/A, 512,  \n')).toEqual([
      { index: 0, name: 'NVIDIA A100-SXM4-40GB', memoryTotalMiB: 40960 },
      { index: 1, name: 'GRID T4-2Q', memoryUsedMiB: 512 },
    ]);
  });

  it('keeps a comma inside a name and skips lines that are not GPUs', () => {
    const text = [
      'No devices were found',
      '',
      '0, Odd, Name, 100, 50, 12.5',
      'x, NVIDIA L4, 23034, 0, 0',
      '1, , 23034, 0, 0',
      '2, NVIDIA L4, 23034, 0',
    ].join('\n');
    expect(parseGpuReport(text)).toEqual([
      { index: 0, name: 'Odd, Name', memoryTotalMiB: 100, memoryUsedMiB: 50, utilizationPercent: 12.5 },
    ]);
  });
});

describe('queryGpus', () => {
  it('runs nvidia-smi with the report query and parses its answer', async () => {
    smi.setGpus(FAKE_H100S);
    const before = smi.calls().length;
    expect(await queryGpus({ nvidiaSmi })).toEqual(FAKE_H100S);
    expect(smi.calls().slice(before)).toEqual([[...GPU_REPORT_ARGS]]);
  });

  it('rejects when nvidia-smi fails, reports no GPU, or is missing', async () => {
    smi.setExitCode(9);
    await expect(queryGpus({ nvidiaSmi })).rejects.toMatchObject({ code: 9 });
    smi.setExitCode(0);
    smi.setRows(['No devices were found']);
    await expect(queryGpus({ nvidiaSmi })).rejects.toThrow(/no GPU/);
    await expect(queryGpus({ nvidiaSmi: path.join(os.tmpdir(), 'no-such-dir', 'nvidia-smi') })).rejects.toMatchObject({
      code: 'ENOENT',
    });
    smi.setGpus(FAKE_H100S);
  });

  it('gives up on an nvidia-smi that hangs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-hang-'));
    const hang = path.join(dir, 'nvidia-smi');
    fs.writeFileSync(hang, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    const t = Date.now();
    await expect(queryGpus({ nvidiaSmi: hang, timeoutMs: 300 })).rejects.toMatchObject({ killed: true });
    expect(Date.now() - t).toBeLessThan(5000);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers the device detection at start with the first three columns', async () => {
    const found = await detectDevice({ nvidiaSmi });
    expect(found.kind).toBe('gpu');
    expect(found.gpus).toEqual([
      { index: 0, name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 },
      { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 },
    ]);
  });
});

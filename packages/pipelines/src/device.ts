import { execFile } from 'node:child_process';
import os from 'node:os';

/*
 * What this worker computes on, found at start: NVIDIA GPUs through `nvidia-smi` (present
 * wherever the NVIDIA driver is, inside containers given the GPU too), else the CPU.
 */

export interface GpuInfo {
  index: number;
  name: string;
  memoryMiB: number;
}

export interface DeviceInfo {
  kind: 'gpu' | 'cpu';
  gpus: GpuInfo[];
  /** One line for logs and the heartbeat, e.g. "gpu: NVIDIA H100 80GB HBM3 (81559 MiB)". */
  description: string;
}

/** Parses `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split('\n')) {
    const parts = line.split(',').map((s) => s.trim());
    if (parts.length < 3) continue;
    const [index, name, mem] = parts as [string, string, string];
    const memoryMiB = Number.parseInt(mem, 10);
    if (!/^\d+$/.test(index) || !name || !Number.isFinite(memoryMiB)) continue;
    gpus.push({ index: Number(index), name, memoryMiB });
  }
  return gpus;
}

export function describeGpus(gpus: GpuInfo[]): string {
  return `gpu: ${gpus.map((g) => `${g.name} (${g.memoryMiB} MiB)`).join(', ')}`;
}

function cpuDescription(): string {
  return `cpu (${os.cpus()[0]?.model?.trim() ?? 'unknown'})`;
}

let cached: Promise<DeviceInfo> | undefined;

/** Looks for NVIDIA GPUs once per process; `nvidia-smi` missing or failing means none. */
export function detectDevice(opts: { nvidiaSmi?: string; timeoutMs?: number } = {}): Promise<DeviceInfo> {
  if (!opts.nvidiaSmi && cached) return cached;
  const found = new Promise<DeviceInfo>((resolve) => {
    execFile(
      opts.nvidiaSmi ?? 'nvidia-smi',
      ['--query-gpu=index,name,memory.total', '--format=csv,noheader,nounits'],
      { timeout: opts.timeoutMs ?? 5000, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout) => {
        const gpus = err ? [] : parseNvidiaSmi(String(stdout));
        resolve(
          gpus.length > 0
            ? { kind: 'gpu', gpus, description: describeGpus(gpus) }
            : { kind: 'cpu', gpus: [], description: cpuDescription() },
        );
      },
    );
  });
  if (!opts.nvidiaSmi) cached = found;
  return found;
}

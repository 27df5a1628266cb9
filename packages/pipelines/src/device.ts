import { execFile } from 'node:child_process';
import os from 'node:os';
import type { GpuReport } from '@darkroom/contracts';

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

/** What the worker asks `nvidia-smi` for its periodic GPU report (units: MiB, percent). */
export const GPU_REPORT_ARGS = [
  '--query-gpu=index,name,memory.total,memory.used,utilization.gpu',
  '--format=csv,noheader,nounits',
] as const;

/** A figure of the report; `[N/A]`, `[Not Supported]` and anything else not a number are absent. */
function figure(v: string | undefined): number | undefined {
  return v !== undefined && /^\d+(\.\d+)?$/.test(v) ? Number(v) : undefined;
}

/**
 * Parses the output of `nvidia-smi` run with GPU_REPORT_ARGS. The name is whatever lies between
 * the index and the last three fields, so a comma in it does not shift the figures.
 */
export function parseGpuReport(text: string): GpuReport[] {
  const gpus: GpuReport[] = [];
  for (const line of text.split('\n')) {
    const parts = line.split(',').map((s) => s.trim());
    if (parts.length < 5) continue;
    const index = parts[0] ?? '';
    const name = parts.slice(1, -3).join(', ');
    const [total, used, util] = parts.slice(-3).map(figure);
    if (!/^\d+$/.test(index) || !name) continue;
    gpus.push({
      index: Number(index),
      name,
      ...(total !== undefined ? { memoryTotalMiB: Math.round(total) } : {}),
      ...(used !== undefined ? { memoryUsedMiB: Math.round(used) } : {}),
      ...(util !== undefined ? { utilizationPercent: util } : {}),
    });
  }
  return gpus;
}

/**
 * Runs `nvidia-smi` (no shell, with a timeout) for the GPU report. Rejects when it is missing
 * (`code` ENOENT), fails, times out or reports no GPU.
 */
export function queryGpus(opts: { nvidiaSmi?: string; timeoutMs?: number } = {}): Promise<GpuReport[]> {
  return new Promise((resolve, reject) => {
    execFile(
      opts.nvidiaSmi ?? 'nvidia-smi',
      [...GPU_REPORT_ARGS],
      { timeout: opts.timeoutMs ?? 5000, env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 1024 * 1024 },
      (err, stdout) => {
        if (err) return reject(err);
        const gpus = parseGpuReport(String(stdout));
        if (gpus.length === 0) return reject(new Error('nvidia-smi reported no GPU'));
        resolve(gpus);
      },
    );
  });
}

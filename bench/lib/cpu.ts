import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/*
 * CPU time of a process (all its threads: libvips and libuv pools included), from
 * /proc/<pid>/stat on Linux; NaN elsewhere. Per-job CPU is the cost that decides throughput on a
 * machine where the api, Redis and the load generator share two cores.
 */

let tick: number | undefined;
function clockTick(): number {
  if (tick === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    tick = Number(r.stdout?.trim()) || 100;
  }
  return tick;
}

export function cpuMs(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / clockTick();
  } catch {
    return Number.NaN;
  }
}

export interface CpuSnapshot {
  [name: string]: number;
}

export function snapshot(pids: Record<string, number | undefined>): CpuSnapshot {
  return Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
}

/** CPU µs per job for each process between two snapshots. */
export function perJobUs(before: CpuSnapshot, after: CpuSnapshot, jobs: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(before)) {
    const d = (after[k] ?? Number.NaN) - (before[k] ?? Number.NaN);
    out[k] = jobs > 0 && Number.isFinite(d) ? Math.round((d * 1000) / jobs) : Number.NaN;
  }
  return out;
}

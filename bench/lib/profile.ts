import fs from 'node:fs';
import path from 'node:path';

/*
 * Reads V8 .cpuprofile files (node --cpu-prof) and sums samples inside a time window (the
 * profile's clock is the same monotonic clock as process.hrtime): self time per function,
 * inclusive time per function, and self time per package, so one benchmark's hot spots can be
 * read without a browser.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Hot {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  file: string;
  window: string;
  sampledMs: number;
  /** Share of the window the process was on CPU (not idle). */
  busyPct: number;
  selfTop: Hot[];
  inclusiveTop: Hot[];
  byPackage: Hot[];
}

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

function shortUrl(url: string): string {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  if (u.startsWith(root)) u = u.slice(root.length + 1);
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) u = u.slice(nm + 'node_modules/'.length);
  return u;
}

function packageOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[1] ?? url.slice(5)}`;
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const rel = u.startsWith(root) ? u.slice(root.length + 1) : u;
  const m = /^(apps|packages)\/([^/]+)\/src\/(.+)$/.exec(rel);
  return m ? `${m[1]}/${m[2]}/src/${m[3]}` : rel;
}

function nameOf(frame: CallFrame): string {
  const fn = frame.functionName || '(anonymous)';
  const u = shortUrl(frame.url);
  return u ? `${fn} ${u}:${frame.lineNumber + 1}` : fn;
}

export function summarizeProfile(file: string, window: { name: string; startUs: number; endUs: number }, top = 20): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const pkg = new Map<string, number>();
  let t = p.startTime;
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t < window.startUs || t > window.endUs) continue;
    // The sample's weight is the time to the next sample (the interval it stands for).
    const w = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(p.samples[i]!)!;
    total += w;
    if (node.callFrame.functionName === '(idle)') {
      idle += w;
      continue;
    }
    const k = nameOf(node.callFrame);
    self.set(k, (self.get(k) ?? 0) + w);
    const pk = packageOf(node.callFrame);
    pkg.set(pk, (pkg.get(pk) ?? 0) + w);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      if (f.functionName === '(root)') continue;
      const key = nameOf(f);
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + w);
    }
  }
  const busy = total - idle;
  const list = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, ms: Math.round(ms), pct: busy > 0 ? Math.round((1000 * ms) / busy) / 10 : 0 }));
  return {
    file,
    window: window.name,
    sampledMs: Math.round(total),
    busyPct: total > 0 ? Math.round((1000 * busy) / total) / 10 : 0,
    selfTop: list(self, top),
    inclusiveTop: list(incl, top * 2),
    byPackage: list(pkg, top),
  };
}

export function printProfile(s: ProfileSummary, log: (l: string) => void): void {
  log(`\n--- CPU profile ${path.basename(s.file)} during "${s.window}": ${s.sampledMs} ms sampled, ${s.busyPct} % on CPU ---`);
  log('self time by package/file (% of busy time):');
  for (const h of s.byPackage) log(`  ${String(h.pct).padStart(5)} %  ${h.name}`);
  log('self time by function:');
  for (const h of s.selfTop) log(`  ${String(h.pct).padStart(5)} %  ${h.name}`);
  log('inclusive time by function (Darkroom code and its direct callees):');
  for (const h of s.inclusiveTop
    .filter((x) => / (apps|packages)\//.test(x.name) || /bullmq|express|busboy|ioredis|sharp|pino/.test(x.name))
    .slice(0, 30)) {
    log(`  ${String(h.pct).padStart(5)} %  ${h.name}`);
  }
}

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fmt } from './report.ts';
import { round, summarize } from './stats.ts';

/*
 * Two properties of the machine that dominate the image-submit figures and vary between machines
 * and runs, measured at the start of every run and printed as context (never judged):
 *  - the cost of creating a file in the data directory. On ext4 without a journal, inode
 *    allocation skips (and checks one by one) every inode of a block group deleted in the last
 *    60–360 s, so after a mass delete (a test suite, an earlier bench run) each create costs
 *    0.5–1.3 ms of kernel CPU instead of ~50 µs;
 *  - sha256 speed: every upload is hashed, and without SHA extensions (x86 `sha_ni`) a 33 KB
 *    hash costs ~190 µs instead of ~20 µs.
 * The probe's files stay in the data directory until the bench system stops and removes it:
 * deleting them now would put the runs that follow on that slow path.
 */

/** The bench's PNG upload (105×105 noise, bench/lib/images.ts). */
export const PROBE_BYTES = 33_327;

export interface MachineProbe {
  /** Where the files were created (a fresh subdirectory of the data directory). */
  dir: string;
  /** create + write + close of one PROBE_BYTES file with fs.writeFileSync, µs. */
  fileCreateUs: { n: number; p50: number; p90: number; p99: number; max: number };
  /** sha256 of a PROBE_BYTES buffer, one digest per buffer, after a warm-up. */
  sha256MBps: number;
  sha256UsPerFile: number;
  /** x86 SHA extensions (`sha_ni` in /proc/cpuinfo); undefined where that cannot be told. */
  shaNi?: boolean;
  /** The data directory's filesystem (from /proc/self/mountinfo), and for ext4 whether it has a journal. */
  fsType?: string;
  fsSource?: string;
  journal?: boolean;
  /** Parts of the probe that could not run; the bench goes on without them. */
  errors?: string[];
}

export function probeMachine(dataDir: string, files = 500, hashes = 500): MachineProbe {
  const errors: string[] = [];
  const dir = path.join(dataDir, `probe-${process.pid}`);
  const payload = randomBytes(PROBE_BYTES);

  const createUs: number[] = [];
  try {
    fs.mkdirSync(dir);
    for (let i = 0; i < files; i++) {
      const f = path.join(dir, `f${i}.png`);
      const t = process.hrtime.bigint();
      fs.writeFileSync(f, payload);
      createUs.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  } catch (err) {
    errors.push(`file create: ${(err as Error).message}`);
  }
  const s = summarize(createUs);

  for (let i = 0; i < 50; i++) createHash('sha256').update(payload).digest();
  const t = process.hrtime.bigint();
  for (let i = 0; i < hashes; i++) createHash('sha256').update(payload).digest();
  const hashNs = Number(process.hrtime.bigint() - t);

  const probe: MachineProbe = {
    dir,
    fileCreateUs: { n: s.n, p50: round(s.p50, 0), p90: round(s.p90, 0), p99: round(s.p99, 0), max: round(s.max, 0) },
    sha256MBps: round((PROBE_BYTES * hashes * 1000) / hashNs, 0),
    sha256UsPerFile: round(hashNs / hashes / 1000, 1),
    shaNi: shaNi(),
  };
  try {
    Object.assign(probe, filesystemOf(dataDir));
  } catch (err) {
    errors.push(`filesystem: ${(err as Error).message}`);
  }
  if (errors.length) probe.errors = errors;
  return probe;
}

/** One line for the run's header. */
export function describeProbe(p: MachineProbe): string {
  const fsText = p.fsType ? `${p.fsType}${p.journal === undefined ? '' : p.journal ? ', journal' : ', no journal'}` : 'filesystem unknown';
  const c = p.fileCreateUs;
  return [
    `file create (${fsText}; ${c.n} × ${fmt.n(PROBE_BYTES)} B) p50 ${fmt.n(c.p50)} µs, p90 ${fmt.n(c.p90)} µs, p99 ${fmt.n(c.p99)} µs`,
    `sha256 ${fmt.n(p.sha256MBps)} MB/s (${fmt.n(p.sha256UsPerFile, 1)} µs per ${fmt.n(PROBE_BYTES)} B; SHA-NI ${yesNo(p.shaNi)})`,
    ...(p.errors ?? []).map((e) => `probe failed: ${e}`),
  ].join('; ');
}

export const yesNo = (v: boolean | undefined) => (v === undefined ? 'unknown' : v ? 'yes' : 'no');

function shaNi(): boolean | undefined {
  try {
    const flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
    return flags === undefined ? undefined : flags.split(/\s+/).includes('sha_ni');
  } catch {
    return undefined;
  }
}

/**
 * The mount holding `p`, matched by device number in /proc/self/mountinfo. For ext4,
 * /sys/fs/ext4/<dev>/journal_task reads "<none>" when the filesystem has no journal.
 */
function filesystemOf(p: string): Pick<MachineProbe, 'fsType' | 'fsSource' | 'journal'> {
  if (!fs.existsSync('/proc/self/mountinfo')) return {};
  const dev = fs.statSync(p, { bigint: true }).dev;
  // glibc's major()/minor() of a Linux dev_t
  const major = ((dev & 0xfff00n) >> 8n) | ((dev & 0xfffff00000000000n) >> 32n);
  const minor = (dev & 0xffn) | ((dev & 0xffffff00000n) >> 12n);
  const majMin = `${major}:${minor}`;
  const line = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[2] === majMin);
  if (!line) return {};
  // "<id> <parent> <maj:min> <root> <mount point> <options> [tags] - <type> <source> <super options>"
  const [fsType, fsSource] = line.slice(line.indexOf(' - ') + 3).split(' ');
  const out: Pick<MachineProbe, 'fsType' | 'fsSource' | 'journal'> = { fsType, fsSource };
  if (fsType === 'ext4' || fsType === 'ext3') {
    try {
      const name = path.basename(fs.realpathSync(`/sys/dev/block/${majMin}`));
      const task = fs.readFileSync(`/sys/fs/ext4/${name}/journal_task`, 'utf8').trim();
      out.journal = task !== '<none>';
    } catch {
      // older kernels have no journal_task: leave it unknown
    }
  }
  return out;
}

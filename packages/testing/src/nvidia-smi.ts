import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/*
 * A stand-in `nvidia-smi` for hosts without NVIDIA GPUs: a real executable (a /bin/sh script) in
 * a directory of its own, to put first on a worker's PATH. It answers the worker's GPU report
 * query with the rows it is given and any other query (the device detection at start) with their
 * first three columns (index, name, memory.total). What it prints and its exit status can be
 * changed while a worker runs; every call's arguments are recorded.
 */

export interface FakeGpu {
  index: number;
  name: string;
  memoryTotalMiB: number | '[N/A]';
  memoryUsedMiB: number | '[N/A]';
  utilizationPercent: number | '[N/A]';
}

/** Two H100s, one idle and one busy. */
export const FAKE_H100S: FakeGpu[] = [
  { index: 0, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 1024, utilizationPercent: 3 },
  { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 40960, utilizationPercent: 97 },
];

export interface FakeNvidiaSmi {
  /** The directory holding only `nvidia-smi`: prepend it to PATH. */
  binDir: string;
  /** `binDir` before this process's PATH, for a worker's environment. */
  path: string;
  /** Answers the report query with these GPUs (as nvidia-smi formats them with `nounits`). */
  setGpus(gpus: FakeGpu[]): void;
  /** Answers with these raw CSV lines instead (to try malformed output). */
  setRows(rows: string[]): void;
  /** Exits with this status (non-zero: prints an error to stderr and nothing else). */
  setExitCode(code: number): void;
  /** The arguments of every call so far. */
  calls(): string[][];
  remove(): void;
}

const csv = (g: FakeGpu) => [g.index, g.name, g.memoryTotalMiB, g.memoryUsedMiB, g.utilizationPercent].join(', ');

export function writeFakeNvidiaSmi(gpus: FakeGpu[] = FAKE_H100S): FakeNvidiaSmi {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-nvidia-smi-'));
  const binDir = path.join(root, 'bin');
  const state = path.join(root, 'state');
  fs.mkdirSync(binDir);
  fs.mkdirSync(state);
  const file = (name: string) => path.join(state, name);
  // Written whole then renamed, so a call never reads a half-written file.
  const write = (name: string, text: string) => {
    fs.writeFileSync(`${file(name)}.tmp`, text);
    fs.renameSync(`${file(name)}.tmp`, file(name));
  };
  // Paths are single-quoted in the script: mkdtemp's names hold no quote.
  const script = `#!/bin/sh
printf '%s\\n' "$*" >> '${file('calls')}'
code=$(cat '${file('exit-code')}')
if [ "$code" != 0 ]; then
  echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.' >&2
  exit "$code"
fi
case "$1" in
  *memory.used*) cat '${file('report.csv')}' ;;
  *) cat '${file('detect.csv')}' ;;
esac
`;
  const setRows = (rows: string[]) => {
    write('report.csv', rows.map((r) => `${r}\n`).join(''));
    write('detect.csv', rows.map((r) => `${r.split(',').slice(0, 3).join(',')}\n`).join(''));
  };
  const setExitCode = (code: number) => write('exit-code', String(code));
  setRows(gpus.map(csv));
  setExitCode(0);
  fs.writeFileSync(file('calls'), '');
  fs.writeFileSync(path.join(binDir, 'nvidia-smi'), script, { mode: 0o755 });
  return {
    binDir,
    path: [binDir, process.env.PATH ?? ''].filter(Boolean).join(path.delimiter),
    setGpus: (g) => setRows(g.map(csv)),
    setRows,
    setExitCode,
    calls: () =>
      fs
        .readFileSync(file('calls'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ')),
    remove: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

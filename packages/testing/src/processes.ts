import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * Spawns the real api and worker processes as a deployment would (a separate Node process each,
 * configured only through the environment), keeps their output for a failing test to show, and
 * makes sure none outlives the test file.
 */

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ENTRY = {
  api: path.join(REPO_ROOT, 'apps/api/src/main.ts'),
  worker: path.join(REPO_ROOT, 'apps/worker/src/main.ts'),
} as const;

export interface ProcessHandle {
  kind: 'api' | 'worker';
  proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Waits until a line of output matches. */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<void>;
}

const live = new Set<ProcessHandle>();
process.on('exit', () => {
  for (const h of live) h.proc.kill('SIGKILL');
});

export function spawnApp(kind: 'api' | 'worker', env: Record<string, string>): ProcessHandle {
  const proc = spawn(process.execPath, ['--import', 'tsx', ENTRY[kind]], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NODE_ENV: 'test', DARKROOM_LOG_PRETTY: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 2_000_000) out = out.slice(-1_000_000);
    for (const l of listeners) l();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(handle);
      resolve({ code, signal });
    });
  });
  const handle: ProcessHandle = {
    kind,
    proc,
    output: () => out,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    waitForOutput: (re, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (re.test(out)) {
            cleanup();
            resolve();
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${kind} did not print ${re} within ${timeoutMs} ms; output:\n${out.slice(-4000)}`));
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          reject(new Error(`${kind} exited before printing ${re}; output:\n${out.slice(-4000)}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          proc.off('exit', onExit);
        };
        listeners.add(check);
        proc.once('exit', onExit);
        check();
      }),
  };
  live.add(handle);
  return handle;
}

export async function startApi(env: Record<string, string>): Promise<ProcessHandle> {
  const h = spawnApp('api', env);
  await h.waitForOutput(/"msg":"api listening"/);
  return h;
}

export async function startWorker(env: Record<string, string>): Promise<ProcessHandle> {
  const h = spawnApp('worker', env);
  await h.waitForOutput(/"msg":"worker ready"/);
  return h;
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((h) => h.stop('SIGKILL')));
}

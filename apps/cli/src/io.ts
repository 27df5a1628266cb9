import type { Readable, Writable } from 'node:stream';

/** Where a command reads and writes: the process's streams, or a test's. */
export interface Io {
  stdout: Output;
  stderr: Output;
  stdin: Readable;
  env: Record<string, string | undefined>;
  /** Aborted on Ctrl-C: a wait stops, the job goes on. */
  signal: AbortSignal;
}

export type Output = Writable & { isTTY?: boolean; columns?: number };

/** Exit codes (documented in `darkroom --help`). */
export const EXIT = {
  ok: 0,
  /** The job ended failed or cancelled. */
  jobFailed: 1,
  usage: 2,
  /** The API answered with an error, could not be reached, or a file could not be written. */
  api: 3,
  /** `--timeout` passed before the job was final (as timeout(1) does). */
  timeout: 124,
  interrupted: 130,
} as const;

/** A mistake in the command line: the message, then the usage of the command. */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/** A terminal that understands cursor movement (not a pipe, a file, or TERM=dumb). */
export function isTerminal(out: Output, env: Io['env']): boolean {
  return out.isTTY === true && env.TERM !== 'dumb';
}

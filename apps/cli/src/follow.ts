import { isFinal, type JobStatusBody } from '@darkroom/client';
import type { Context, Options, Values } from './context.ts';
import { EXIT, isTerminal, UsageError } from './io.ts';
import { createProgress } from './progress.ts';
import { jobLine } from './render.ts';

/*
 * Waits for a job with the live view on stderr, saves the result where `-o` says, and prints the
 * outcome. Exit code: 0 completed, 1 failed or cancelled, 130 when Ctrl-C stopped the wait (the
 * job goes on), 124 past `--timeout`.
 */

export interface FollowOptions {
  /** Seconds; undefined waits as long as it takes. */
  timeout?: number | undefined;
  /** A file path, or `-` for stdout. */
  output?: string | undefined;
  /** A line printed above the live view (not with --quiet, nor with --json off a terminal). */
  heading?: string;
}

export async function follow(ctx: Context, job: JobStatusBody, opts: FollowOptions): Promise<number> {
  const { io } = ctx;
  const mode = ctx.quiet ? 'none' : isTerminal(io.stderr, io.env) ? 'terminal' : ctx.json ? 'none' : 'plain';
  if (opts.heading && mode !== 'none') io.stderr.write(`${opts.heading}\n`);
  const view = createProgress(io.stderr, mode);
  let final = job;
  try {
    view.update(job);
    if (!isFinal(job)) {
      final = await ctx.client.waitFor(job.id, {
        onUpdate: (j) => view.update(j),
        signal: io.signal,
        ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout * 1000 } : {}),
      });
    }
  } catch (err) {
    if (!io.signal.aborted) throw err;
    view.stop();
    io.stderr.write(`stopped waiting; ${job.id} goes on: darkroom status ${job.id}\n`);
    return EXIT.interrupted;
  } finally {
    view.stop();
  }

  if (final.status === 'completed' && opts.output) {
    if (opts.output === '-') await ctx.client.download(final.id, io.stdout, { end: false, signal: io.signal });
    else await ctx.client.download(final.id, opts.output, { signal: io.signal });
  }
  // Human lines go to stderr where stdout carries data (the image, or the JSON body).
  const human = ctx.json || opts.output === '-' ? io.stderr : io.stdout;
  if (ctx.json && opts.output !== '-') io.stdout.write(`${JSON.stringify(final, null, 2)}\n`);
  else human.write(`${jobLine(final)}\n`);
  if (final.status === 'completed' && opts.output && opts.output !== '-') human.write(`saved ${opts.output}\n`);
  return final.status === 'completed' ? EXIT.ok : EXIT.jobFailed;
}

/** The flags of every command that can wait for its job and save its result. */
export const FOLLOW_FLAGS = {
  wait: { type: 'boolean', short: 'w' },
  timeout: { type: 'string' },
  output: { type: 'string', short: 'o' },
} as const satisfies Options;

/**
 * What those flags ask for: undefined when the job is only to be printed. Read before the
 * command's request, so a bad `--timeout` is a usage error with nothing sent.
 */
export function followRequest(v: Values): Pick<FollowOptions, 'timeout' | 'output'> | undefined {
  const timeout = parseTimeout(v.timeout as string | undefined);
  const output = v.output as string | undefined;
  return v.wait || timeout !== undefined || output !== undefined ? { timeout, output } : undefined;
}

/** `--timeout` in seconds. */
export function parseTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--timeout ${value}: expected a number of seconds above 0`);
  return n;
}

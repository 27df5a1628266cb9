import type { Command } from '../context.ts';
import { FOLLOW_FLAGS, follow, followRequest } from '../follow.ts';
import { EXIT, UsageError } from '../io.ts';
import { jobLine } from '../render.ts';

export const retry: Command = {
  name: 'retry',
  summary: 'queue a failed or cancelled job again, under a new id',
  help: `usage: darkroom retry <id> [options]

  The new job has the same pipeline, params, priority, webhook, limits and image. A job is
  retried at most once (retry the retry to go on); one that is queued, active or completed, or
  was retried already, is an error (exit 3, 409 conflict).

  -w, --wait               wait for the new job, showing its queue position and progress
  --timeout <seconds>      stop waiting after this long (exit 124); implies --wait
  -o, --output <file>      save the result there (- for stdout); implies --wait`,
  options: {
    ...FOLLOW_FLAGS,
  },
  async run(ctx, args, v) {
    if (args.length !== 1) throw new UsageError('give one job id', 'retry');
    const wanted = followRequest(v);
    const job = await ctx.client.retryJob(args[0]!, { signal: ctx.io.signal });
    if (wanted) return follow(ctx, job, { ...wanted, heading: `submitted ${job.id} (retry of ${args[0]})` });
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(job, null, 2)}\n` : `${jobLine(job)} (retry of ${args[0]})\n`);
    return EXIT.ok;
  },
};

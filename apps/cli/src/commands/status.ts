import type { Command } from '../context.ts';
import { FOLLOW_FLAGS, follow, followRequest } from '../follow.ts';
import { EXIT, UsageError } from '../io.ts';
import { jobDetails } from '../render.ts';

export const status: Command = {
  name: 'status',
  summary: "show a job's status (or wait for it and save its result)",
  help: `usage: darkroom status <id> [options]

  -w, --wait               wait until the job is final, showing its progress
  --timeout <seconds>      stop waiting after this long (exit 124); implies --wait
  -o, --output <file>      save the result there once completed (- for stdout); implies --wait`,
  options: {
    ...FOLLOW_FLAGS,
  },
  async run(ctx, args, v) {
    if (args.length !== 1) throw new UsageError('give one job id', 'status');
    const wanted = followRequest(v);
    const job = await ctx.client.status(args[0]!, { signal: ctx.io.signal });
    if (wanted) return follow(ctx, job, wanted);
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(job, null, 2)}\n` : jobDetails(job));
    return EXIT.ok;
  },
};

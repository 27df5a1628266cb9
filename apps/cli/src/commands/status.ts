import type { Command } from '../context.ts';
import { follow, parseTimeout } from '../follow.ts';
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
    wait: { type: 'boolean', short: 'w' },
    timeout: { type: 'string' },
    output: { type: 'string', short: 'o' },
  },
  async run(ctx, args, v) {
    if (args.length !== 1) throw new UsageError('give one job id', 'status');
    const timeout = parseTimeout(v.timeout as string | undefined);
    const output = v.output as string | undefined;
    const job = await ctx.client.status(args[0]!, { signal: ctx.io.signal });
    if (v.wait || timeout !== undefined || output !== undefined) return follow(ctx, job, { timeout, output });
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(job, null, 2)}\n` : jobDetails(job));
    return EXIT.ok;
  },
};

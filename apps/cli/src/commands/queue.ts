import type { Command } from '../context.ts';
import { EXIT, UsageError } from '../io.ts';
import { queueText } from '../render.ts';

export const queue: Command = {
  name: 'queue',
  summary: 'the queues: waiting jobs by priority, active jobs, workers, run times',
  help: `usage: darkroom queue

  One row per pipeline (every station's jobs): waiting by priority, active, workers,
  average run time, completions per minute; then the live workers and the limits.`,
  options: {},
  async run(ctx, args) {
    if (args.length > 0) throw new UsageError(`queue takes no arguments (got ${args.join(' ')})`, 'queue');
    const body = await ctx.client.queue({ signal: ctx.io.signal });
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(body, null, 2)}\n` : queueText(body));
    return EXIT.ok;
  },
};

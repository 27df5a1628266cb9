import type { Command } from '../context.ts';
import { EXIT, UsageError } from '../io.ts';

export const cancel: Command = {
  name: 'cancel',
  summary: 'cancel a job (a queued one at once, an active one on its worker)',
  help: `usage: darkroom cancel <id>

  A queued job is cancelled at once; an active one is aborted on its worker and ends
  cancelled shortly (unless it finishes first). A job already final is an error (exit 3).`,
  options: {},
  async run(ctx, args) {
    if (args.length !== 1) throw new UsageError('give one job id', 'cancel');
    const job = await ctx.client.cancel(args[0]!, { signal: ctx.io.signal });
    const text =
      job.status === 'cancelled' ? `${job.id} cancelled` : `${job.id} cancel requested: it was ${job.status}; it ends cancelled shortly`;
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(job, null, 2)}\n` : `${text}\n`);
    return EXIT.ok;
  },
};

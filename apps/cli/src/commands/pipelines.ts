import type { Command } from '../context.ts';
import { EXIT, UsageError } from '../io.ts';
import { pipelinesText } from '../render.ts';

export const pipelines: Command = {
  name: 'pipelines',
  summary: 'the pipelines, whether they take an image, and their params',
  help: `usage: darkroom pipelines

  Each pipeline with its params written as the flags of darkroom submit
  (--json prints the JSON Schemas).`,
  options: {},
  async run(ctx, args) {
    if (args.length > 0) throw new UsageError(`pipelines takes no arguments (got ${args.join(' ')})`, 'pipelines');
    const body = await ctx.client.pipelines({ signal: ctx.io.signal });
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(body, null, 2)}\n` : pipelinesText(body.pipelines));
    return EXIT.ok;
  },
};

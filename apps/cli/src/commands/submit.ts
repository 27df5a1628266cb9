import fs from 'node:fs';
import type { Priority } from '@darkroom/client';
import type { Command } from '../context.ts';
import { follow, parseTimeout } from '../follow.ts';
import { EXIT, UsageError } from '../io.ts';
import { buildParams } from '../params.ts';
import { jobLine } from '../render.ts';

export const submit: Command = {
  name: 'submit',
  summary: 'submit an image (or a job without one) to a pipeline',
  help: `usage: darkroom submit [<image> | -] [options]

  <image>                   a JPEG, PNG, WebP, AVIF, GIF or TIFF file; - reads stdin
  -p, --pipeline <name>     the pipeline (default: edit when an image is given)
  --op <name:k=v,…>         an edit operation, appended to params.operations (repeatable),
                            e.g. --op resize:width=512 --op format:type=webp,quality=80
  --param <key=value>       one param (repeatable; dotted keys nest; numbers stay numbers)
  --params <json|@file>     params as a JSON object, or read from a file
  --priority <p>            critical, high, normal or low (default: the station's)
  --webhook <url>           called once the job is final
  --idempotency-key <key>   makes re-running the same command safe (default: a fresh one per run)
  -w, --wait                wait for the job, showing its queue position and progress
  --timeout <seconds>       stop waiting after this long (exit 124); implies --wait
  -o, --output <file>       save the result there (- for stdout); implies --wait

examples:
  darkroom submit photo.jpg --op resize:width=512 --op format:type=webp --wait -o out.webp
  darkroom submit --pipeline synthetic --param steps=20 --priority high --json`,
  options: {
    pipeline: { type: 'string', short: 'p' },
    op: { type: 'string', multiple: true },
    param: { type: 'string', multiple: true },
    params: { type: 'string' },
    priority: { type: 'string' },
    webhook: { type: 'string' },
    'idempotency-key': { type: 'string' },
    wait: { type: 'boolean', short: 'w' },
    timeout: { type: 'string' },
    output: { type: 'string', short: 'o' },
  },
  async run(ctx, args, v) {
    if (args.length > 1) throw new UsageError(`one image at a time (got ${args.length}: ${args.join(' ')})`, 'submit');
    const file = args[0];
    const pipeline = (v.pipeline as string | undefined) ?? (file !== undefined || v.op ? 'edit' : undefined);
    if (!pipeline) throw new UsageError('name a --pipeline, or give an image for the edit pipeline', 'submit');
    if (file !== undefined && file !== '-' && !fs.statSync(file, { throwIfNoEntry: false })?.isFile()) {
      throw new UsageError(`cannot read ${file}: no such file`, 'submit');
    }
    const params = buildParams({ params: v.params as string | undefined, param: v.param as string[], op: v.op as string[] });
    const timeout = parseTimeout(v.timeout as string | undefined);
    const output = v.output as string | undefined;

    const job = await ctx.client.submit({
      pipeline,
      ...(file !== undefined ? { image: file === '-' ? ctx.io.stdin : file } : {}),
      ...(params !== undefined ? { params } : {}),
      ...(v.priority !== undefined ? { priority: v.priority as Priority } : {}),
      ...(v.webhook !== undefined ? { webhookUrl: v.webhook as string } : {}),
      ...(v['idempotency-key'] !== undefined ? { idempotencyKey: v['idempotency-key'] as string } : {}),
      signal: ctx.io.signal,
    });
    if (v.wait || timeout !== undefined || output !== undefined)
      return follow(ctx, job, { timeout, output, heading: `submitted ${job.id}` });
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(job, null, 2)}\n` : `${jobLine(job)}\n`);
    return EXIT.ok;
  },
};

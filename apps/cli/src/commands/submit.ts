import fs from 'node:fs';
import type { Priority, WebhookEventName } from '@darkroom/client';
import type { Command } from '../context.ts';
import { FOLLOW_FLAGS, follow, followRequest } from '../follow.ts';
import { EXIT, UsageError } from '../io.ts';
import { buildParams, parseList } from '../params.ts';
import { jobLine } from '../render.ts';

export const submit: Command = {
  name: 'submit',
  summary: 'submit an image (or a job without one) to a pipeline',
  help: `usage: darkroom submit [<image> | - | --image-url <url>] [options]

  <image>                   a JPEG, PNG, WebP, AVIF, GIF or TIFF file; - reads stdin
  --image-url <url>         an http(s) URL the server fetches the image from, instead of a file
  -p, --pipeline <name>     the pipeline (default: edit when an image is given)
  --op <name:k=v,…>         an edit operation, appended to params.operations (repeatable),
                            e.g. --op resize:width=512 --op format:type=webp,quality=80
  --param <key=value>       one param (repeatable; dotted keys nest; numbers stay numbers)
  --params <json|@file>     params as a JSON object, or read from a file
  --priority <p>            critical, high, normal or low (default: the station's)
  --webhook-url <url>       called once the job is final (also: --webhook)
  --webhook-events <list>   what the webhook is told of, comma-separated: started, completed,
                            failed, cancelled (default: the last three)
  --timeout-seconds <n>     the job's own execution limit, at most the operator's
  --ttl-seconds <n>         how long the job may wait in the queue before it starts
  --idempotency-key <key>   makes re-running the same command safe (default: a fresh one per run)
  -w, --wait                wait for the job, showing its queue position and progress
  --timeout <seconds>       stop waiting after this long (exit 124); implies --wait
  -o, --output <file>       save the result there (- for stdout); implies --wait

examples:
  darkroom submit photo.jpg --op resize:width=512 --op format:type=webp --wait -o out.webp
  darkroom submit --image-url https://example.com/photo.jpg --op flip --wait -o out.jpg
  darkroom submit --pipeline synthetic --param steps=20 --priority high --json`,
  options: {
    pipeline: { type: 'string', short: 'p' },
    'image-url': { type: 'string' },
    op: { type: 'string', multiple: true },
    param: { type: 'string', multiple: true },
    params: { type: 'string' },
    priority: { type: 'string' },
    'webhook-url': { type: 'string' },
    webhook: { type: 'string' },
    'webhook-events': { type: 'string' },
    'timeout-seconds': { type: 'string' },
    'ttl-seconds': { type: 'string' },
    'idempotency-key': { type: 'string' },
    ...FOLLOW_FLAGS,
  },
  async run(ctx, args, v) {
    if (args.length > 1) throw new UsageError(`one image at a time (got ${args.length}: ${args.join(' ')})`, 'submit');
    const file = args[0];
    const imageUrl = v['image-url'] as string | undefined;
    if (file !== undefined && imageUrl !== undefined) {
      throw new UsageError(`give an image file or --image-url, not both (got ${file} and ${imageUrl})`, 'submit');
    }
    const hasImage = file !== undefined || imageUrl !== undefined;
    const pipeline = (v.pipeline as string | undefined) ?? (hasImage || v.op ? 'edit' : undefined);
    if (!pipeline) throw new UsageError('name a --pipeline, or give an image for the edit pipeline', 'submit');
    if (file !== undefined && file !== '-' && !fs.statSync(file, { throwIfNoEntry: false })?.isFile()) {
      throw new UsageError(`cannot read ${file}: no such file`, 'submit');
    }
    if (v.webhook !== undefined && v['webhook-url'] !== undefined && v.webhook !== v['webhook-url']) {
      throw new UsageError('--webhook and --webhook-url name the same thing: give one', 'submit');
    }
    const webhookUrl = (v['webhook-url'] ?? v.webhook) as string | undefined;
    const webhookEvents = parseList(v['webhook-events'] as string | undefined, '--webhook-events') as WebhookEventName[] | undefined;
    const timeoutSeconds = parseSeconds(v['timeout-seconds'] as string | undefined, '--timeout-seconds');
    const ttlSeconds = parseSeconds(v['ttl-seconds'] as string | undefined, '--ttl-seconds');
    const params = buildParams({ params: v.params as string | undefined, param: v.param as string[], op: v.op as string[] });
    const wanted = followRequest(v);

    const job = await ctx.client.submit({
      pipeline,
      ...(file !== undefined ? { image: file === '-' ? ctx.io.stdin : file } : {}),
      ...(imageUrl !== undefined ? { imageUrl } : {}),
      ...(params !== undefined ? { params } : {}),
      ...(v.priority !== undefined ? { priority: v.priority as Priority } : {}),
      ...(webhookUrl !== undefined ? { webhookUrl } : {}),
      ...(webhookEvents !== undefined ? { webhookEvents } : {}),
      ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
      ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
      ...(v['idempotency-key'] !== undefined ? { idempotencyKey: v['idempotency-key'] as string } : {}),
      signal: ctx.io.signal,
    });
    if (wanted) return follow(ctx, job, { ...wanted, heading: `submitted ${job.id}` });
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(job, null, 2)}\n` : `${jobLine(job)}\n`);
    return EXIT.ok;
  },
};

/** A whole number of seconds above 0; the API checks it against the operator's limit. */
function parseSeconds(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) <= 0)
    throw new UsageError(`${flag} ${value}: expected a whole number of seconds above 0`, 'submit');
  return Number(value);
}

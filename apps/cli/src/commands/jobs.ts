import type { JobStatus, JobStatusBody } from '@darkroom/client';
import type { Command } from '../context.ts';
import { EXIT, UsageError } from '../io.ts';
import { parseList } from '../params.ts';
import { jobsTable } from '../render.ts';

/** The most a page of `GET /v1/jobs` holds. */
const PAGE_MAX = 100;
const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

export const jobs: Command = {
  name: 'jobs',
  summary: "list the station's own jobs, newest first",
  help: `usage: darkroom jobs [options]

  --status <list>          only jobs in these states, comma-separated:
                           queued, active, completed, failed, cancelled
  --pipeline <name>        only jobs of this pipeline
  --since <time>           only jobs submitted since then: an ISO 8601 time
                           (2026-12-01T00:00:00Z) or an age such as 30m, 2h, 7d
  --limit <n>              at most this many jobs (default 20); pages are followed as needed

  A row per job: id, pipeline, status, when it was created, its age, and what there is to
  know of its state (queue position, progress, result, error, retry links).
  --json prints the jobs as a JSON array of status bodies.

examples:
  darkroom jobs --status queued,active        # what is in flight, e.g. after a restart
  darkroom jobs --status failed --since 1d --json`,
  options: {
    status: { type: 'string' },
    pipeline: { type: 'string' },
    since: { type: 'string' },
    limit: { type: 'string' },
  },
  async run(ctx, args, v) {
    if (args.length > 0) throw new UsageError(`jobs takes no arguments (got ${args.join(' ')})`, 'jobs');
    const limit = parseLimit(v.limit as string | undefined);
    const status = parseList(v.status as string | undefined, '--status') as JobStatus[] | undefined;
    const since = parseSince(v.since as string | undefined, Date.now());
    const found: JobStatusBody[] = [];
    let cursor: string | undefined;
    // A filtered page can hold fewer jobs than asked for and still have a next one: follow the
    // cursor until there are enough or there is no next page.
    do {
      const page = await ctx.client.listJobs({
        ...(status ? { status } : {}),
        ...(v.pipeline !== undefined ? { pipeline: v.pipeline as string } : {}),
        ...(since !== undefined ? { since } : {}),
        limit: Math.min(PAGE_MAX, limit - found.length),
        ...(cursor ? { cursor } : {}),
        signal: ctx.io.signal,
      });
      found.push(...page.jobs.slice(0, limit - found.length));
      cursor = page.nextCursor ?? undefined;
    } while (cursor && found.length < limit);
    ctx.io.stdout.write(ctx.json ? `${JSON.stringify(found, null, 2)}\n` : found.length > 0 ? jobsTable(found, Date.now()) : 'no jobs\n');
    return EXIT.ok;
  },
};

function parseLimit(value: string | undefined): number {
  if (value === undefined) return 20;
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new UsageError(`--limit ${value}: expected a whole number above 0`, 'jobs');
  return Number(value);
}

/** An age (`90s`, `30m`, `2h`, `7d`) becomes the time that long ago; anything else goes to the API as written. */
export function parseSince(value: string | undefined, now: number): string | undefined {
  if (value === undefined) return undefined;
  const age = /^(\d+)\s*([smhd])$/.exec(value.trim());
  if (!age) return value;
  return new Date(now - Number(age[1]) * UNITS[age[2]!]! * 1000).toISOString();
}

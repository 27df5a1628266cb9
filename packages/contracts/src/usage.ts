import { z } from 'zod';

/*
 * GPU time per station: what `GET /v1/usage` answers. Device time is the time a job held a device
 * slot (its compute phase), queued time the wait from submit to its first start, model-load time
 * the part of device time a pipeline reported spending on loading models.
 */

/** The longest range one `GET /v1/usage` covers, in days (from and to included). */
export const USAGE_MAX_DAYS = 366;

/** A UTC calendar day, `YYYY-MM-DD`, that exists (no 2026-02-30). */
export const UsageDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date as YYYY-MM-DD')
  .refine((s) => {
    const d = new Date(`${s}T00:00:00Z`);
    return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === s;
  }, 'is not a calendar date')
  .meta({ description: 'A UTC day, `YYYY-MM-DD`.', examples: ['2026-12-01'] });

export const UsageFigures = z.object({
  /** Jobs that ended (completed, failed or cancelled) after running. */
  jobs: z.int().nonnegative(),
  deviceSeconds: z.number().nonnegative(),
  queuedSeconds: z.number().nonnegative(),
  modelLoadSeconds: z.number().nonnegative(),
});
export type UsageFigures = z.infer<typeof UsageFigures>;

export const UsageRow = z.object({
  date: z.string().meta({ description: 'The UTC day the time was recorded on (a job’s attempt ended).' }),
  station: z.string(),
  pipeline: z.string(),
  model: z.string().meta({ description: 'The params’ `model`, else their `workflow`, else empty.' }),
  ...UsageFigures.shape,
});
export type UsageRow = z.infer<typeof UsageRow>;

export const UsageBody = z.object({
  from: z.string(),
  to: z.string(),
  days: z.array(UsageRow),
  totals: UsageFigures,
});
export type UsageBody = z.infer<typeof UsageBody>;

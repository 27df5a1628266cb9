import { type FieldError, USAGE_MAX_DAYS, UsageDate } from '@darkroom/contracts';
import { readUsage, utcDay } from '@darkroom/jobs';
import { badRequest } from '../http/problem.ts';
import type { Handler, RouteContext } from './route.ts';

/** GET /v1/usage?from=&to=: a station's own GPU time, or every station's for the admin. */
export function getUsage({ deps }: RouteContext): Handler {
  return async ({ query, viewer }) => {
    const today = utcDay(Date.now());
    const errors: FieldError[] = [];
    const day = (name: 'from' | 'to'): string => {
      const raw = query[name];
      if (raw === undefined || raw === '') return today;
      const parsed = UsageDate.safeParse(raw);
      if (parsed.success) return parsed.data;
      errors.push({ path: name, message: typeof raw === 'string' ? (parsed.error.issues[0]?.message ?? 'invalid') : 'must be given once' });
      return today;
    };
    const from = day('from');
    const to = day('to');
    if (errors.length === 0 && from > to) errors.push({ path: 'from', message: 'must not be after to' });
    const span = (Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000 + 1;
    if (errors.length === 0 && span > USAGE_MAX_DAYS) {
      errors.push({ path: 'to', message: `the range covers more than ${USAGE_MAX_DAYS} days` });
    }
    if (errors.length > 0) throw badRequest('the usage query is invalid', errors);
    const station = 'station' in viewer ? viewer.station.name : undefined;
    const body = await readUsage(deps.redis, deps.config.prefix, { from, to, ...(station !== undefined ? { station } : {}) });
    return { status: 200, json: body };
  };
}

import type { UsageBody, UsageFigures, UsageRow } from '@darkroom/contracts';
import type { Redis } from 'ioredis';
import { BudgetExceeded } from './errors.ts';
import { sysKeys } from './keys.ts';
import type { Station } from './station.ts';

/*
 * GPU time per station, pipeline and model, per UTC day. A worker adds an attempt's figures when
 * it ends (after BullMQ stored the job's outcome), in one MULTI: the day's detail hash and the
 * day's device total per station, which the budget check reads with one HGET. Figures are whole
 * milliseconds (HINCRBY: exact, whatever the number of writers). Days are kept USAGE_RETENTION_DAYS.
 */

export const USAGE_RETENTION_DAYS = 400;
const FIGURES = ['jobs', 'deviceMs', 'queuedMs', 'modelLoadMs'] as const;
type Figure = (typeof FIGURES)[number];
const MAX_MODEL_LENGTH = 128;
const DAY_MS = 86_400_000;

/** What a job ran with, for the usage rows: its params' `model`, else `workflow`, else ''. */
export function usageModel(params: Record<string, unknown> | undefined): string {
  const m = params?.model ?? params?.workflow;
  return typeof m === 'string' ? m.slice(0, MAX_MODEL_LENGTH) : '';
}

/** The UTC day of a time, `YYYY-MM-DD`. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Whole seconds until the next UTC midnight, at least 1. */
export function secondsToUtcMidnight(now = Date.now()): number {
  return Math.max(1, Math.ceil((Math.floor(now / DAY_MS + 1) * DAY_MS - now) / 1000));
}

export interface UsageEntry {
  station: string;
  pipeline: string;
  model: string;
  /** When the attempt ended: the day it counts on. */
  at: number;
  /** 1 when the job ended with this attempt, 0 for an attempt that will be retried. */
  jobs: number;
  deviceMs: number;
  queuedMs: number;
  modelLoadMs: number;
}

const field = (figure: Figure, station: string, pipeline: string, model: string) =>
  `${figure}|${JSON.stringify([station, pipeline, model])}`;

export async function recordUsage(redis: Redis, prefix: string, e: UsageEntry): Promise<void> {
  const keys = sysKeys(prefix);
  const day = utcDay(e.at);
  const detail = keys.usage(day);
  const device = keys.usageDevice(day);
  const ttl = USAGE_RETENTION_DAYS * 86_400;
  const multi = redis.multi();
  for (const f of FIGURES) multi.hincrby(detail, field(f, e.station, e.pipeline, e.model), Math.max(0, Math.round(e[f])));
  multi.hincrby(device, e.station, Math.max(0, Math.round(e.deviceMs)));
  multi.expire(detail, ttl).expire(device, ttl);
  const res = await multi.exec();
  const failed = res?.find(([err]) => err);
  if (failed) throw failed[0];
}

/** The station's device seconds so far today (UTC): one HGET. */
export async function deviceSecondsToday(redis: Redis, prefix: string, station: string, now = Date.now()): Promise<number> {
  return Number((await redis.hget(sysKeys(prefix).usageDevice(utcDay(now)), station)) ?? 0) / 1000;
}

/** BudgetExceeded when the station has a daily budget and today's device time reached it. */
export async function checkBudget(redis: Redis, prefix: string, station: Station, now = Date.now()): Promise<void> {
  const budget = station.gpuSecondsPerDay;
  if (!budget) return;
  const used = await deviceSecondsToday(redis, prefix, station.name, now);
  if (used < budget) return;
  throw new BudgetExceeded(
    `station ${station.name} used ${Math.round(used)} of its ${budget} GPU seconds for today (UTC); submit again after midnight UTC`,
    { retryAfterSeconds: secondsToUtcMidnight(now) },
  );
}

/** Every day from `from` to `to` (YYYY-MM-DD, both included). */
export function daysBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += DAY_MS) out.push(utcDay(t));
  return out;
}

const seconds = (ms: number) => Math.round(ms) / 1000;

/** The rows from `from` to `to` (one round trip), of one station or (no station) of all. */
export async function readUsage(redis: Redis, prefix: string, q: { from: string; to: string; station?: string }): Promise<UsageBody> {
  const keys = sysKeys(prefix);
  const days = daysBetween(q.from, q.to);
  const multi = redis.multi();
  for (const day of days) multi.hgetall(keys.usage(day));
  const res = (await multi.exec()) ?? [];
  const rows: UsageRow[] = [];
  const totals: UsageFigures = { jobs: 0, deviceSeconds: 0, queuedSeconds: 0, modelLoadSeconds: 0 };
  let totalMs = { device: 0, queued: 0, modelLoad: 0 };
  for (const [i, day] of days.entries()) {
    const [err, hash] = res[i] ?? [];
    if (err) throw err;
    const byRow = new Map<string, { station: string; pipeline: string; model: string } & Record<Figure, number>>();
    for (const [name, value] of Object.entries((hash ?? {}) as Record<string, string>)) {
      const bar = name.indexOf('|');
      const figure = name.slice(0, bar) as Figure;
      if (!FIGURES.includes(figure)) continue;
      let who: unknown;
      try {
        who = JSON.parse(name.slice(bar + 1));
      } catch {
        continue;
      }
      if (!Array.isArray(who) || who.length !== 3) continue;
      const [station, pipeline, model] = who.map(String) as [string, string, string];
      if (q.station !== undefined && station !== q.station) continue;
      const k = name.slice(bar + 1);
      let row = byRow.get(k);
      if (!row) {
        row = { station, pipeline, model, jobs: 0, deviceMs: 0, queuedMs: 0, modelLoadMs: 0 };
        byRow.set(k, row);
      }
      row[figure] += Number(value) || 0;
    }
    const sorted = [...byRow.values()].sort((a, b) => cmp(a.station, b.station) || cmp(a.pipeline, b.pipeline) || cmp(a.model, b.model));
    for (const r of sorted) {
      rows.push({
        date: day,
        station: r.station,
        pipeline: r.pipeline,
        model: r.model,
        jobs: r.jobs,
        deviceSeconds: seconds(r.deviceMs),
        queuedSeconds: seconds(r.queuedMs),
        modelLoadSeconds: seconds(r.modelLoadMs),
      });
      totals.jobs += r.jobs;
      totalMs = { device: totalMs.device + r.deviceMs, queued: totalMs.queued + r.queuedMs, modelLoad: totalMs.modelLoad + r.modelLoadMs };
    }
  }
  totals.deviceSeconds = seconds(totalMs.device);
  totals.queuedSeconds = seconds(totalMs.queued);
  totals.modelLoadSeconds = seconds(totalMs.modelLoad);
  return { from: q.from, to: q.to, days: rows, totals };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

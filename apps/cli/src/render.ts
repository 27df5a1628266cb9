import type { JobStatusBody, PipelineInfo, QueueBody } from '@darkroom/client';
import type { InputFormat } from '@darkroom/contracts';
import { describeState } from './progress.ts';

/* Human text for what the API answers: a job, the queue table, the pipelines and their params. */

/** The accepted input formats, in the words of the contract (checked against the contracts' list). */
export const ACCEPTED_FORMATS = {
  jpeg: 'JPEG',
  png: 'PNG',
  webp: 'WebP',
  avif: 'AVIF',
  gif: 'GIF',
  tiff: 'TIFF',
} satisfies Record<InputFormat, string>;

/** One line: `edit_… completed 512×418 image/webp, 20411 bytes in 812 ms`. */
export function jobLine(job: JobStatusBody): string {
  let line = `${job.id} ${describeState(job)}`;
  if (job.result) line += ` ${job.result.width}×${job.result.height} ${job.result.contentType}, ${job.result.bytes} bytes`;
  if (job.status !== 'queued' && job.status !== 'active' && job.durationMs !== undefined) line += ` in ${job.durationMs} ms`;
  return line;
}

/** `darkroom jobs`: a row per job, newest first as the API lists them. */
export function jobsTable(jobs: JobStatusBody[], now: number): string {
  return table(
    ['ID', 'PIPELINE', 'STATUS', 'CREATED', 'AGE', 'DETAIL'],
    jobs.map((j) => [j.id, j.pipeline, j.status, j.createdAt.replace(/\.\d+Z$/, 'Z'), age(now - Date.parse(j.createdAt)), jobDetail(j)]),
  );
}

/** `45s`, `12m`, `3h`, `2d`: how long ago, in its largest unit. */
export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** What a row says beyond the status: position, progress, result, error, retry links. */
function jobDetail(job: JobStatusBody): string {
  const parts: string[] = [];
  const state = describeState(job);
  if (state.startsWith(`${job.status} `)) parts.push(state.slice(job.status.length + 1));
  if (job.result) parts.push(`${job.result.width}×${job.result.height} ${job.result.contentType}`);
  if (job.status !== 'queued' && job.status !== 'active' && job.durationMs !== undefined) parts.push(`${job.durationMs} ms`);
  if (job.retryOf) parts.push(`retry of ${job.retryOf}`);
  if (job.retriedBy) parts.push(`retried as ${job.retriedBy}`);
  return parts.join(', ');
}

/** `darkroom status`: the job, one field a line. */
export function jobDetails(job: JobStatusBody): string {
  const rows: [string, string | undefined][] = [
    ['id', job.id],
    ['status', describeState(job)],
    ['pipeline', job.pipeline],
    ['priority', job.priority],
    ['attempts', String(job.attempts)],
    ['created', job.createdAt],
    ['started', job.startedAt],
    ['finished', job.finishedAt],
    ['duration', job.durationMs !== undefined ? `${job.durationMs} ms` : undefined],
    [
      'result',
      job.result
        ? `${job.result.width}×${job.result.height} ${job.result.contentType}, ${job.result.bytes} bytes, sha256 ${job.result.sha256}`
        : undefined,
    ],
    ['retry of', job.retryOf],
    ['retried as', job.retriedBy],
  ];
  const shown = rows.filter((r): r is [string, string] => r[1] !== undefined);
  const width = Math.max(...shown.map(([k]) => k.length));
  return `${shown.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`;
}

/** Columns padded to their widest cell; numbers right-aligned. */
export function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const numeric = head.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || r[i] === '-'));
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

const orDash = (v: number | null) => (v === null ? '-' : v);

/** `darkroom queue`: a row per pipeline, then the workers and the limits. */
export function queueText(q: QueueBody): string {
  let out = table(
    ['PIPELINE', 'STATE', 'WAITING', 'CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'ACTIVE', 'WORKERS', 'AVG MS', 'PER MIN', 'DONE', 'FAILED'],
    q.pipelines.map((p) => [
      p.name,
      p.paused ? 'paused' : 'running',
      p.waiting.total,
      p.waiting.critical,
      p.waiting.high,
      p.waiting.normal,
      p.waiting.low,
      p.active,
      p.workers.length,
      orDash(p.avgProcessingMs === null ? null : Math.round(p.avgProcessingMs)),
      orDash(p.throughputPerMinute),
      p.completed,
      p.failed,
    ]),
  );
  const workers = new Map(q.pipelines.flatMap((p) => p.workers.map((w) => [w.name, w] as const)));
  if (workers.size > 0) {
    out += `\n${table(
      ['WORKER', 'PIPELINES', 'ACTIVE', 'PROCESSED', 'FAILED', 'DEVICE', 'LAST SEEN'],
      [...workers.values()].map((w) => [w.name, w.pipelines.join(','), w.activeJobs, w.processed, w.failed, w.device, w.lastSeen]),
    )}`;
  }
  const l = q.limits;
  const limit = (v: number | null, unit = '') => (v === null ? 'off' : `${v}${unit}`);
  const mib = l.maxUploadBytes === null ? null : Math.round((l.maxUploadBytes / 2 ** 20) * 10) / 10;
  out += `\nlimits: upload ${limit(mib, ' MiB')}, edge ${limit(l.maxImageEdge, ' px')}, ${limit(l.maxImagePixels, ' pixels')}, queue ${limit(l.maxQueueSize, ' waiting')}\n`;
  if (l.station) {
    out += `station ${l.station.name}: ${l.station.pending} pending of ${limit(l.station.maxPending)}, highest priority ${l.station.maxPriority}\n`;
  }
  return out;
}

type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  oneOf?: Schema[];
  anyOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  description?: string;
};

/** A value's shape in a few characters: `int 1–16384`, `cover|contain`, `string`. */
function shape(s: Schema): string {
  if (s.const !== undefined) return String(s.const);
  if (s.enum) return s.enum.map(String).join('|');
  const type = Array.isArray(s.type) ? s.type.join('|') : (s.type ?? 'value');
  let text = type === 'integer' ? 'int' : type;
  if (s.minimum !== undefined || s.maximum !== undefined) text += ` ${s.minimum ?? ''}–${s.maximum ?? ''}`;
  if (s.default !== undefined && typeof s.default !== 'object') text += `, default ${s.default}`;
  return text;
}

/** The variants of a list of `{ op: … }` objects, where a list is one (edit's `operations`). */
function opVariants(s: Schema): Schema[] | undefined {
  const variants = s.type === 'array' ? (s.items?.oneOf ?? s.items?.anyOf) : undefined;
  return variants?.every((v) => v.properties?.op?.const !== undefined) ? variants : undefined;
}

/** `darkroom pipelines`: each pipeline, whether it takes an image, and its params as CLI flags. */
export function pipelinesText(pipelines: PipelineInfo[]): string {
  return pipelines
    .map((p) => {
      const lines = [`${p.name} (${p.acceptsImage ? 'takes an image' : 'no image'})`, `  ${p.description}`];
      const schema = p.params as Schema;
      for (const [name, prop] of Object.entries(schema.properties ?? {})) {
        const ops = opVariants(prop);
        if (ops) {
          for (const v of ops) {
            const args = Object.entries(v.properties ?? {})
              .filter(([k]) => k !== 'op')
              .map(([k, a]) => (v.required?.includes(k) ? `${k}=<${shape(a)}>` : `[${k}=<${shape(a)}>]`));
            lines.push(`  --op ${v.properties!.op!.const}${args.length ? `:${args.join(',')}` : ''}`);
          }
        } else if (prop.type === 'object' || prop.type === 'array') {
          lines.push(`  --params '{"${name}": …}'  ${prop.description ?? shape(prop)}`);
        } else {
          lines.push(`  --param ${name}=<${shape(prop)}>${schema.required?.includes(name) ? ' (required)' : ''}`);
        }
      }
      return `${lines.join('\n')}\n`;
    })
    .join('\n');
}

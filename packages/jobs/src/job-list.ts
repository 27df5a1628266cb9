import type { JobStatus } from '@darkroom/contracts';

/*
 * `GET /v1/jobs` without ids: a station's jobs, newest first, read from its index (a Redis stream
 * of job ids in the order they were queued, see keys.ts `jobIndex`: a few dozen bytes per job,
 * where a sorted set would cost several times that). A page resumes after the last index entry
 * the previous page looked at: its cursor is that entry's id, so entries added meanwhile (newer)
 * never shift a page.
 */

/** Where a page resumes: after this index entry (stream entry id `<ms>-<seq>`), in newest-first order. */
export interface JobCursor {
  ms: number;
  seq: number;
}

export interface JobListQuery {
  limit: number;
  /** Only jobs in these states; absent: all. */
  statuses?: ReadonlySet<JobStatus>;
  /** Only jobs of this pipeline. */
  pipeline?: string;
  /** Only jobs submitted at or after this time (ms). */
  sinceMs?: number;
  cursor?: JobCursor;
}

/** Opaque to stations: base64url of the entry id. */
export function encodeJobCursor(c: JobCursor): string {
  return Buffer.from(cursorEntry(c)).toString('base64url');
}

/** The cursor, or undefined for anything this API did not give out. */
export function decodeJobCursor(text: string): JobCursor | undefined {
  if (text.length > 64 || !/^[A-Za-z0-9_-]+$/.test(text)) return undefined;
  const m = /^(\d{1,15})-(\d{1,15})$/.exec(Buffer.from(text, 'base64url').toString('utf8'));
  return m ? { ms: Number(m[1]), seq: Number(m[2]) } : undefined;
}

export const cursorEntry = (c: JobCursor): string => `${c.ms}-${c.seq}`;

export function entryCursor(entry: string): JobCursor {
  const [ms, seq] = entry.split('-');
  return { ms: Number(ms), seq: Number(seq) };
}

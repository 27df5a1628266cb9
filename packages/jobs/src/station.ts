import type { Priority } from '@darkroom/contracts';

/** A client of the queue, as the api's station registry describes it. */
export interface Station {
  name: string;
  maxPriority: Priority;
  defaultPriority: Priority;
  /** Waiting + active jobs at once; null: no limit. */
  maxPending: number | null;
  requestsPerMinute: number | null;
  webhookSecret: string | undefined;
  /** Its share of turns against other stations at the same priority (default 1). */
  weight: number;
  /** Device seconds per UTC day; past them submits are refused until midnight. Absent or null: no budget. */
  gpuSecondsPerDay?: number | null;
}

/** Who is asking: a station sees only its own jobs; the admin credential sees all. */
export type Viewer = { station: Station } | { admin: true };

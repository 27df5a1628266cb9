/*
 * Darkroom's own Redis keys, beside BullMQ's under the same prefix. BullMQ uses
 * `<prefix>:<queue>:…`; ours live under `<prefix>:sys:…` ("sys" is never a pipeline name).
 */
export function sysKeys(prefix: string) {
  const base = `${prefix}:sys`;
  return {
    /** HASH worker name → JSON heartbeat (WorkerInfo + concurrency). */
    workers: `${base}:workers`,
    /** LIST of recent run times (ms) of a pipeline, newest first. */
    durations: (pipeline: string) => `${base}:durations:${pipeline}`,
    /** STRING counter of completions in one minute bucket. */
    /** SET of a station's job ids that are waiting or active (its `pending` count). */
    pending: (station: string) => `${base}:pending:${station}`,
    doneBucket: (pipeline: string, minute: number) => `${base}:done:${pipeline}:${minute}`,
  };
}

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
    /** STREAM of a station's job ids (field `j`) in the order they were queued: what `GET /v1/jobs` lists. */
    jobIndex: (station: string) => `${base}:jobs:${station}`,
    /** SET of a station's job ids that are waiting or active (its `pending` count). */
    pending: (station: string) => `${base}:pending:${station}`,
    /** STRING set while a cancel of an active job is pending (the worker holding it aborts it). */
    cancelRequested: (id: string) => `${base}:cancel:${id}`,
    /** Pub/sub channel carrying ids of active jobs to abort. */
    cancelChannel: `${base}:cancel-channel`,
    /** STRING station name: the job existed and was removed after its retention (answers 410). */
    tombstone: (id: string) => `${base}:tomb:${id}`,
    /** STRING JSON {fingerprint, jobId}: a station's Idempotency-Key, for 24 h. */
    idempotency: (station: string, keyHash: string) => `${base}:idem:${station}:${keyHash}`,
    /** STRING: the API instance currently running maintenance (aging, expiry, retention). */
    maintenanceLock: `${base}:maintenance-lock`,
    /** Rate-limiter keys of stations. */
    rateLimit: `${base}:rl`,
    doneBucket: (pipeline: string, minute: number) => `${base}:done:${pipeline}:${minute}`,
    /** HASH "<pipeline>|<model>|<device kind>" → recent model load time (ms, a moving average). */
    loadTimes: `${base}:load-times`,
    /** ZSET job id → when it expires (ms): jobs submitted with their own queue time-to-live. */
    ownTtl: (pipeline: string) => `${base}:ttl:${pipeline}`,
    /** HASH of one UTC day's GPU time: `<figure>|<JSON [station, pipeline, model]>` → count or ms (see usage.ts). */
    usage: (day: string) => `${base}:usage:${day}`,
    /** HASH of one UTC day's device time per station (ms), read by the budget check. */
    usageDevice: (day: string) => `${base}:usage-device:${day}`,
  };
}

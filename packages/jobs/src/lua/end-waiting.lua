--[[
  Ends a job that has not started (waiting, prioritized or delayed for a retry) as failed, from
  outside a worker: a cancel of a queued job, or its expiry. It stays a BullMQ job in the failed
  set, and a `failed` event goes to the queue's event stream like any other failure. One script,
  so a worker taking the job at the same moment either gets it first (0) or never.

  Input:
    KEYS[1] prioritized  KEYS[2] wait  KEYS[3] delayed  KEYS[4] paused (legacy list)
    KEYS[5] failed       KEYS[6] job hash  KEYS[7] events stream  KEYS[8] meta

    ARGV[1] job id
    ARGV[2] failedReason
    ARGV[3] now (ms)

  Output:
    1 the job was ended
    0 it was not waiting (active, finished or gone)
]]
local rcall = redis.call
local id = ARGV[1]
local removed = rcall("ZREM", KEYS[1], id) + rcall("LREM", KEYS[2], 0, id) + rcall("ZREM", KEYS[3], id) + rcall("LREM", KEYS[4], 0, id)
if removed == 0 or rcall("EXISTS", KEYS[6]) == 0 then return 0 end
rcall("HSET", KEYS[6], "failedReason", ARGV[2], "finishedOn", ARGV[3])
rcall("ZADD", KEYS[5], ARGV[3], id)
local maxEvents = rcall("HGET", KEYS[8], "opts.maxLenEvents") or 10000
rcall("XADD", KEYS[7], "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId", id, "failedReason", ARGV[2], "prev", "waiting")
return 1

--[[
  Places a job that was just added to the prioritized set at its turn among the stations of its
  priority class: start-time fair queueing. Scores stay BullMQ's layout, priority · 2^32 + tag,
  with Darkroom's tag in place of BullMQ's arrival counter:

    start  = max(V, F[station])    V: the class's virtual time (start tag of its next job)
    F[station] = start + inc       inc = 2^10 / weight

  so a station that queued many jobs has tags far ahead and a station with one job starts at V,
  next to the job that starts next. Tags live at and above 2^30 (virtual time starts at
  2^30 + 2^24); BullMQ's own counter (used when BullMQ itself puts a job back: retries, stalled
  jobs) stays below, so those go first.

  Input:
    KEYS[1] the queue's prioritized set (BullMQ)
    KEYS[2] the queue's fair-share state (HASH: v:<class> and f:<class>:<station>)

    ARGV[1] job id
    ARGV[2] priority class
    ARGV[3] station
    ARGV[4] increment (2^10 / weight, at least 1)

  Output:
    the job's rank in the prioritized set (0 = next), or nil when it is not there (taken already)
]]
local span = 4294967296
-- Virtual time starts 2^24 above the floor: room below for jobs aging moves to the front.
local start0 = 1073741824 + 16777216
local key, state = KEYS[1], KEYS[2]
local id, class, station, inc = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if not redis.call("ZSCORE", key, id) then return nil end
local base = class * span
local v = tonumber(redis.call("HGET", state, "v:" .. class) or start0)
-- The class's next job other than this one: its tag is the virtual time (never going back).
local head = redis.call("ZRANGEBYSCORE", key, base, base + span - 1, "WITHSCORES", "LIMIT", 0, 2)
for i = 1, #head, 2 do
  if head[i] ~= id then
    local tag = tonumber(head[i + 1]) - base
    if tag > v then v = tag end
    break
  end
end
local field = "f:" .. class .. ":" .. station
local start = tonumber(redis.call("HGET", state, field) or 0)
if start < v then start = v end
if start > span - 1 then start = span - 1 end
redis.call("HSET", state, "v:" .. class, v, field, start + inc)
redis.call("ZADD", key, "XX", base + start, id)
return redis.call("ZRANK", key, id)

--[[
  Puts a job that aging just moved to another priority class at the front of that class, just
  before the job that starts next there: aging overrides the stations' turns.

  Input:
    KEYS[1] the queue's prioritized set (BullMQ)
    KEYS[2] the queue's fair-share state

    ARGV[1] job id
    ARGV[2] its new priority class

  Output: 1 when moved, 0 when the job is no longer waiting
]]
local span = 4294967296
local floor = 1073741824
local key, state = KEYS[1], KEYS[2]
local id, class = ARGV[1], tonumber(ARGV[2])
if not redis.call("ZSCORE", key, id) then return 0 end
local base = class * span
local v = tonumber(redis.call("HGET", state, "v:" .. class) or (floor + 16777216))
local head = redis.call("ZRANGEBYSCORE", key, base + floor, base + span - 1, "WITHSCORES", "LIMIT", 0, 2)
for i = 1, #head, 2 do
  if head[i] ~= id then
    local tag = tonumber(head[i + 1]) - base
    if tag < v then v = tag end
    break
  end
end
local tag = v - 1
if tag < floor then tag = floor end
redis.call("ZADD", key, "XX", base + tag, id)
return 1

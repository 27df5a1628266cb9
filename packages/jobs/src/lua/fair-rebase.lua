--[[
  Moves a priority class's fair-share tags back by `by`, keeping their order and the 2^30 floor
  (BullMQ's own counter stays below it), so tags never outgrow the 2^32 a class spans. Run by
  maintenance, rarely: once the class's virtual time passed 2^31 + 2^30 (about two million
  jobs of turns).

  Input:
    KEYS[1] the queue's prioritized set (BullMQ)
    KEYS[2] the queue's fair-share state

    ARGV[1] priority class
    ARGV[2] by how much

  Output: how many jobs were moved
]]
local span = 4294967296
local floor = 1073741824
local key, state = KEYS[1], KEYS[2]
local class, by = tonumber(ARGV[1]), tonumber(ARGV[2])
local base = class * span
local rows = redis.call("ZRANGEBYSCORE", key, base + floor, base + span - 1, "WITHSCORES")
for i = 1, #rows, 2 do
  local tag = tonumber(rows[i + 1]) - base - by
  if tag < floor then tag = floor end
  redis.call("ZADD", key, "XX", base + tag, rows[i])
end
local fields = redis.call("HGETALL", state)
local prefix = "f:" .. class .. ":"
for i = 1, #fields, 2 do
  local f = fields[i]
  if f == "v:" .. class or string.sub(f, 1, #prefix) == prefix then
    local t = tonumber(fields[i + 1]) - by
    if t < floor then t = floor end
    redis.call("HSET", state, f, t)
  end
end
return #rows / 2

--[[
  Before a free device slot takes the next job of a pipeline: when that job needs a model the
  slot's worker does not have loaded, and a job of the same priority class needs one it has,
  moves that job in front, so the slot takes it (warm models first). Priorities still come
  first (only the next job's class is looked at) and so do the stations' turns (the first warm
  job in their order is taken). A cold job that has waited longer than the bypass bound is not
  passed over, so nothing starves.

  Input:
    KEYS[1] the queue's prioritized set (BullMQ)

    ARGV[1] the queue's key prefix ("<prefix>:<queue>:"), for job hashes
    ARGV[2] now (ms)
    ARGV[3] bypass bound (ms)
    ARGV[4] how many jobs to look at, at most
    ARGV[5..] the models the worker has loaded

  Output: the id of the job moved in front, or nil (the next job is fine as it is)
]]
local span = 4294967296
local key, jobPrefix = KEYS[1], ARGV[1]
local now, bypass, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local warm = {}
for i = 5, #ARGV do warm[ARGV[i]] = true end

local function modelOf(id)
  local data = redis.call("HGET", jobPrefix .. id, "data")
  if not data then return nil end
  local ok, decoded = pcall(cjson.decode, data)
  if not ok or type(decoded) ~= "table" then return nil end
  local m = decoded["model"]
  if type(m) ~= "string" then return nil end
  return m
end

local head = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")
if #head == 0 then return nil end
local headId, headScore = head[1], tonumber(head[2])
local headModel = modelOf(headId)
if headModel == nil or warm[headModel] then return nil end
local passedSince = tonumber(redis.call("HGET", jobPrefix .. headId, "darkroom-passed-over") or 0)
if passedSince > 0 and now - passedSince >= bypass then return nil end

local class = math.floor(headScore / span)
local rows = redis.call("ZRANGEBYSCORE", key, headScore, class * span + span - 1, "LIMIT", 0, limit)
for i = 1, #rows do
  local m = rows[i] ~= headId and modelOf(rows[i]) or nil
  if m ~= nil and warm[m] then
    if passedSince == 0 then redis.call("HSET", jobPrefix .. headId, "darkroom-passed-over", now) end
    redis.call("ZADD", key, headScore - 1, rows[i])
    return rows[i]
  end
end
return nil

--[[
  Claims a pending slot for a job when its queue and its station both have room.

  Input:
    KEYS[1] the station's pending set
    KEYS[2] the queue's prioritized set (BullMQ)
    KEYS[3] the queue's wait list (BullMQ)

    ARGV[1] job id
    ARGV[2] the station's pending limit (0: none)
    ARGV[3] the queue's limit of waiting jobs (0: none)

  Output:
     1 the id was added to the pending set
    -1 the queue is full
     0 the station is full
]]
local maxQueue = tonumber(ARGV[3])
if maxQueue > 0 and redis.call("ZCARD", KEYS[2]) + redis.call("LLEN", KEYS[3]) >= maxQueue then return -1 end
local maxPending = tonumber(ARGV[2])
if maxPending > 0 and redis.call("SCARD", KEYS[1]) >= maxPending then return 0 end
redis.call("SADD", KEYS[1], ARGV[1])
return 1

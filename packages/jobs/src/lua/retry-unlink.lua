--[[
  Takes back a retry's link that was claimed for a retry that was then refused.

  Input:
    KEYS[1] the retried job's hash (BullMQ)

    ARGV[1] the field naming the retry
    ARGV[2] the refused retry's job id

  Output:
    1 the link was removed, 0 it names another job (or none)
]]
if redis.call("HGET", KEYS[1], ARGV[1]) == ARGV[2] then return redis.call("HDEL", KEYS[1], ARGV[1]) end
return 0

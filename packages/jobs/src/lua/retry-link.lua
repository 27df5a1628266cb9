--[[
  Links a job to its retry, once: the first retry to claim the link wins.

  Input:
    KEYS[1] the retried job's hash (BullMQ)

    ARGV[1] the field naming the retry
    ARGV[2] the retry's job id

  Output:
     1 the link is now ARGV[2]
    -1 the job is gone (never creates a hash for it)
     the id of the retry that holds the link already, otherwise
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
if redis.call("HSETNX", KEYS[1], ARGV[1], ARGV[2]) == 1 then return 1 end
return redis.call("HGET", KEYS[1], ARGV[1])

-- Add spend booked while Redis was unreachable (`on_unavailable = "local"`) to one account's
-- day and month, and read its figures. KEYS: day spend, month spend, holds, holdx.
-- ARGV: cost, day key TTL (s), month key TTL (s). Returns {day, month, in flight}.
local now = tonumber(redis.call('TIME')[1])
local cost = tonumber(ARGV[1])
local flight = expire_holds(KEYS[3], KEYS[4], now)
local day = spend_of(KEYS[1])
local month = spend_of(KEYS[2])
if cost > 0 then
  day = redis.call('INCRBY', KEYS[1], cost)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  month = redis.call('INCRBY', KEYS[2], cost)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
end
return {day, month, flight}

-- Book one outcome: de-duplicate a numbered attempt, release the decision's hold (once, if it is
-- still held) and add the reported cost to the day and month spend of each account.
-- KEYS: the decision's outcome marks (hash: a<n> = attempt n reported, ha/he = the hold's
--       amount and expiry second, released = the hold was released), then 4 per account: day
--       spend, month spend, holds, holdx (one hash tag: the tenant).
-- ARGV: accounts, attempt (0: not numbered), cost, marks TTL (ms), day key TTL (s), month key
--       TTL (s).
-- Returns {repeat, day, month, in flight (per account)...}; repeat = 1: nothing booked.
local now = tonumber(redis.call('TIME')[1])
local n = tonumber(ARGV[1])
local attempt = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local marks = KEYS[1]
local held = redis.call('HMGET', marks, 'ha', 'he')
local amount = tonumber(held[1] or '0')
local expires = held[2] or '0'
if attempt >= 1 and attempt <= 64 then
  if redis.call('HSETNX', marks, 'a' .. attempt, 1) == 0 then
    return {1}
  end
end
local release = amount > 0 and redis.call('HSETNX', marks, 'released', 1) == 1
redis.call('PEXPIRE', marks, tonumber(ARGV[4]))
local out = {0}
for i = 1, n do
  local k = 1 + (i - 1) * 4
  local flight = expire_holds(KEYS[k + 3], KEYS[k + 4], now)
  if release then
    local slot = tonumber(redis.call('HGET', KEYS[k + 3], expires) or '0')
    local freed = math.min(amount, slot)
    if freed > 0 then
      redis.call('HINCRBY', KEYS[k + 3], expires, -freed)
      flight = flight - freed
      if flight < 0 then flight = 0 end
      redis.call('HSET', KEYS[k + 3], 'total', flight)
    end
  end
  local day = spend_of(KEYS[k + 1])
  local month = spend_of(KEYS[k + 2])
  if cost > 0 then
    day = redis.call('INCRBY', KEYS[k + 1], cost)
    redis.call('EXPIRE', KEYS[k + 1], tonumber(ARGV[5]))
    month = redis.call('INCRBY', KEYS[k + 2], cost)
    redis.call('EXPIRE', KEYS[k + 2], tonumber(ARGV[6]))
  end
  out[#out + 1] = day
  out[#out + 1] = month
  out[#out + 1] = flight
end
return out

-- Take one token from an API key's bucket and/or a tenant's, fleet-wide. A bucket is HASH
-- {k = tokens, ts = last refill (us, Redis time)}; it expires once it would be full again.
-- KEYS: buckets (the key's first when both). ARGV: per bucket: tokens per second, burst.
-- Returns {0, 0} taken; {i, wait us} refused by bucket i (a token taken from an earlier bucket
-- is given back).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local taken = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[(i - 1) * 2 + 1])
  local burst = tonumber(ARGV[(i - 1) * 2 + 2])
  local v = redis.call('HMGET', key, 'k', 'ts')
  local tokens = burst
  if v[1] then
    tokens = math.min(burst, tonumber(v[1]) + math.max(0, now - tonumber(v[2])) / 1000000 * rate)
  end
  if tokens < 1 then
    for j = 1, i - 1 do
      local back = taken[j]
      redis.call('HSET', back.key, 'k', math.min(back.burst, back.tokens + 1))
    end
    local wait = math.ceil((1 - tokens) / rate * 1000000)
    if wait ~= wait or wait > 86400000000 then wait = 86400000000 end
    return {i, wait}
  end
  tokens = tokens - 1
  redis.call('HSET', key, 'k', tokens, 'ts', now)
  local full_ms = math.ceil((burst - tokens) / rate * 1000) + 1000
  if full_ms ~= full_ms or full_ms > 86400000 then full_ms = 86400000 end
  redis.call('PEXPIRE', key, full_ms)
  taken[i] = {key = key, tokens = tokens, burst = burst}
end
return {0, 0}

-- Shared by the budget scripts (prepended to each): drop the holds of one account whose expiry
-- second has come, and return the account's in-flight total.
-- An account's holds: HASH `holds` {total = micros, <expiry second> = micros}, with ZSET `holdx`
-- of the expiry seconds (score = member) so expiry reads only what is due.
local function expire_holds(holds, holdx, now)
  local due = redis.call('ZRANGEBYSCORE', holdx, '-inf', now)
  if #due > 0 then
    local total = tonumber(redis.call('HGET', holds, 'total') or '0')
    for _, s in ipairs(due) do
      total = total - tonumber(redis.call('HGET', holds, s) or '0')
      redis.call('HDEL', holds, s)
    end
    if total < 0 then total = 0 end
    redis.call('HSET', holds, 'total', total)
    redis.call('ZREMRANGEBYSCORE', holdx, '-inf', now)
  end
  return tonumber(redis.call('HGET', holds, 'total') or '0')
end

local function spend_of(key)
  return tonumber(redis.call('GET', key) or '0')
end

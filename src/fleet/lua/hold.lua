-- Check-and-hold of one decision's estimated cost on its payer's accounts (the tenant's, and the
-- user's when named), atomically: no other script runs in between, so concurrent requests on
-- any number of replicas are serialised here.
-- KEYS, 4 per account: day spend, month spend, holds, holdx; then the decision's outcome marks
--       (one hash tag: the tenant).
-- ARGV: accounts, amount (micros), ttl (s), check (1: only while within every cap; 2: only
--       while within every cap that denies, for a decision already downgraded), hold TTL of
--       the hash keys (ms), then per account: daily cap, monthly cap (micros; -1: none), deny
--       (1: on_exceeded = deny); then the marks' TTL (ms). A hold is noted in the marks (ha = amount, he = expiry
--       second), where the decision's first outcome finds and releases it.
-- Returns {held, expiry second, day, month, in flight (per account)...}; held = 0 when a cap
-- is reached (committed = spend + in flight at or over it) and nothing was held.
local now = tonumber(redis.call('TIME')[1])
local n = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local check = tonumber(ARGV[4])
local keep_ms = tonumber(ARGV[5])
local figures = {}
local over = false
for i = 1, n do
  local k = (i - 1) * 4
  local day = spend_of(KEYS[k + 1])
  local month = spend_of(KEYS[k + 2])
  local flight = expire_holds(KEYS[k + 3], KEYS[k + 4], now)
  local daily = tonumber(ARGV[5 + (i - 1) * 3 + 1])
  local monthly = tonumber(ARGV[5 + (i - 1) * 3 + 2])
  local deny = ARGV[5 + (i - 1) * 3 + 3] == '1'
  local reached = (daily >= 0 and day + flight >= daily) or (monthly >= 0 and month + flight >= monthly)
  if reached and (check == 1 or (check == 2 and deny)) then
    over = true
  end
  figures[#figures + 1] = day
  figures[#figures + 1] = month
  figures[#figures + 1] = flight
end
local held = 0
-- At least `ttl` whole seconds: expiry drops a second once it has begun.
local expires = now + ttl + 1
if not over then
  held = 1
  if amount > 0 then
    for i = 1, n do
      local k = (i - 1) * 4
      redis.call('HINCRBY', KEYS[k + 3], expires, amount)
      redis.call('HINCRBY', KEYS[k + 3], 'total', amount)
      redis.call('ZADD', KEYS[k + 4], expires, expires)
      redis.call('PEXPIRE', KEYS[k + 3], keep_ms)
      redis.call('PEXPIRE', KEYS[k + 4], keep_ms)
      figures[(i - 1) * 3 + 3] = figures[(i - 1) * 3 + 3] + amount
    end
    local marks = KEYS[n * 4 + 1]
    redis.call('HSET', marks, 'ha', amount, 'he', expires)
    redis.call('PEXPIRE', marks, tonumber(ARGV[5 + n * 3 + 1]))
  end
end
local out = {held, expires}
for _, v in ipairs(figures) do out[#out + 1] = v end
return out

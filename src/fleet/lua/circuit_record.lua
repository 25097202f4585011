-- Feed one outcome to a model's breaker and its provider's.
-- KEYS: model breaker, model failures, provider breaker, provider failures (one hash tag).
-- ARGV: failed (1/0), model threshold, provider threshold, window (ms), cooldown (ms),
--       half-open probes, keep (ms). Returns report(model) .. report(provider).
local now = now_ms()
local failed = ARGV[1] == '1'
local window = tonumber(ARGV[4])
local cooldown = tonumber(ARGV[5])
local probes = tonumber(ARGV[6])
local keep = tonumber(ARGV[7])
local out = {}
local function record(key, fkey, threshold)
  local b = load(key)
  tick(b, now, cooldown, probes)
  local function fail()
    redis.call('LPUSH', fkey, now)
    redis.call('LTRIM', fkey, 0, math.max(threshold, 1) - 1)
    redis.call('PEXPIRE', fkey, keep)
  end
  if b.s == 1 then
    if failed then
      fail()
      enter(b, 2)
      b.u = now + cooldown
    else
      redis.call('DEL', fkey)
      enter(b, 0)
    end
  elseif b.s == 0 and failed then
    fail()
    local recent = 0
    for _, t in ipairs(redis.call('LRANGE', fkey, 0, -1)) do
      if now - tonumber(t) <= window then recent = recent + 1 end
    end
    if threshold > 0 and recent >= threshold then
      enter(b, 2)
      b.u = now + cooldown
    end
  end
  b.dirty = true
  save(b, keep)
  return b
end
local m = record(KEYS[1], KEYS[2], tonumber(ARGV[2]))
local p = record(KEYS[3], KEYS[4], tonumber(ARGV[3]))
report(m, now, out)
report(p, now, out)
return out

-- Shared by the circuit-breaker scripts (prepended to each). One breaker (a model's or a
-- provider's) is HASH {s = state (0 closed, 1 half-open, 2 open), u = open until (ms),
-- l = probes left, lp = last probe (ms, 0: none), t0/t1/t2 = transitions into closed /
-- half-open / open, p = probes granted} and LIST `<breaker>:f` of recent failure times (ms,
-- newest first). Times are the Redis server's, so the replicas' clocks do not matter.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function load(key)
  local v = redis.call('HMGET', key, 's', 'u', 'l', 'lp', 't0', 't1', 't2', 'p')
  local function num(x) return tonumber(x or '0') end
  return {key = key, exists = v[1] ~= false, s = num(v[1]), u = num(v[2]), l = num(v[3]),
          lp = num(v[4]), t = {num(v[5]), num(v[6]), num(v[7])}, p = num(v[8]), dirty = false}
end

local function enter(b, s)
  if b.s ~= s then b.t[s + 1] = b.t[s + 1] + 1 end
  b.s = s
  b.dirty = true
end

-- Open -> half-open after the cooldown; re-arm the probes of a half-open breaker whose last
-- probe got no outcome within a cooldown.
local function tick(b, now, cooldown, probes)
  if b.s == 2 and now >= b.u then
    enter(b, 1)
    b.l = probes
    b.lp = 0
  elseif b.s == 1 and b.l == 0 and b.lp > 0 and now >= b.lp + cooldown then
    b.l = probes
    b.dirty = true
  end
end

local function save(b, keep_ms)
  if b.dirty then
    redis.call('HSET', b.key, 's', b.s, 'u', b.u, 'l', b.l, 'lp', b.lp,
               't0', b.t[1], 't1', b.t[2], 't2', b.t[3], 'p', b.p)
    redis.call('PEXPIRE', b.key, keep_ms)
  end
end

-- {exists, state, ms until half-open (open), probes left, ms since the last probe (-1: none),
--  transitions into closed, half-open, open, probes granted}
local function report(b, now, out)
  local remaining = 0
  if b.s == 2 then remaining = math.max(0, b.u - now) end
  local age = -1
  if b.lp > 0 then age = math.max(0, now - b.lp) end
  local exists = 0
  if b.exists or b.dirty then exists = 1 end
  for _, v in ipairs({exists, b.s, remaining, b.l, age, b.t[1], b.t[2], b.t[3], b.p}) do
    out[#out + 1] = v
  end
end

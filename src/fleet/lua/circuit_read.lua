-- Every breaker of the catalog as the fleet sees it now (advanced by the clock first).
-- KEYS: breakers. ARGV: cooldown (ms), half-open probes, keep (ms). Returns reports in order.
local now = now_ms()
local out = {}
for _, key in ipairs(KEYS) do
  local b = load(key)
  if b.exists then tick(b, now, tonumber(ARGV[1]), tonumber(ARGV[2])) end
  save(b, tonumber(ARGV[3]))
  report(b, now, out)
end
return out

-- A request is about to go to a model: spend one probe of each half-open breaker (model,
-- provider), fleet-wide. KEYS: model breaker, provider breaker. ARGV: cooldown (ms), half-open
-- probes, keep (ms), op ("claim" or "release").
-- claim: {0 free | 1 spent | 2 taken} .. report(model) .. report(provider)
-- release: gives a claimed probe back; {0} .. reports.
local now = now_ms()
local cooldown = tonumber(ARGV[1])
local probes = tonumber(ARGV[2])
local keep = tonumber(ARGV[3])
local bs = {load(KEYS[1]), load(KEYS[2])}
local result = 0
for _, b in ipairs(bs) do tick(b, now, cooldown, probes) end
if ARGV[4] == 'release' then
  for _, b in ipairs(bs) do
    if b.s == 1 and b.l < probes then
      b.l = b.l + 1
      b.dirty = true
    end
  end
else
  for _, b in ipairs(bs) do
    if b.s == 2 or (b.s == 1 and b.l == 0) then result = 2 end
  end
  if result == 0 then
    for _, b in ipairs(bs) do
      if b.s == 1 then
        b.l = b.l - 1
        b.lp = now
        b.p = b.p + 1
        b.dirty = true
        result = 1
      end
    end
  end
end
local out = {result}
for _, b in ipairs(bs) do
  save(b, keep)
  report(b, now, out)
end
return out

"""The Lua scripts of the Redis backend: the pure cores (budget.py, gcra.py) in Redis.

Each runs atomically on the Redis server, so one reservation of many checks is one
round trip, all or nothing, whatever the number of replicas. Every key a script
touches carries the team's hash tag `{team}`, so one team lives in one hash slot
and the scripts run on Redis Cluster. Numbers stay below 2^53 (exact in Lua).

Keys: budget counters are hashes (u = used, r = reserved, s = when it was rebuilt
from the ledger, ms; 1 from an older gateway; o:<hold id> = that unchecked request was
charged here); rate buckets hashes (s = stamp ms, l = level); concurrency sorted sets of
hold ids scored by lease end; `holds` maps a hold id to what it reserved
("M start tokens nanousd owner 1 B key amount ... C key ...", where M says what a counter
rebuilt while the hold is in flight adopts of it, see SEED, and each B an amount held on
a budget key, adopted ones appended; empty: it holds nothing, as a reserve given up on, see
CHARGE; S: settled late by CHARGE, so the request's own SETTLE, run late by a hung
Redis, adds nothing), `exp` scores hold ids by lease end so the next reservation (or
usage view) frees holds whose replica died; both live as long as the budget keys a
hold reserved on, since a sweep needs a record to undo it.
"""

from __future__ import annotations

WINDOW_MS = 60_000
# Hold records a SEED reads to find the reservations in flight a new counter adopts.
ADOPT_SCAN = 4096

_RELEASE = """
-- Redis formats a Lua number with 14 digits: integers go out as exact strings. Zero
-- as '0': minus a zero reservation is -0, '%.0f' writes '-0' and HINCRBY refuses it.
local function int(x) if x == 0 then return '0' end return string.format('%.0f', x) end
local function release(holds, exp, id)
  local rec = redis.call('HGET', holds, id)
  redis.call('ZREM', exp, id)
  if not rec then return 0 end
  redis.call('HDEL', holds, id)
  if rec == 'S' then return 2 end  -- settled late by CHARGE already
  local t = {}
  for word in string.gmatch(rec, '%S+') do t[#t + 1] = word end
  local i = 1
  while i <= #t do
    if t[i] == 'B' then
      if redis.call('EXISTS', t[i + 1]) == 1 then
        redis.call('HINCRBY', t[i + 1], 'r', int(-tonumber(t[i + 2])))
      end
      i = i + 3
    elseif t[i] == 'M' then  -- the hold's start, amounts and owner: nothing to free
      i = i + 6
    else
      redis.call('ZREM', t[i + 1], id)
      i = i + 2
    end
  end
  return 1
end
"""

# Numbers travel as one space-separated argument (one argument to encode and frame
# instead of ~25): the scripts split it into A, where A[1] is the hold id, so
# A[i] below is the i-th value of the layouts described.
_ARGS = """
local A = {ARGV[1]}
for word in string.gmatch(ARGV[2], '%S+') do A[#A + 1] = word end
"""

# KEYS: holds, exp, budgets..., rates..., concurrency...
# ARGV: id, then in one string: now, lease_end, nb, nr, nc, then (limit, amount,
#       keep_until) per budget, (limit, amount) per rate, limit per concurrency, then
#       the request's tokens, nano-USD and its user's key owner (the record's M).
# Returns {0, remaining, reset_ms, ...per rate[, spare]} | {1, i, verdict, used, reserved, V}
#       | {2, i, in_flight, V} | {3, i, retry_ms, remaining, reset_ms, V} | {4, i, ...}
#       | {5} (this hold id is known already: the gateway gave up on this reserve),
#       where V is (remaining, reset_ms) per rate as the keys stand (a refusal's headers),
#       and spare (with a concurrency key) the fewest slots any of its keys has left free
#       once this hold took its own.
RESERVE = (
    _RELEASE
    + _ARGS
    + """
local holds, exp = KEYS[1], KEYS[2]
local id, now, lease_end = A[1], tonumber(A[2]), tonumber(A[3])
-- Every reserve has an id of its own: one on record was given up on (CHARGE marked it)
-- and runs late, from a hung Redis's socket. Nobody waits for it: it takes nothing.
if redis.call('HEXISTS', holds, id) == 1 then return {5} end
local nb, nr, nc = tonumber(A[4]), tonumber(A[5]), tonumber(A[6])
local W = """
    + str(WINDOW_MS)
    + """
local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 64)
for _, old in ipairs(expired) do release(holds, exp, old) end

-- Each budget's (used, reserved, rebuilt) in one read; a counter not rebuilt yet
-- (no `s`) must be before anything is decided on it.
local unseeded, counters = {4}, {}
for i = 1, nb do
  local v = redis.call('HMGET', KEYS[2 + i], 'u', 'r', 's')
  if not v[3] then unseeded[#unseeded + 1] = i end
  counters[i] = v
end
if #unseeded > 1 then return unseeded end

local function view(level, limit)
  local remaining = math.floor((W * limit - level) / W)
  if remaining > limit then remaining = limit end
  if remaining < 0 then remaining = 0 end
  return remaining, math.ceil(level / limit)
end
local ra = 7 + 3 * nb  -- the rates' (limit, amount) pairs
local function drained(i)  -- rate key i's level now (gcra.drained)
  local v = redis.call('HMGET', KEYS[2 + nb + i], 's', 'l')
  local stamp, level = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  local limit = tonumber(A[ra + 2 * (i - 1)])
  if level > W * limit then level = W * limit end
  local elapsed = now - stamp
  if elapsed < 0 then elapsed = 0 end
  level = level - elapsed * limit
  if level < 0 then level = 0 end
  return level
end
-- a refusal, and every rate key's view as it stands (from `now_levels` when read already)
local function with_views(refusal, now_levels)
  for i = 1, nr do
    local level = now_levels and now_levels[i] or drained(i)
    local rem, reset = view(level, tonumber(A[ra + 2 * (i - 1)]))
    refusal[#refusal + 1] = rem
    refusal[#refusal + 1] = reset
  end
  return refusal
end

local a = 7
for i = 1, nb do
  local limit, amount = tonumber(A[a]), tonumber(A[a + 1])
  local v = counters[i]
  local used, reserved = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if amount > limit then return with_views({1, i, 2, used, reserved}) end
  if used >= limit or used + reserved + amount > limit then
    return with_views({1, i, 1, used, reserved})
  end
  a = a + 3
end
a = ra + 2 * nr
local spare = nil
for i = 1, nc do
  local key = KEYS[2 + nb + nr + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local n = redis.call('ZCARD', key)
  if n >= tonumber(A[a]) then return with_views({2, i, n}) end
  local left = tonumber(A[a]) - n - 1
  if spare == nil or left < spare then spare = left end
  a = a + 1
end

local levels, now_levels, refused = {}, {}, nil
a = ra
for i = 1, nr do
  local limit, amount = tonumber(A[a]), tonumber(A[a + 1])
  local level = drained(i)
  now_levels[i] = level
  local retry = 0
  if amount > limit then
    retry = -1
  else
    local excess = level + amount * W - W * limit
    if excess > 0 then retry = math.ceil(excess / limit) end
  end
  if retry ~= 0 then
    local rem, reset = view(level, limit)
    -- the longest wait wins; one that can never fit (-1) wins outright
    local worse = refused == nil or (refused[3] >= 0 and (retry < 0 or retry > refused[3]))
    if worse then
      refused = {3, i, retry, rem, reset}
    end
  end
  levels[i] = level + amount * W
  a = a + 2
end
if refused then return with_views(refused, now_levels) end

local m = ra + 2 * nr + nc  -- the hold's amounts and owner, after every check
-- Six words (the last, the layout's version): a gateway of the version before, which
-- reads any word but B as a two-word C entry, still finds the B entries after it.
local rec = {'M ' .. A[2] .. ' ' .. A[m] .. ' ' .. A[m + 1] .. ' ' .. A[m + 2] .. ' 1'}
local keep_until = lease_end
a = 7
for i = 1, nb do
  local key = KEYS[2 + i]
  redis.call('HINCRBY', key, 'r', A[a + 1])  -- its expiry: set by SEED, which made it
  rec[#rec + 1] = 'B ' .. key .. ' ' .. A[a + 1]
  if tonumber(A[a + 2]) > keep_until then keep_until = tonumber(A[a + 2]) end
  a = a + 3
end
local out = {0}
for i = 1, nr do
  local key, limit = KEYS[2 + nb + i], tonumber(A[a])
  redis.call('HSET', key, 's', A[2], 'l', int(levels[i]))
  -- Until it drains under any limit (an edited one reads the same key): under limit
  -- L it takes min(level, W * L) / L ms, never more than min(level, W).
  local keep = levels[i]
  if keep > W then keep = W end
  redis.call('PEXPIRE', key, int(keep + 1000))
  local rem, reset = view(levels[i], limit)
  out[#out + 1] = rem
  out[#out + 1] = reset
  a = a + 2
end
for i = 1, nc do
  local key = KEYS[2 + nb + nr + i]
  redis.call('ZADD', key, A[3], id)
  redis.call('PEXPIREAT', key, A[3])
  rec[#rec + 1] = 'C ' .. key
end
redis.call('HSET', holds, id, table.concat(rec, ' '))
redis.call('ZADD', exp, A[3], id)
-- The records outlive the lease, as long as the budget keys they hold amounts on: a
-- dead replica's hold is freed by a later sweep, which needs its record to know what.
local keep = keep_until - now
if redis.call('PTTL', holds) < keep then
  redis.call('PEXPIRE', holds, int(keep))
  redis.call('PEXPIRE', exp, int(keep))
end
if spare then out[#out + 1] = spare end
return out
"""
)

# KEYS: holds, exp, budgets..., token rates...
# ARGV: id, then in one string: nb, nt, then actual (or -1) per budget, delta per
#       token rate.
# Only to a counter rebuilt from the ledger (`s`): one that is not there, or holds only
# settles (Redis came back empty), is rebuilt by the next reserve, ADDING the ledger's
# sum, and that sum holds this request once its row has landed: adding here too would
# count it twice. Timing: the seed is stamped (s) after its ledger read, so a settle
# that finds `s` came after the read and its row (written after the settle) is not in
# the sum: counted here, once. A settle that finds no `s` leaves the request to the
# rebuild: counted once if its row landed before the read; missed if the row lands
# after the read (the request finished during or just before the read, the ledger
# writer's lag, about a second): the same window as CHARGE's rule and rebuild.py's,
# under the true spend, never over it.
SETTLE = (
    _RELEASE
    + _ARGS
    + """
local nb, nt = tonumber(A[2]), tonumber(A[3])
if release(KEYS[1], KEYS[2], A[1]) == 2 then return 1 end  -- CHARGE settled it already
local a = 4
for i = 1, nb do
  local actual = tonumber(A[a])
  if actual > 0 and redis.call('HEXISTS', KEYS[2 + i], 's') == 1 then
    redis.call('HINCRBY', KEYS[2 + i], 'u', actual)  -- its expiry: SEED's, unchanged
  end
  a = a + 1
end
for i = 1, nt do
  local key = KEYS[2 + nb + i]
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'l', int(tonumber(A[a]) * """
    + str(WINDOW_MS)
    + """))
  end
  a = a + 1
end
return 1
"""
)

# KEYS: holds, exp, budgets..., the team's seed marker.  ARGV: rebuilt (ms), then (used,
# keep_until, period start, period end, unit 't' or 'u', owner) per budget, then how long
# the marker lasts (ms). Adds the rebuilt usage once, and keeps when: CHARGE must not add
# what the ledger's sum held. The marker says the team's keys were rebuilt here before: a
# counter missing while it stands is a new one (a new period, user or budget), not one
# Redis lost (redis_backend.py waits for the ledger then).
# A counter made here while the team has holds in flight (a budget added, or its period
# or timezone changed) adopts their reservations, as plan.adopted_amount says: each hold
# whose request started in its period (a user's budget: that user's) and that holds
# nothing on it reserves its estimate there, appended to its record as a B, so that its
# settle, release or lease end frees it once. The ledger's sum holds finished requests
# only; their true usage is charged when they finish (CHARGE, stage.py). At most
# ADOPT_SCAN records are read (a team's holds in flight are few).
SEED = (
    _RELEASE
    + """
local holds, exp, now = KEYS[1], KEYS[2], tonumber(ARGV[1])
local nb = #KEYS - 3
local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 64)
for _, old in ipairs(expired) do release(holds, exp, old) end
local made = {}
for i = 1, nb do
  local a = 6 * i - 4
  if redis.call('HSETNX', KEYS[2 + i], 's', ARGV[1]) == 1 then
    redis.call('HINCRBY', KEYS[2 + i], 'u', ARGV[a])
    redis.call('PEXPIREAT', KEYS[2 + i], ARGV[a + 1])
    made[#made + 1] = i
  end
end
if #made > 0 then
  local records
  if redis.call('HLEN', holds) <= """
    + str(ADOPT_SCAN)
    + """ then
    records = redis.call('HGETALL', holds)
  else
    records = redis.call('HSCAN', holds, 0, 'COUNT', """
    + str(ADOPT_SCAN)
    + """)[2]
  end
  local keep = 0
  for j = 1, #records, 2 do
    local rec = records[j + 1]
    if string.sub(rec, 1, 2) == 'M ' then
      local t = {}
      for word in string.gmatch(rec, '%S+') do t[#t + 1] = word end
      local started, who, held = tonumber(t[2]), t[5], {}
      for k = 7, #t - 1 do
        if t[k] == 'B' then held[t[k + 1]] = true end
      end
      local added = {}
      for _, i in ipairs(made) do
        local a, key = 6 * i - 4, KEYS[2 + i]
        local owner = ARGV[a + 5]
        if tonumber(ARGV[a + 2]) <= started and started < tonumber(ARGV[a + 3])
            and (owner == 't' or owner == who) and not held[key] then
          local amount = ARGV[a + 4] == 't' and t[3] or t[4]
          if tonumber(amount) > 0 then
            redis.call('HINCRBY', key, 'r', amount)
            added[#added + 1] = 'B ' .. key .. ' ' .. amount
            local until_ms = tonumber(ARGV[a + 1]) - now
            if until_ms > keep then keep = until_ms end
          end
        end
      end
      if #added > 0 then
        redis.call('HSET', holds, records[j], rec .. ' ' .. table.concat(added, ' '))
      end
    end
  end
  -- The records last as long as the counters they hold amounts on (RESERVE's rule).
  if keep > 0 and redis.call('PTTL', holds) < keep then
    redis.call('PEXPIRE', holds, int(keep))
    redis.call('PEXPIRE', exp, int(keep))
  end
end
redis.call('SET', KEYS[#KEYS], '1', 'PX', ARGV[#ARGV])
return 1
"""
)

# KEYS: holds, exp, budgets...  ARGV: id, then in one string: finished (ms), the lease end
# of a reserve given up on (0: none), the late settle's kind (0: none, 1: its SETTLE
# never reached Redis, 2: it may have run: Redis read it and never answered), then
# amount per budget.
# What a request served unchecked used, added once Redis answers again. Only to a counter
# rebuilt before the request finished: one rebuilt since may have summed its ledger row,
# and one not there at all is rebuilt from the ledger when next needed (both count it).
# A field o:<id> marks it charged: a charge sent again (its reply lost) adds nothing. The
# keys' TTLs stay: the charge belongs to the period they count.
# A reserve the gateway gave up on (no reply within its timeout) may run later, when a
# hung Redis wakes and reads it: its hold, if it ran already, is freed; if it has not,
# an empty record under its id refuses it (RESERVE) until its lease ends, when a sweep
# takes the record (by the gateway's clocks, as every lease: no Redis clock involved).
# Sent again, it changes nothing: the empty record stays.
# A settle Redis did not take (it was away) is delivered late as a CHARGE: its hold, if
# still held, is freed and marked S (until its lease end) so that its SETTLE, should a
# hung Redis run it yet, adds nothing; its usage is charged by the rule above. Not held
# any more: its lease lapsed and a sweep freed it (charged, nothing freed twice), or
# Redis came back without it (the rule decides), or, kind 2 only, its SETTLE did run
# (nothing charged: the SETTLE counted it; a kind 2 whose hold was also swept by then
# is missed, under the true spend).
CHARGE = (
    _RELEASE
    + _ARGS
    + """
local holds, exp, id = KEYS[1], KEYS[2], A[1]
local finished, lease_end, late_settle = tonumber(A[2]), tonumber(A[3]), tonumber(A[4])
if lease_end > 0 then
  local rec = redis.call('HGET', holds, id)
  if not rec then
    redis.call('HSET', holds, id, '')
    redis.call('ZADD', exp, lease_end, id)
    local keep = lease_end - finished
    if keep < 1000 then keep = 1000 end
    if redis.call('PTTL', holds) < keep then redis.call('PEXPIRE', holds, int(keep)) end
    if redis.call('PTTL', exp) < keep then redis.call('PEXPIRE', exp, int(keep)) end
  elseif rec ~= '' then
    release(holds, exp, id)
  end
end
if late_settle > 0 then
  local rec = redis.call('HGET', holds, id)
  if rec and rec ~= 'S' then  -- still held (S: this charge, sent again)
    local lease = redis.call('ZSCORE', exp, id)
    release(holds, exp, id)
    if lease then
      redis.call('HSET', holds, id, 'S')
      redis.call('ZADD', exp, lease, id)
    end
  elseif not rec and late_settle == 2 then
    return 0
  end
end
local mark, charged = 'o:' .. id, 0
for i = 3, #KEYS do
  local amount = A[2 + i]
  if tonumber(amount) > 0 then
    local rebuilt = tonumber(redis.call('HGET', KEYS[i], 's') or '')
    if rebuilt and rebuilt < finished and redis.call('HSETNX', KEYS[i], mark, 1) == 1 then
      redis.call('HINCRBY', KEYS[i], 'u', amount)
      charged = charged + 1
    end
  end
end
return charged
"""
)

# KEYS: holds, exp.  ARGV: now. Frees holds whose lease ended (before a usage view).
SWEEP = (
    _RELEASE
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, old in ipairs(expired) do release(KEYS[1], KEYS[2], old) end
return #expired
"""
)

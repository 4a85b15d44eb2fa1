-- d360-async: one rate-limit budget, atomically. A line-for-line port of TokenBucket
-- (d360_async/_ratelimit/_bucket.py); the module docstring there explains the arithmetic.
--
-- KEYS[1]  hash: the bucket      KEYS[2]  sorted set: requests in flight (score = expiry)
-- ARGV     1 op: acquire | complete | refund | peek
--          2 now ("" = Redis TIME, the clock every process shares)
--          3 limit  4 period  5 burst  6 safety_margin  7 wait_margin  8 adaptive (1/0)
--          9 key ttl (s)  10 in-flight timeout (s)  11 in-flight member
--          12 status  13 X-RateLimit-Limit  14 -Remaining  15 reset_after  16 retry_after
--          17 admitted_at (this clock)  18 headers present (1/0)
--          19 backlog since: the caller has had requests waiting since then (this clock), so
--             tokens that completed meanwhile were due to it and are not capped  ("" = none)
--          20 epoch_margin  21 reset sent as an epoch (1/0)  22 Retry-After sent as a date (1/0)
-- Returns  {result, now, tokens, updated, paused, reset, spread, learned, remaining, factor,
--           throttled, consecutive, calibrated, anchor, refuted, in_flight} as strings
--          ("" = none); result is the wait in seconds for acquire (0: admitted), else 0.

local EPS, MIN_FACTOR, DECREASE, INCREASE, BACKOFF_BASE = 1e-9, 0.05, 0.5, 0.02, 1.0
local ROUNDING = 1.0

local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cfg_limit, period, burst = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local safety, margin, adaptive = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == '1'
local ttl, flight_ttl, member = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local status, h_limit, h_remaining = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local h_reset, h_retry, admitted = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
local has_state = ARGV[18] == '1'
local backlog_since = tonumber(ARGV[19])
local epoch_margin = tonumber(ARGV[20]) or 0
local reset_is_epoch, retry_is_date = ARGV[21] == '1', ARGV[22] == '1'

local NAMES = {'tokens', 'updated', 'paused', 'reset', 'spread', 'learned', 'remaining',
               'factor', 'throttled', 'consecutive', 'calibrated', 'anchor', 'refuted'}
local B = {}
local stored = redis.call('HMGET', KEYS[1], unpack(NAMES))
for i, name in ipairs(NAMES) do
  if stored[i] then B[name] = tonumber(stored[i]) end
end

local function derive()
  local usable
  if B.learned ~= nil then usable = B.learned else usable = cfg_limit * (1 - safety) end
  B.capacity = math.max(1, math.min(burst, math.floor(usable)))
  B.base = math.max(usable - (B.capacity - 1), EPS) / period
end

derive()
if B.tokens == nil then
  B.tokens, B.updated, B.paused = B.capacity, now, now
  B.factor, B.consecutive = 1, 0
end

local function advance(t, uncapped)
  local cap = B.capacity
  if uncapped then cap = math.huge end
  local u = B.updated
  if t <= u then return end
  local tokens = B.tokens
  if B.paused > u then
    if t < B.paused then
      B.updated = t
      return
    end
    u = B.paused
    tokens = math.max(tokens, 1)
  end
  if B.spread ~= nil and B.reset ~= nil then
    if B.reset > u then
      local e = math.min(t, B.reset)
      tokens = math.min(cap, tokens + B.spread * (e - u))
      u = e
    end
    if u >= B.reset then
      tokens = math.max(tokens, 1)
      B.spread = nil
      B.remaining = B.learned
      B.anchor = nil
      if B.calibrated == nil or B.calibrated < B.reset then B.calibrated = B.reset end
    end
  end
  if t > u then
    tokens = math.min(cap, tokens + B.base * B.factor * (t - u))
  end
  B.tokens = tokens
  B.updated = t
end

local function wait_time(t)
  advance(t)
  local have, left, x = B.tokens, 1, t
  local function consume()
    if have >= 1 - EPS then
      local k = math.min(left, math.floor(have + EPS))
      have, left = have - k, left - k
    end
  end
  if B.paused > x then
    x = B.paused
    have = math.max(have, 1)
  end
  consume()
  if left <= EPS then return x - t end
  if B.spread ~= nil and B.reset ~= nil and B.reset > x then
    if B.spread > 0 then
      local dt = (left - have) / B.spread
      if x + dt <= B.reset then return x + dt - t end
      have = have + B.spread * (B.reset - x)
      local k = math.min(left, math.max(0, math.ceil(have - EPS) - 1))
      have, left = have - k, left - k
    end
    x = B.reset
    have = math.max(have, 1)
    consume()
    if left <= EPS then return x - t end
  end
  return x + (left - have) / (B.base * B.factor) - t
end

local function bounded()
  return B.refuted ~= 1 and (B.learned == nil or B.learned == cfg_limit)
end

local function try_take(t)
  local w = wait_time(t)
  if w > 0 then return w end
  B.tokens = B.tokens - 1
  if B.remaining ~= nil then B.remaining = B.remaining - 1 end
  return 0
end

local function refund(t)
  advance(t)
  if B.paused <= t then B.tokens = math.min(B.capacity, B.tokens + 1) end
  if B.remaining ~= nil then B.remaining = B.remaining + 1 end
end

local function reset_margin()
  if reset_is_epoch then return margin + epoch_margin end
  return margin
end

local function retry_margin()
  if retry_is_date then return margin + epoch_margin end
  return margin
end

local function observe(in_flight, t, adm)
  advance(t)
  local fresh = adm == nil or B.calibrated == nil or adm >= B.calibrated
  if fresh and adm ~= nil then B.calibrated = adm end
  if fresh and h_limit ~= nil and h_limit >= 1 and h_limit ~= B.learned then
    B.learned = h_limit
    derive()
    B.tokens = math.min(B.tokens, B.capacity)
  end
  local rolled = false
  if fresh and h_remaining ~= nil then
    rolled = B.remaining ~= nil and h_remaining - in_flight > B.remaining + EPS
    if B.anchor == nil or B.anchor + period <= t or rolled then B.anchor = t end
  end
  if h_reset ~= nil and B.refuted ~= 1 then
    local slack = ROUNDING
    if reset_is_epoch then slack = 2 * ROUNDING end
    local latest = t + period
    if B.anchor ~= nil then latest = B.anchor + period end
    if t + h_reset - slack > latest then B.refuted = 1 end
  end
  local new_reset = nil
  local paced = false
  if fresh then
    local bound = nil
    if B.anchor ~= nil and bounded() then bound = B.anchor + period end
    if h_reset ~= nil then
      new_reset = t + h_reset + reset_margin()
      if bound ~= nil then new_reset = math.min(new_reset, bound) end
    elseif h_remaining ~= nil and bound ~= nil then
      local pending = B.reset
      if not rolled and pending ~= nil and t < pending and pending < bound then
        new_reset = pending
      else
        new_reset = bound
        paced = true
      end
    end
    if new_reset ~= nil then B.reset = new_reset end
  end
  local avail
  if h_remaining ~= nil then
    avail = h_remaining - in_flight
    if fresh then
      if new_reset == nil and B.spread ~= nil and B.remaining ~= nil
          and avail > B.remaining + EPS then
        B.spread, B.reset = nil, nil
      end
      B.remaining = avail
      B.tokens = math.min(avail, math.max(B.tokens, 0))
    else
      B.tokens = math.min(B.tokens, avail)
      if B.remaining == nil or avail < B.remaining then B.remaining = avail end
    end
  elseif new_reset ~= nil and B.remaining ~= nil then
    avail = B.remaining
  else
    return
  end
  local e
  if new_reset ~= nil then
    e = new_reset
  elseif B.spread ~= nil and B.reset ~= nil then
    e = B.reset
  else
    return
  end
  local start = math.max(t, B.paused)
  local start_tokens = B.tokens
  if start > t then start_tokens = math.max(B.tokens, 1) end
  local horizon = e - start
  if horizon <= EPS then
    if fresh then B.spread = nil end
    return
  end
  local spread = math.max(0, avail - start_tokens + 1) / horizon
  if paced then spread = math.min(spread, B.base * B.factor) end
  if fresh or B.spread == nil then
    B.spread = spread
  else
    B.spread = math.min(B.spread, spread)
  end
end

local function pause_until(untill, t)
  advance(t)
  if untill > B.paused and untill > t then
    B.paused = untill
    B.tokens = math.min(B.tokens, 0)
  end
end

local function throttle(in_flight, t, adm)
  if has_state then observe(in_flight, t, adm) else advance(t) end
  local echo = adm ~= nil and B.throttled ~= nil and adm <= B.throttled
  if not echo then
    B.consecutive = B.consecutive + 1
    B.throttled = t
    if adaptive then B.factor = math.max(MIN_FACTOR, B.factor * DECREASE) end
  end
  local delay
  if has_state and h_retry ~= nil then
    delay = h_retry + retry_margin()
  elseif has_state and h_reset ~= nil then
    delay = h_reset + reset_margin()
  else
    delay = math.min(period, BACKOFF_BASE * 2 ^ math.min(math.max(B.consecutive - 1, 0), 30))
  end
  pause_until(t + delay, t)
end

local function succeed(t, adm)
  if adm ~= nil and B.throttled ~= nil and adm <= B.throttled then return end
  B.consecutive = 0
  if adaptive and B.factor < 1 then
    advance(t)
    B.factor = math.min(1, B.factor + INCREASE)
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local result = 0
if op == 'acquire' then
  if backlog_since ~= nil then
    advance(math.min(backlog_since, now))
    advance(now, true)
  end
  result = try_take(now)
  if result == 0 then redis.call('ZADD', KEYS[2], now + flight_ttl, member) end
elseif op == 'complete' then
  redis.call('ZREM', KEYS[2], member)
  local in_flight = redis.call('ZCARD', KEYS[2])
  if status == 429 then
    throttle(in_flight, now, admitted)
  else
    if has_state then observe(in_flight, now, admitted) end
    if status ~= nil and status < 500 then succeed(now, admitted) end
  end
elseif op == 'refund' then
  if redis.call('ZREM', KEYS[2], member) == 1 then refund(now) end
else
  advance(now)
end

local function fmt(v)
  if v == nil then return '' end
  return string.format('%.17g', v)
end

local set, unset = {}, {}
for _, name in ipairs(NAMES) do
  if B[name] == nil then
    unset[#unset + 1] = name
  else
    set[#set + 1] = name
    set[#set + 1] = fmt(B[name])
  end
end
redis.call('HSET', KEYS[1], unpack(set))
if #unset > 0 then redis.call('HDEL', KEYS[1], unpack(unset)) end
local keep = math.max(ttl, flight_ttl, B.paused - now, (B.reset or now) - now)
local ms = math.ceil(keep * 1000)
redis.call('PEXPIRE', KEYS[1], ms)
redis.call('PEXPIRE', KEYS[2], ms)

local reply = {fmt(result), fmt(now)}
for _, name in ipairs(NAMES) do reply[#reply + 1] = fmt(B[name]) end
reply[#reply + 1] = fmt(redis.call('ZCARD', KEYS[2]))
return reply

-- The shared log of one rate-limit budget (see d360_async/_core/_ratelimit/_ledger.py).
--
-- KEYS[1]  the log: a list of "<time> <event>" lines, oldest first
-- KEYS[2]  its metadata: a hash with "epoch" (the log's identity) and "base" (the index of
--          the first line still held)
-- ARGV[1]  the index of the first line the caller has not applied yet
-- ARGV[2]  the event to append, without its time ("" to append nothing)
-- ARGV[3]  lines to keep when the log is trimmed (it is trimmed at twice that)
-- ARGV[4]  milliseconds an idle key is kept
-- ARGV[5]  a fresh epoch, used only if the log does not exist yet
-- ARGV[6]  the epoch the caller knows ("" for none): from another, it reads from the start
--
-- Returns {epoch, base, time, index of the appended line or -1, {lines from ARGV[1] on}}.
-- One script call is atomic, so the line appended and the lines returned are in the order
-- every other process reads them.

local now = redis.call('TIME')
local stamp = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))

local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'base', 0)
end
local base = tonumber(redis.call('HGET', KEYS[2], 'base')) or 0

local mine = -1
if ARGV[2] ~= '' then
  local length = redis.call('RPUSH', KEYS[1], stamp .. ' ' .. ARGV[2])
  mine = base + length - 1
  local keep = tonumber(ARGV[3])
  if length > 2 * keep then
    redis.call('LTRIM', KEYS[1], length - keep, -1)
    base = base + length - keep
    redis.call('HSET', KEYS[2], 'base', base)
  end
end

local first = tonumber(ARGV[1]) - base
if first < 0 or ARGV[6] ~= epoch then
  first = 0
end
local lines = redis.call('LRANGE', KEYS[1], first, -1)

redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {epoch, tostring(base), stamp, tostring(mine), lines}

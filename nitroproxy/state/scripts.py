"""The Lua scripts that make each limiter step one atomic round trip in Redis.

A script runs alone on the server, so "check every scope, then count the request in all of
them" cannot interleave with another process's check: this is what lets N processes share
one limit exactly. Time is the server's (``TIME``, milliseconds), so every process and
machine measures the windows on one clock.

Keys, for prefix ``P`` and scope ``S`` (``key:<id>`` or ``end_user:<key id>:<tag>``):

- ``P:rq:S``  requests/min log: sorted set, ticket -> admission ms
- ``P:tk:S`` / ``P:ta:S`` / ``P:tt:S``  tokens/min log: ticket -> ms, ticket -> tokens, total
- ``P:cc:S``  concurrency slots: ticket -> lease expiry ms (a dead process's slot lapses)
- ``P:rl:S`` / ``P:ra:S`` / ``P:rv:S``  budget reservations: ticket -> lease expiry ms,
  ticket -> "<day> <nanos>", day -> reserved nanos
- ``P:sp:S:<month>``  spend: day -> nano-USD
- ``P:done:<ticket>``  a settlement already applied (settling is idempotent, so a settlement
  replayed after an outage is never counted twice)

Every key expires on its own once idle (windows after a minute, spend after 40 days), so
Redis holds what is live, like ``core.limits.RateLimits`` does in memory. One Redis (or a
primary with replicas) is supported, not Redis Cluster: the scripts name keys they build.
"""

from __future__ import annotations

__all__ = ["RENEW", "RESERVE", "SEED", "SETTLE", "SPEND"]

_PRUNE = """
local function prune(P, S, now, cutoff)
  local rq = P..':rq:'..S
  redis.call('ZREMRANGEBYSCORE', rq, '-inf', cutoff)
  local tk, ta, tt = P..':tk:'..S, P..':ta:'..S, P..':tt:'..S
  local old = redis.call('ZRANGEBYSCORE', tk, '-inf', cutoff, 'LIMIT', 0, 2000)
  while #old > 0 do
    local amounts = redis.call('HMGET', ta, unpack(old))
    local sum = 0
    for _, a in ipairs(amounts) do sum = sum + (tonumber(a) or 0) end
    redis.call('DECRBY', tt, sum)
    redis.call('HDEL', ta, unpack(old))
    redis.call('ZREM', tk, unpack(old))
    old = redis.call('ZRANGEBYSCORE', tk, '-inf', cutoff, 'LIMIT', 0, 2000)
  end
  redis.call('ZREMRANGEBYSCORE', P..':cc:'..S, '-inf', now)
  local rl, ra, rv = P..':rl:'..S, P..':ra:'..S, P..':rv:'..S
  local dead = redis.call('ZRANGEBYSCORE', rl, '-inf', now)
  for _, m in ipairs(dead) do
    local v = redis.call('HGET', ra, m)
    if v then
      local d, x = string.match(v, '(%S+) (%d+)')
      redis.call('HINCRBY', rv, d, -tonumber(x))
      redis.call('HDEL', ra, m)
    end
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', rl, '-inf', now) end
end
"""

RESERVE = (
    _PRUNE
    + """
-- ARGV: prefix ticket tokens cost day month lease_ms, then per scope:
--   id rpm tpm max_concurrent budget_day budget_month budgeted   (-1: no limit)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P, ticket = ARGV[1], ARGV[2]
local tokens, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local day, month, lease = ARGV[5], ARGV[6], tonumber(ARGV[7])
local W = 60000
local cutoff = now - W
local n = (#ARGV - 7) / 7
local out = {0, now}
local denied = false
for i = 0, n - 1 do
  local b = 8 + i * 7
  local S = ARGV[b]
  local rpm, tpm, maxc = tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3])
  local bday, bmonth = tonumber(ARGV[b+4]), tonumber(ARGV[b+5])
  prune(P, S, now, cutoff)
  local rq, tk = P..':rq:'..S, P..':tk:'..S
  local requests = redis.call('ZCARD', rq)
  local used = tonumber(redis.call('GET', P..':tt:'..S) or '0')
  local active = redis.call('ZCARD', P..':cc:'..S)
  local cday, cmonth = 0, 0
  if ARGV[b+6] == '1' then
    local sp = redis.call('HGETALL', P..':sp:'..S..':'..month)
    for j = 1, #sp, 2 do
      local v = tonumber(sp[j+1])
      cmonth = cmonth + v
      if sp[j] == day then cday = cday + v end
    end
    local rv = redis.call('HGETALL', P..':rv:'..S)
    for j = 1, #rv, 2 do
      local v = tonumber(rv[j+1])
      if string.sub(rv[j], 1, #month) == month then cmonth = cmonth + v end
      if rv[j] == day then cday = cday + v end
    end
    if bday >= 0 and (cday >= bday or cday + cost > bday) then denied = true end
    if bmonth >= 0 and (cmonth >= bmonth or cmonth + cost > bmonth) then denied = true end
  end
  if maxc >= 0 and active >= maxc then denied = true end
  local rwait, twait = W, W
  if rpm >= 0 and requests + 1 > rpm then
    denied = true
    local at = redis.call('ZRANGE', rq, requests - rpm, requests - rpm, 'WITHSCORES')
    if #at > 0 then rwait = tonumber(at[2]) + W - now end
  end
  if tpm >= 0 and (tokens > tpm or used + tokens > tpm) then
    denied = true
    local excess, freed = used + tokens - tpm, 0
    local entries = redis.call('ZRANGE', tk, 0, -1, 'WITHSCORES')
    for j = 1, #entries, 2 do
      freed = freed + (tonumber(redis.call('HGET', P..':ta:'..S, entries[j])) or 0)
      if freed >= excess then twait = tonumber(entries[j+1]) + W - now; break end
    end
  end
  for _, v in ipairs({active, requests, used, rwait, twait, 0, 0, cday, cmonth}) do
    table.insert(out, v)
  end
end
if denied then
  -- A refusal's headers say when each window empties (an admission's: a full window).
  for i = 0, n - 1 do
    local S = ARGV[8 + i * 7]
    for j, k in ipairs({':rq:', ':tk:'}) do
      local last = redis.call('ZRANGE', P..k..S, -1, -1, 'WITHSCORES')
      if #last > 0 then out[2 + i * 9 + 5 + j] = tonumber(last[2]) + W - now end
    end
  end
  return out
end
out[1] = 1
for i = 0, n - 1 do
  local b = 8 + i * 7
  local S = ARGV[b]
  if tonumber(ARGV[b+1]) >= 0 then
    local rq = P..':rq:'..S
    redis.call('ZADD', rq, now, ticket)
    redis.call('PEXPIRE', rq, W + 1000)
  end
  if tonumber(ARGV[b+2]) >= 0 then
    local tk, ta, tt = P..':tk:'..S, P..':ta:'..S, P..':tt:'..S
    redis.call('ZADD', tk, now, ticket)
    redis.call('HSET', ta, ticket, tokens)
    redis.call('INCRBY', tt, tokens)
    for _, k in ipairs({tk, ta, tt}) do redis.call('PEXPIRE', k, W + 1000) end
  end
  if tonumber(ARGV[b+3]) >= 0 then
    local cc = P..':cc:'..S
    redis.call('ZADD', cc, now + lease, ticket)
    redis.call('PEXPIRE', cc, 2 * lease)
  end
  if ARGV[b+6] == '1' and cost > 0 then
    local rl, ra, rv = P..':rl:'..S, P..':ra:'..S, P..':rv:'..S
    redis.call('ZADD', rl, now + lease, ticket)
    redis.call('HSET', ra, ticket, day..' '..cost)
    redis.call('HINCRBY', rv, day, cost)
    for _, k in ipairs({rl, ra, rv}) do redis.call('PEXPIRE', k, 2 * lease) end
  end
end
return out
"""
)

SETTLE = """
-- ARGV: prefix ticket token_delta cost day month, then scope ids.
-- Frees the slot, replaces the reserved tokens and cost by the real ones, adds the spend.
local P, ticket = ARGV[1], ARGV[2]
local delta, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local day, month = ARGV[5], ARGV[6]
if not redis.call('SET', P..':done:'..ticket, 1, 'NX', 'EX', 900) then return 0 end
for i = 7, #ARGV do
  local S = ARGV[i]
  redis.call('ZREM', P..':cc:'..S, ticket)
  local ta = P..':ta:'..S
  local a = redis.call('HGET', ta, ticket)
  if a and delta ~= 0 then
    local new = math.max(0, tonumber(a) + delta)
    redis.call('HSET', ta, ticket, new)
    redis.call('INCRBY', P..':tt:'..S, new - tonumber(a))
  end
  local ra = P..':ra:'..S
  local v = redis.call('HGET', ra, ticket)
  if v then
    local d, x = string.match(v, '(%S+) (%d+)')
    redis.call('HINCRBY', P..':rv:'..S, d, -tonumber(x))
    redis.call('HDEL', ra, ticket)
    redis.call('ZREM', P..':rl:'..S, ticket)
  end
  if cost > 0 then
    local sp = P..':sp:'..S..':'..month
    redis.call('HINCRBY', sp, day, cost)
    redis.call('EXPIRE', sp, 40 * 86400)
  end
end
return 1
"""

SPEND = """
-- ARGV: prefix scope month: the scope's spend by day this month, as flat pairs.
return redis.call('HGETALL', ARGV[1]..':sp:'..ARGV[2]..':'..ARGV[3])
"""

RENEW = """
-- ARGV: prefix lease_ms, then (scope ticket) pairs: extend the leases of calls in flight.
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local P = ARGV[1]
for i = 3, #ARGV, 2 do
  local S, ticket = ARGV[i], ARGV[i+1]
  redis.call('ZADD', P..':cc:'..S, 'XX', until_ms, ticket)
  redis.call('ZADD', P..':rl:'..S, 'XX', until_ms, ticket)
  for _, k in ipairs({':cc:', ':rl:', ':ra:', ':rv:'}) do
    redis.call('PEXPIRE', P..k..S, 2 * tonumber(ARGV[2]))
  end
end
return 1
"""

SEED = """
-- ARGV: prefix token, then (scope month day nanos) quadruples.
-- Loads the recorded spend once per Redis lifetime: the first process to seed a fresh (or
-- restarted) Redis wins; its marker makes every later seed a no-op.
local P = ARGV[1]
if redis.call('EXISTS', P..':seeded') == 1 then return 0 end
for i = 3, #ARGV, 4 do
  local sp = P..':sp:'..ARGV[i]..':'..ARGV[i+1]
  redis.call('HINCRBY', sp, ARGV[i+2], tonumber(ARGV[i+3]))
  redis.call('EXPIRE', sp, 40 * 86400)
end
redis.call('SET', P..':seeded', ARGV[2])
return 1
"""

"""The Lua scripts of the Redis sink: a write and its TTL in one atomic step, and CDC state.

`SCRIPTS` maps a sink mode to its script, `SHAS` to the script's SHA-1 (for ``EVALSHA``).
"""

from __future__ import annotations

import hashlib

__all__ = ["SCRIPTS", "SHAS"]

# Each script writes KEYS[1] first and sets its TTL (ARGV[1], 0 for none) only when the write
# succeeded: a failing redis.call ends the script.
HASH_SCRIPT = """
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + 2 * n)) end
if #ARGV > 2 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 3 + 2 * n)) end
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""
ZSET_SCRIPT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""
STREAM_SCRIPT = """
local id
if tonumber(ARGV[2]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
end
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return id
"""
# ARGV: ttl, delete_ttl, op, sequence key, then field/value pairs. It reads the stored
# _sequence first, so a key of another type fails before anything is written.
STATE_SCRIPT = """
local function newer(a, b)
  -- byte by byte: Lua's string < follows the server's locale
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local stored = redis.call('HGET', KEYS[1], '_sequence')
if stored and not newer(ARGV[4], stored) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] == 'delete' then
  redis.call('HSET', KEYS[1], '_sequence', ARGV[4], '_deleted', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('HSET', KEYS[1], '_sequence', ARGV[4], unpack(ARGV, 5))
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""
SCRIPTS = {
    "hash": HASH_SCRIPT,
    "zset": ZSET_SCRIPT,
    "stream": STREAM_SCRIPT,
    "state": STATE_SCRIPT,
}
SHAS = {mode: hashlib.sha1(script.encode()).hexdigest() for mode, script in SCRIPTS.items()}

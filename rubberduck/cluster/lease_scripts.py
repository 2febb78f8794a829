"""The Lua scripts and key names of the slot leases
(:mod:`rubberduck.cluster.leases`, which says how they are used).

Keys, ``PREFIX`` being ``[cluster] key_prefix``:

- ``PREFIX:slots:BACKEND``: the backend's leases (a sorted set, each scored by
  its expiry in Redis server time, ms), at most ``max_in_flight``;
- ``PREFIX:slots:BACKEND:model:NAME``: the leases of requests for one model on
  it, at most ``max_in_flight_per_model`` (only for a backend that sets it);
- ``PREFIX:waiting:BACKEND`` and ``PREFIX:waiting:BACKEND:model:NAME``: the
  runtimes waiting for a slot of that set (a sorted set of replica ids, each
  scored by when its wait lapses, Redis server time, ms), so that a runtime
  can tell another's wait from its own.

``NAME`` is the model's name (as
:func:`~rubberduck.actors.residency.model_key` gives it) when it is short and
plain (:func:`redis_model_name`), else a hash of it: the names come from
callers. A script's keys are not in one hash slot: one Redis (with replicas
for failover) is supported, a sharded Redis Cluster is not.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["ACQUIRE", "RENEW", "redis_model_name", "slots_key", "waiting_key"]

#: KEYS[1]: the backend's slot set, KEYS[2]: its waiting flag; with a
#: per-model limit also KEYS[3]: the model's slot set, KEYS[4]: its waiting
#: flag. ARGV: the backend's limit, ttl (ms), lease id (``REPLICA:N``), how
#: long the wait is announced (ms; 0: the caller will not wait, announce
#: nothing), the model's limit (0 without KEYS[3]), then this runtime's own
#: leases of the backend released and not yet removed (removed from this
#: call's sets first, so that a slot this runtime just gave back never looks
#: taken to it; one of another model stays in that model's set until the
#: cluster thread removes it). Takes the lease in every set or in none.
#: Returns 1 when it was taken, 0 when every slot of the backend or of the
#: model is leased (and then adds the replica to that set's waiting flag).
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local sets = {1}
if #KEYS > 2 then sets = {1, 3} end
for i = 6, #ARGV do
  for _, k in ipairs(sets) do  -- ours of another model stay in its set until flush
    redis.call('ZREM', KEYS[k], ARGV[i])
  end
end
local limits = {[1] = tonumber(ARGV[1]), [3] = tonumber(ARGV[5])}
for _, k in ipairs(sets) do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
  if redis.call('ZCARD', KEYS[k]) >= limits[k] then
    local wait = tonumber(ARGV[4])
    if wait > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now)
      redis.call('ZADD', KEYS[k + 1], now + wait, string.match(ARGV[3], '^(.*):'))
      redis.call('PEXPIRE', KEYS[k + 1], wait)
    end
    return 0
  end
end
for _, k in ipairs(sets) do
  redis.call('ZADD', KEYS[k], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[k], 2 * ttl)
end
return 1
"""

#: KEYS: the slot sets of one pool (the backend's, and the model's with a
#: per-model limit). ARGV: ttl (ms), then lease ids. Extends the leases still
#: in every set (an expired lease another ACQUIRE has dropped is not brought
#: back: its slot may be someone else's now). Returns the ids lost.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV do
  local here = true
  for k = 1, #KEYS do
    if not redis.call('ZSCORE', KEYS[k], ARGV[i]) then
      here = false
    end
  end
  if here then
    for k = 1, #KEYS do
      redis.call('ZADD', KEYS[k], 'XX', now + ttl, ARGV[i])
    end
  else
    table.insert(lost, ARGV[i])
  end
end
for k = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[k], 2 * ttl)
end
return lost
"""

#: A model name used as is in a key: what Ollama's names are made of
#: (``namespace/name:tag``, ``hf.co/user/repo:Q4_K_M``, ``name@sha256:...``).
_PLAIN = re.compile(r"[A-Za-z0-9._:/@+-]{1,100}")


def redis_model_name(model: str) -> str:
    """``model`` as it appears in a Redis key: itself when it is 1–100
    characters of ``A-Z a-z 0-9 . _ : / @ + -``, else ``#`` and the first 32
    hex digits of its SHA-256 (``#`` is not in that set: no plain name is
    ever taken for a hash). Keys stay short and printable whatever callers
    send."""
    if _PLAIN.fullmatch(model):
        return model
    digest = hashlib.sha256(model.encode("utf-8", "surrogatepass")).hexdigest()
    return f"#{digest[:32]}"


def slots_key(prefix: str, backend: str, model: str | None = None) -> str:
    """The slot set of ``backend``, or of ``model`` on it (a model key)."""
    if model is None:
        return f"{prefix}:slots:{backend}"
    return f"{prefix}:slots:{backend}:model:{redis_model_name(model)}"


def waiting_key(prefix: str, backend: str, model: str | None = None) -> str:
    """The flag a runtime sets while it waits for a slot of that set."""
    if model is None:
        return f"{prefix}:waiting:{backend}"
    return f"{prefix}:waiting:{backend}:model:{redis_model_name(model)}"

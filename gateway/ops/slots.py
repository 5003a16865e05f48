"""Per-agent call slots (concurrency limits): one slot per active call, in memory or shared through Redis.

A slot is taken when the incoming-call webhook decides to answer (so a busy
agent gets a polite "busy" TwiML, before any stream or TTS work) and released
when the call ends. Slots carry an expiry and the owning instance refreshes
(``heartbeat``) only the slots of calls it is actually running, so:

* a webhook answered but whose stream never arrives (or is refused) frees its
  slot after ``ttl_s``: nobody refreshes it;
* a crashed gateway instance stops refreshing; its calls' slots expire after
  ``ttl_s`` and stop counting against the limit.

Redis layout: one sorted set per agent, ``voicegw:slots:<agent>``, member =
call sid, score = expiry in Redis server time (ms), so instance clocks never
matter. Acquire is one Lua script (drop expired, count, add) so the limit holds
across instances without races.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

log = logging.getLogger("voicegw.slots")


class SlotLimiter(Protocol):
    async def acquire(self, agent_id: str, call_sid: str, limit: int) -> bool:
        """Take a slot for ``call_sid`` (idempotent for the same call); False when the agent is at its limit."""
        ...

    async def release(self, agent_id: str, call_sid: str) -> None: ...

    async def heartbeat(self, live: Collection[tuple[str, str]]) -> None:
        """Refresh the expiry of the ``(agent, call sid)`` slots in ``live`` (calls running here), and no other."""
        ...

    async def active(self, agent_id: str) -> int: ...

    async def aclose(self) -> None: ...


class MemoryLimiter:
    """Single-instance slots with the same expiry semantics as Redis (clock injectable for tests).

    Expired slots are dropped lazily: only when the agent's earliest expiry (kept as a lower bound) has passed,
    so an acquire or a heartbeat costs O(1) per call, not a pass over every slot of the agent (a heartbeat over
    800 calls of one agent rebuilt the agent's slots once per call: a 640,000-entry stall of the event loop).
    """

    def __init__(self, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._slots: dict[str, dict[str, float]] = {}  # agent -> call sid -> expiry
        self._soonest: dict[str, float] = {}  # agent -> no slot of it expires before this

    def _live(self, agent_id: str, now: float) -> dict[str, float]:
        slots = self._slots.get(agent_id)
        if slots is None:
            slots = self._slots[agent_id] = {}
        if self._soonest.get(agent_id, math.inf) <= now:  # some slot may have expired: drop those, once
            slots = self._slots[agent_id] = {sid: exp for sid, exp in slots.items() if exp > now}
            self._soonest[agent_id] = min(slots.values(), default=math.inf)
        return slots

    async def acquire(self, agent_id: str, call_sid: str, limit: int) -> bool:
        now = self._clock()
        slots = self._live(agent_id, now)
        if call_sid not in slots and len(slots) >= limit:
            return False
        slots[call_sid] = expiry = now + self.ttl_s
        self._soonest[agent_id] = min(self._soonest.get(agent_id, math.inf), expiry)
        return True

    async def release(self, agent_id: str, call_sid: str) -> None:
        self._slots.get(agent_id, {}).pop(call_sid, None)

    async def heartbeat(self, live: Collection[tuple[str, str]]) -> None:
        now = self._clock()
        expiry = now + self.ttl_s  # later than every expiry set before: the agents' lower bounds still hold
        for agent_id, call_sid in live:
            slots = self._live(agent_id, now)
            if call_sid in slots:  # an expired slot stays expired (as Redis's ZADD XX)
                slots[call_sid] = expiry

    async def active(self, agent_id: str) -> int:
        return len(self._live(agent_id, self._clock()))

    async def aclose(self) -> None:
        self._slots.clear()
        self._soonest.clear()


# KEYS[1] slot set; ARGV: call sid, limit, ttl ms. Uses the Redis server clock.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""

# KEYS: slot sets; ARGV[1] ttl ms, ARGV[2..] call sids (same order as KEYS). Refreshes only slots still present.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl * 2)
end
return #KEYS
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class RedisLimiter:
    """Slots shared by every instance on one Redis. Call :meth:`heartbeat` with this instance's running calls
    every ``ttl_s / 3`` or so.

    If Redis is unreachable, ``acquire`` answers True (fail open, logged): refusing
    every call because the limiter's store is down would turn a degraded
    dependency into an outage; the limit protects capacity, not security.
    """

    def __init__(self, redis: Any, ttl_s: float = 30.0, prefix: str = "voicegw:slots:") -> None:
        self._redis = redis  # a redis.asyncio.Redis
        self.ttl_s = ttl_s
        self._prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)
        self._count = redis.register_script(_COUNT)

    @classmethod
    def from_url(cls, url: str, ttl_s: float = 30.0) -> RedisLimiter:
        import redis.asyncio as aioredis

        return cls(aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0), ttl_s)

    def _key(self, agent_id: str) -> str:
        return self._prefix + agent_id

    async def acquire(self, agent_id: str, call_sid: str, limit: int) -> bool:
        try:
            ok = await self._acquire(keys=[self._key(agent_id)], args=[call_sid, limit, int(self.ttl_s * 1000)])
        except Exception as exc:
            log.error("concurrency limiter: redis unavailable (%s); admitting call %s unchecked", exc, call_sid)
            return True
        return bool(ok)

    async def release(self, agent_id: str, call_sid: str) -> None:
        try:
            await self._redis.zrem(self._key(agent_id), call_sid)
        except Exception as exc:  # the slot expires by itself after ttl_s
            log.warning("concurrency limiter: could not release %s (%s); it expires in %.0f s",
                        call_sid, exc, self.ttl_s)

    async def heartbeat(self, live: Collection[tuple[str, str]]) -> None:
        held = list(live)
        if not held:
            return
        try:
            await self._refresh(keys=[self._key(a) for a, _ in held],
                                args=[int(self.ttl_s * 1000), *[sid for _, sid in held]])
        except Exception as exc:
            log.warning("concurrency limiter: heartbeat failed (%s)", exc)

    async def active(self, agent_id: str) -> int:
        return int(await self._count(keys=[self._key(agent_id)]))

    async def aclose(self) -> None:
        await self._redis.aclose()

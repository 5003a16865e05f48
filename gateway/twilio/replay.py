"""One-time use of stream tokens: a used-token set, in memory or in Redis.

A token is *claimed* when a media stream presents it; a second claim of the
same token id fails, so a captured TwiML cannot be replayed. Entries live
until the token's expiry (after that the token fails verification anyway).

* :class:`MemoryUsedTokens`: one gateway instance.
* :class:`RedisUsedTokens`: ``SET key 1 NX PX ttl`` — atomic across every
  instance sharing the Redis, so a token replayed against another instance is
  refused too. Every claim is also recorded in a local memory set first. If
  Redis is unreachable the local set decides (logged): replays against *this*
  instance are still refused, and a Redis outage does not refuse every call
  (the settings store degrades the same way). The window left open is a replay
  against another instance, within the token's expiry, during the outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("voicegw.security")


class UsedTokens(Protocol):
    async def claim(self, token_id: str, ttl_s: float) -> bool:
        """True the first time ``token_id`` is claimed; False if it was already used (or cannot be checked)."""
        ...

    async def aclose(self) -> None: ...


class MemoryUsedTokens:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._used: dict[str, float] = {}  # token id -> forget after (clock time)

    def __len__(self) -> int:
        return len(self._used)

    async def claim(self, token_id: str, ttl_s: float) -> bool:
        now = self._clock()
        if len(self._used) > 1024:  # prune lazily; bounded by the calls started within one ttl
            self._used = {k: t for k, t in self._used.items() if t > now}
        forget_at = self._used.get(token_id)
        if forget_at is not None and forget_at > now:
            return False
        self._used[token_id] = now + max(ttl_s, 1.0)
        return True

    async def aclose(self) -> None:
        self._used.clear()


class RedisUsedTokens:
    def __init__(self, redis: Any, prefix: str = "voicegw:used-token:") -> None:
        self._redis = redis  # a redis.asyncio.Redis
        self._prefix = prefix
        self._local = MemoryUsedTokens()
        self.degraded_claims = 0  # claims decided locally because Redis was unreachable

    @classmethod
    def from_url(cls, url: str) -> RedisUsedTokens:
        import redis.asyncio as aioredis

        return cls(aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0))

    async def claim(self, token_id: str, ttl_s: float) -> bool:
        if not await self._local.claim(token_id, ttl_s):
            return False
        try:
            ok = await self._redis.set(self._prefix + token_id, b"1", nx=True, px=max(1000, int(ttl_s * 1000)))
        except Exception as exc:
            self.degraded_claims += 1
            log.error("stream token replay check: redis unreachable (%s); checked against this instance only", exc)
            return True
        return bool(ok)

    async def aclose(self) -> None:
        await self._redis.aclose()

"""Used-token sets: one claim per token, in memory and across instances through a real Redis."""

from __future__ import annotations

import asyncio

from gateway.twilio.replay import MemoryUsedTokens, RedisUsedTokens
from tests.helpers import RedisServer, free_port


async def test_memory_claims_once_and_forgets_after_ttl() -> None:
    now = [0.0]
    used = MemoryUsedTokens(clock=lambda: now[0])
    assert await used.claim("a", 10)
    assert not await used.claim("a", 10)
    assert await used.claim("b", 10)
    now[0] = 11.0
    assert await used.claim("a", 10)  # expired entries are forgotten (the token itself has expired by then)


async def test_memory_is_bounded() -> None:
    now = [0.0]
    used = MemoryUsedTokens(clock=lambda: now[0])
    for i in range(3000):
        now[0] = float(i)
        assert await used.claim(str(i), 5)
    assert len(used) < 1100


async def test_redis_rejects_replay_across_instances(redis_server: RedisServer) -> None:
    a, b = RedisUsedTokens.from_url(redis_server.url), RedisUsedTokens.from_url(redis_server.url)
    try:
        results = await asyncio.gather(*[x.claim("tok", 5) for x in (a, b, a, b)])
        assert sorted(results) == [False, False, False, True]  # exactly one winner, even concurrently
        assert await b.claim("other", 5)
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_ttl_expires(redis_server: RedisServer) -> None:
    used = RedisUsedTokens.from_url(redis_server.url)
    try:
        assert await used.claim("short", 1.0)
        await asyncio.sleep(1.3)
        assert await used.claim("short", 1.0)
    finally:
        await used.aclose()


async def test_redis_down_falls_back_to_this_instance() -> None:
    used = RedisUsedTokens.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert await used.claim("x", 5)  # a Redis outage does not refuse every call...
        assert not await used.claim("x", 5)  # ...and replays against this instance are still refused
        assert used.degraded_claims == 1
    finally:
        await used.aclose()

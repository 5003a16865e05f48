"""Per-agent concurrency slots: memory, and Redis shared by several instances with crash expiry."""

from __future__ import annotations

import asyncio

from gateway.ops.slots import MemoryLimiter, RedisLimiter
from tests.helpers import RedisServer, free_port, wait_until


async def test_memory_limit_release_and_idempotent_acquire() -> None:
    lim = MemoryLimiter(ttl_s=30)
    assert await lim.acquire("demo", "CA1", 2)
    assert await lim.acquire("demo", "CA1", 2)  # same call again: still one slot
    assert await lim.acquire("demo", "CA2", 2)
    assert not await lim.acquire("demo", "CA3", 2)
    assert await lim.acquire("other", "CA3", 2)  # limits are per agent
    await lim.release("demo", "CA1")
    assert await lim.acquire("demo", "CA3", 2)
    assert await lim.active("demo") == 2


async def test_memory_slots_expire_without_heartbeat() -> None:
    now = [0.0]
    lim = MemoryLimiter(ttl_s=10, clock=lambda: now[0])
    assert await lim.acquire("demo", "CA1", 1)
    now[0] = 8.0
    await lim.heartbeat([("demo", "CA1")])  # a live call keeps its slot
    now[0] = 15.0
    assert not await lim.acquire("demo", "CA2", 1)
    now[0] = 18.5  # no heartbeat since 8.0: the slot has expired (stream never came, or we crashed)
    assert await lim.acquire("demo", "CA2", 1)


async def test_memory_heartbeat_refreshes_only_live_calls_and_never_revives() -> None:
    now = [0.0]
    lim = MemoryLimiter(ttl_s=10, clock=lambda: now[0])
    assert await lim.acquire("demo", "CA-live", 2)
    assert await lim.acquire("demo", "CA-orphan", 2)  # webhook answered, stream never came
    for t in (5.0, 10.0, 15.0):
        now[0] = t
        await lim.heartbeat([("demo", "CA-live")])
    assert await lim.active("demo") == 1  # the orphan expired at 10.0 although heartbeats kept running
    await lim.heartbeat([("demo", "CA-orphan")])  # an expired slot is not brought back
    assert await lim.active("demo") == 1
    assert await lim.acquire("demo", "CA-next", 2)


async def test_memory_expiry_after_refresh_and_across_agents() -> None:
    """Expired slots are dropped lazily (only once the earliest expiry has passed): a refreshed slot outlives
    its first expiry, one not refreshed does not, and one heartbeat serves several agents."""
    now = [0.0]
    lim = MemoryLimiter(ttl_s=10, clock=lambda: now[0])
    assert await lim.acquire("demo", "CA-a", 5)
    now[0] = 4.0
    assert await lim.acquire("demo", "CA-b", 5)
    assert await lim.acquire("sales", "CA-c", 5)
    now[0] = 8.0
    await lim.heartbeat([("demo", "CA-a"), ("sales", "CA-c")])  # both until 18; CA-b still until 14
    now[0] = 12.0  # past CA-a's first expiry (10): refreshed, it stays
    assert await lim.active("demo") == 2
    now[0] = 14.5  # CA-b was never refreshed
    assert await lim.active("demo") == 1
    assert await lim.active("sales") == 1
    await lim.release("demo", "CA-a")
    assert await lim.active("demo") == 0
    now[0] = 18.0  # CA-c's expiry: a slot expires at its expiry, as in Redis (score <= now is dropped)
    assert await lim.active("sales") == 0
    assert await lim.acquire("sales", "CA-d", 1)


async def test_memory_heartbeat_of_many_calls_keeps_every_slot() -> None:
    now = [0.0]
    lim = MemoryLimiter(ttl_s=30, clock=lambda: now[0])
    calls = [("demo", f"CA{i}") for i in range(2000)]
    for agent, sid in calls:
        assert await lim.acquire(agent, sid, 2000)
    assert not await lim.acquire("demo", "CA-extra", 2000)
    for t in (10.0, 20.0, 30.0, 40.0):  # every slot's first expiry (30) passes between heartbeats
        now[0] = t
        await lim.heartbeat(calls)
    assert await lim.active("demo") == 2000
    now[0] = 70.5
    assert await lim.active("demo") == 0


async def test_redis_heartbeat_refreshes_only_live_calls(redis_server: RedisServer) -> None:
    lim = RedisLimiter.from_url(redis_server.url, ttl_s=0.6)
    try:
        assert await lim.acquire("demo", "CA-live", 2)
        assert await lim.acquire("demo", "CA-orphan", 2)
        await wait_until(lambda: _refresh_and_count(lim, [("demo", "CA-live")], 1), interval_s=0.1)
        assert await lim.acquire("demo", "CA-next", 2)
        assert await lim.acquire("demo", "CA-live", 2)  # idempotent: the live call still holds its slot
    finally:
        await lim.aclose()


async def _refresh_and_count(lim: RedisLimiter, live: list[tuple[str, str]], want: int) -> bool:
    await lim.heartbeat(live)
    return await lim.active("demo") == want


async def test_redis_limit_holds_across_instances_under_concurrency(redis_server: RedisServer) -> None:
    a, b = RedisLimiter.from_url(redis_server.url), RedisLimiter.from_url(redis_server.url)
    try:
        results = await asyncio.gather(*[(a if i % 2 else b).acquire("demo", f"CA{i}", 3) for i in range(12)])
        assert sum(results) == 3
        assert await a.active("demo") == 3
        winner = next(i for i, ok in enumerate(results) if ok)
        owner = a if winner % 2 else b
        await owner.release("demo", f"CA{winner}")
        assert await b.acquire("demo", "CA-new", 3)
        assert not await a.acquire("demo", "CA-late", 3)
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_crashed_instance_slots_expire(redis_server: RedisServer) -> None:
    live = RedisLimiter.from_url(redis_server.url, ttl_s=1.0)
    crashed = RedisLimiter.from_url(redis_server.url, ttl_s=1.0)
    try:
        assert await live.acquire("demo", "CA-live", 2)
        assert await crashed.acquire("demo", "CA-crashed", 2)
        assert not await live.acquire("demo", "CA-3", 2)
        await crashed.aclose()  # the instance dies: nobody refreshes CA-crashed
        for _ in range(6):
            await asyncio.sleep(0.25)
            await live.heartbeat([("demo", "CA-live")])
        assert await live.active("demo") == 1  # CA-live kept alive by its heartbeat
        assert await live.acquire("demo", "CA-3", 2)
    finally:
        await live.aclose()


async def test_redis_down_fails_open() -> None:
    lim = RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert await lim.acquire("demo", "CA1", 1)
        await lim.release("demo", "CA1")  # logged, no exception
        await lim.heartbeat([("demo", "CA1")])
    finally:
        await lim.aclose()

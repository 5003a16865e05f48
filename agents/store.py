"""Agent settings store: YAML is the source of truth, Redis the shared cache.

Two implementations of one interface, :class:`AgentStore`:

* :class:`MemoryStore` — in-process, used when ``REDIS_URL`` is unset.
* :class:`RedisStore` — every gateway reads agents through a local snapshot that
  is swapped atomically when Redis publishes a new version. If Redis becomes
  unreachable, calls keep being served from the last known snapshot; the store
  reports ``healthy = False`` and keeps retrying until Redis is back.

Redis layout (a push is one MULTI/EXEC transaction, so readers never see half a version)::

    voicegw:agents:v:<version>   hash  agent id -> agent JSON   (old versions expire after a day)
    voicegw:agents:current       string  <version>
    channel voicegw:agents:changed  <version>
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from agents.spec import AgentSpec

log = logging.getLogger("voicegw.store")

KEY_PREFIX = "voicegw:agents"
CURRENT_KEY = f"{KEY_PREFIX}:current"
CHANNEL = f"{KEY_PREFIX}:changed"
OLD_VERSION_TTL_S = 86400


def _digest(value: object) -> str:
    blob = json.dumps(value, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def spec_version(agent: AgentSpec) -> str:
    """One agent's version: changes with any field of its spec (the phrase cache keys audio by it)."""
    return _digest(agent.model_dump(mode="json"))


def version_of(agents: Mapping[str, AgentSpec]) -> str:
    """A set of agents' version (what a push publishes)."""
    return _digest({k: agents[k].model_dump(mode="json") for k in sorted(agents)})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable set of agents with their version and phone-number index."""

    version: str
    agents: Mapping[str, AgentSpec]
    numbers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, agents: Mapping[str, AgentSpec], version: str | None = None) -> Snapshot:
        numbers = {n: a.id for a in agents.values() for n in a.phone_numbers}
        return cls(version or version_of(agents), MappingProxyType(dict(agents)), MappingProxyType(numbers))


class AgentStore(Protocol):
    """Where a gateway reads agents from: a snapshot that may be swapped while calls run."""

    kind: str  # "embedded" or "redis", for /readyz
    healthy: bool  # False: the shared store is unreachable and the last snapshot is served

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def version(self) -> str: ...

    def get(self, agent_id: str) -> AgentSpec | None: ...

    def by_number(self, number: str) -> AgentSpec | None: ...

    def replace(self, agents: Mapping[str, AgentSpec]) -> None:
        """Serve ``agents`` from now on, in this process only (:meth:`RedisStore.publish` reaches every gateway)."""
        ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """In-process store (implements :class:`AgentStore`)."""

    kind = "embedded"

    def __init__(self, agents: Mapping[str, AgentSpec]) -> None:
        self.snapshot = Snapshot.of(agents)
        self.healthy = True

    def get(self, agent_id: str) -> AgentSpec | None:
        return self.snapshot.agents.get(agent_id)

    def by_number(self, number: str) -> AgentSpec | None:
        agent_id = self.snapshot.numbers.get(number)
        return self.snapshot.agents.get(agent_id) if agent_id else None

    @property
    def version(self) -> str:
        return self.snapshot.version

    def replace(self, agents: Mapping[str, AgentSpec]) -> None:
        self.snapshot = Snapshot.of(agents)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def push(redis: Any, agents: Mapping[str, AgentSpec]) -> str:
    """Write ``agents`` as a new version and make it current atomically; returns the version."""
    version = version_of(agents)
    key = f"{KEY_PREFIX}:v:{version}"
    previous = await redis.get(CURRENT_KEY)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if agents:
            pipe.hset(key, mapping={a.id: a.model_dump_json() for a in agents.values()})
        pipe.set(CURRENT_KEY, version)
        pipe.persist(key)
        if previous and (previous.decode() if isinstance(previous, bytes) else previous) != version:
            pipe.expire(f"{KEY_PREFIX}:v:{previous.decode() if isinstance(previous, bytes) else previous}",
                        OLD_VERSION_TTL_S)
        pipe.publish(CHANNEL, version)
        await pipe.execute()
    return version


class RedisStore(MemoryStore):
    """Agents read from Redis through a local snapshot, refreshed on pub/sub (implements :class:`AgentStore`)."""

    kind = "redis"

    def __init__(self, url: str, initial: Mapping[str, AgentSpec], retry_s: float = 1.0) -> None:
        super().__init__(initial)
        import redis.asyncio as aioredis

        self.url = url
        self.retry_s = retry_s
        self.healthy = False
        self.last_error: str | None = None
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._task: asyncio.Task[None] | None = None
        self.on_change: list[Any] = []  # callables(version) notified after a swap

    async def publish(self, agents: Mapping[str, AgentSpec]) -> str:
        version = await push(self._redis, agents)
        await self._reload()
        return version

    async def _reload(self) -> None:
        current = await self._redis.get(CURRENT_KEY)
        if current is None:
            return
        version = current.decode() if isinstance(current, bytes) else str(current)
        if version == self.snapshot.version:
            return
        raw = await self._redis.hgetall(f"{KEY_PREFIX}:v:{version}")
        agents = {
            (k.decode() if isinstance(k, bytes) else str(k)): AgentSpec.model_validate_json(v) for k, v in raw.items()
        }
        self.snapshot = Snapshot.of(agents, version)
        log.info("agents reloaded from redis: version %s (%d agents)", version, len(agents))
        for cb in self.on_change:
            cb(version)

    async def start(self) -> None:
        try:
            await self._reload()
            self._set_health(True, None)
        except Exception as exc:  # redis down at startup: serve the YAML we have
            self._set_health(False, repr(exc))
        self._task = asyncio.create_task(self._watch(), name="agent-store-watch")

    def _set_health(self, ok: bool, error: str | None) -> None:
        if ok and not self.healthy:
            log.info("redis reachable at %s", self.url)
        elif not ok and (self.healthy or self.last_error is None):
            log.warning("redis unreachable (%s); serving last known agent settings", error)
        self.healthy, self.last_error = ok, error

    async def _watch(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                async with pubsub:
                    await pubsub.subscribe(CHANNEL)
                    await self._reload()  # catch versions pushed while we were away
                    self._set_health(True, None)
                    while True:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if msg is not None:
                            await self._reload()
                        else:
                            await self._redis.ping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_health(False, repr(exc))
                await asyncio.sleep(self.retry_s)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._redis.aclose()

